// Package providertest checks that a CA provider honours the contract of
// package provider, in the spirit of [testing/fstest.TestFS].
//
// Authors of a provider (an ACME or a Vault plugin, or the built-in root
// CA) call [Run] from a test of their own:
//
//	func TestConformance(t *testing.T) {
//		providertest.Run(t, func(t *testing.T) provider.Provider {
//			ca, err := acmeca.New(t.Context(), acmeca.Config{Directory: testPebble(t)})
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { ca.Close() })
//			return ca
//		}, &providertest.Options{
//			Domain:          "kvm.example.test",
//			Roles:           []provider.Role{provider.RoleServer},
//			ExactCSRNames:   true,
//			FixedValidity:   true,
//			NoIPAddresses:   true,
//			NoKeyGeneration: true,
//		})
//	}
//
// and run it with the race detector: go test -race. The suite's exported
// API needs nothing but package testing.
//
// # Options for third-party CAs
//
// [Options] describes what a CA cannot do, so that the suite still runs
// every check it can: [Options.Roles] (the roles it issues; a check whose
// point is not the role uses one of them, and no group setup asks for
// another), [Options.ExactCSRNames] (the CA certifies the CSR's names
// only, so the suite puts every name it requests into its CSRs),
// [Options.FixedValidity] (the CA decides the validity),
// [Options.IPAddresses] and [Options.NoIPAddresses], and
// [Options.NoKeyGeneration]. A provider refuses a field it does not
// support with [provider.Unsupported]; checks that need such a field (a
// revocation by serial alone, say) are then skipped, not failed.
// [Options.Skip] is for the rest, with a reason.
//
// # Providers per check group
//
// Run calls its newProvider function once per check group, passing the
// group's *testing.T. A provider that is quick to create should return a
// fresh one each time, for isolation. One that is slow to create (an HSM
// session, a remote CA) may create it once and return it every time: the
// checks are written for a shared provider and only ever look for the
// certificates they issued themselves.
//
// # Checks
//
// Each check is a subtest named "Group/Check", which is also the name to
// give in [Options.Skip] or to go test's -run and -skip flags. The groups
// of optional capabilities are skipped, never failed, when the provider
// lacks the capability.
//
//   - Identity: Name, Description: non-empty.
//   - CACertificates: IssuingCA (the first certificate is a CA with
//     keyCertSign and a subject key identifier); Chain (each certificate
//     but a self-signed root is signed by one listed after it, so several
//     issuing CAs each come before their root and rollover roots follow;
//     all are CAs, none is signed with SHA-1);
//     Bundle (CABundle parses back to the same certificates).
//   - Issue, with a generated key: host, client, server (the leaf verifies
//     against the CA certificates for the usages of its role and only
//     those, PrivateKey matches it, Chain is a path from the leaf's issuer to a
//     self-signed root through CACertificates, the requested
//     names are in the SAN, it is not a CA, it does not outlive its
//     issuer, its serial is positive and at most 20 octets, it has a
//     subject key identifier and an authority key identifier equal to the
//     issuer's, it is not signed with SHA-1); CommonName; Validity (the
//     requested validity is honoured); MaxValidity (the certificate ends
//     within a 36-hour IssueRequest.MaxValidity; with
//     [Options.FixedValidity], 100 years is accepted and a minute refused
//     with [provider.Unsupported]); UniqueSerials (50 issues);
//     KeyTypes/<type> (one per [Options.KeyTypes]); LibvirtKeyUsage (a
//     host or server leaf, generated or from an RSA CSR, has no keyUsage
//     or one with both digitalSignature and keyEncipherment, as libvirt
//     up to 11.3 requires of every key type).
//   - IssueCSR: rsa-2048, ecdsa-p256: the leaf certifies the CSR's key,
//     PrivateKey is nil, and the CSR's names and the request's are in the
//     SAN.
//   - Refusals: NoRole, BadCSRSignature, WeakRSAKey (1024 bits),
//     CSRRequestsCA (basicConstraints CA:TRUE in the extensionRequest),
//     SHA1CSR, MalformedCSR/{garbage,truncated,wrongPEMType},
//     TooManyDNSNames (10,000), IPLiteralDNSName ("10.0.0.9" among the
//     DNS names), NULInDNSName, ValidityBeyondCA (200 years).
//     [provider.CheckCSR] and [provider.CheckIssueRequest] make most of
//     these refusals. Each must fail with an error matching
//     [provider.ErrInvalidRequest] and, for an [provider.Inventory], leave
//     no record behind. Beware that
//     [crypto/x509.CertificateRequest.CheckSignature] accepts SHA-1
//     signatures: check the CSR's SignatureAlgorithm as well.
//   - Revoke: UnknownSerial ([provider.ErrNotFound]), Revoke (by serial
//     and certificate), ByCertificate (Certificate set, Serial nil),
//     AlreadyRevoked ([provider.ErrAlreadyRevoked]).
//   - CRL ([provider.CRLSigner]): Signature (by the issuing CA), Entry (the
//     revoked serial with its reason, and no unrevoked one), Number
//     (greater than the previous CRL's), Update (NextUpdate after
//     ThisUpdate). For a [provider.CRLSource] only: Signature (each CRL
//     by a CA certificate, one by the issuing CA), Number and Update;
//     Entry is skipped, since the CA publishes on its own schedule.
//   - VerifyPeer ([provider.PeerVerifier]): Accepted; Revoked
//     ([provider.ErrRevoked]); UnknownAuthority (a look-alike CA with the
//     same subject and key identifier); IncompatibleUsage; NameMismatch;
//     Expired (the default policy refuses expired certificates);
//     NoCertificate (the default policy is strict); BadRequest (a zero
//     [provider.Usage], or a server check without a name, matches
//     [provider.ErrInvalidRequest]); MutualTLS (real handshakes over
//     loopback with [provider.VerifyClientConnection] and
//     [provider.VerifyServerConnection], refused once the client is
//     revoked). Every other refusal must be a [*provider.VerifyError].
//   - Inventory ([provider.Inventory]): Lookup, Revoked, List, Filters,
//     UnknownSerial.
//   - Renew ([provider.Renewer]): Successor (new serial, same names and
//     role, later NotAfter, same key; a provider refusing the request
//     without a CSR with [provider.Unsupported] gets one for the same key,
//     as a CA needing proof of possession does), NewKey (with a CSR), Revoked
//     ([provider.ErrRevoked]) and Foreign ([provider.ErrInvalidRequest]).
//   - RevocationNotifier ([provider.RevocationNotifier]): NoticeAfterRevoke
//     (a notice within 10 s; a subscriber that never reads does not block
//     Revoke) and ClosedWhenDone (the channel closes once its context is
//     done).
//   - OCSPSigner ([provider.OCSPSigner]): Good, Revoked (time and reason)
//     and Unknown responses verify against the leaf's issuer, directly or
//     through a delegated responder certificate, and state the template;
//     ForeignIssuer (a template naming another CA matches
//     [provider.ErrInvalidRequest]).
//   - RotationLeaser ([provider.RotationLeaser]; skipped when its claim
//     returns errors.ErrUnsupported): Exclusive (a held lease refuses
//     other claims with a [*provider.RotationBusyError] naming the
//     holder; the holder renews it; PushPending is set under the lease
//     only, and CARotationStatus reports both; a non-holder's release
//     does nothing; a released lease is free and its former holder
//     cannot renew it) and Concurrent (exactly one of 16 concurrent
//     claims wins).
//   - Concurrency: IssueRevoke: 8 goroutines issue and revoke at once,
//     next to readers; every serial is distinct.
//
// # Cost
//
// Run generates one 2048-bit and one 1024-bit RSA key for the CSR checks
// and issues about 120 certificates; against an in-memory ECDSA CA it takes
// well under a second. A provider whose default key is RSA pays for the
// key generation of the KeyTypes/default check only, since the other
// checks use the first entry of [Options.KeyTypes] (ECDSA P-256 by
// default) or CSRs.
package providertest
