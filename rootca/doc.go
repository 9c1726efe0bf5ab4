// Package rootca is kvmpki's built-in certificate authority: the platform
// is its own CA, as with Apache CloudStack's "root" CA plugin, but stricter.
// It implements provider.Provider and every optional capability of package
// provider (CRL signing, peer verification, renewal, inventory), and passes
// the provider/providertest conformance suite.
//
// Certificates follow RFC 5280 and the profile that libvirt 9.0 with
// GnuTLS, QEMU's tls-creds-x509, Go, OpenSSL 3 and Java 17 all accept.
// CRLs are RFC 5280 v2 CRLs with a CRL number.
//
// For the common case, keep the CA in an SQLite database in a directory
// of its own (package rootca/sqlstore/sqlite), create it once at
// deployment, and open it at every later start:
//
//	store, err := sqlite.OpenDir(ctx, "/var/lib/kvmpki/ca")
//	defer store.Close()
//	opts := rootca.Options{Password: func() ([]byte, error) { return password, nil }}
//	ca, err := rootca.Create(ctx, store, &rootca.CreateOptions{Options: opts}) // first start only
//	ca, err := rootca.Open(ctx, store, &opts)                                 // every later start
//	defer ca.Close()
//	res, err := ca.Issue(ctx, &provider.IssueRequest{CSR: csrPEM, Role: provider.RoleHost,
//		DNSNames: []string{"kvm1.example.org"}, IPAddresses: []net.IP{ip}})
//
// # The CA itself
//
// [Create] makes a self-signed root (by default ECDSA P-256, ten years)
// or, with [CreateOptions.Parent], an intermediate signed by a root that
// stays offline ([NewRoot] makes one), and stores it; it fails with
// [ErrAuthorityExists] when the store holds a CA already, and of several
// processes creating one in a shared database at once exactly one wins.
// [Open] loads the stored CA and never creates one: on an empty store it
// fails with an error matching provider.ErrNotFound, so that a server
// pointed at a wrong or empty database does not mint a new root. The CA key
// is used through crypto.Signer: either a key held outside (an HSM or KMS
// key in [Options.Signer]), or a key kept in the store as a PKCS #8 PEM
// block encrypted with [Options.Password] (PBES2, PBKDF2-HMAC-SHA256,
// AES-256-CBC, 600,000 iterations). A stored key is checked before it is
// decrypted (algorithms, IV and ciphertext lengths, an iteration count of
// at most 2,000,000), so that whoever can write the database cannot crash
// or stall the servers that open it: a bad key is a [*StoredKeyError].
//
// With an intermediate, give peers the whole CA bundle (provider.CABundle:
// the intermediate, then the root) as libvirt's cacert.pem and QEMU's
// ca-cert.pem: libvirt and QEMU check their own certificate against that
// file alone, and refuse it when the intermediate is missing. Peers that
// check revocation along the whole chain (Java does) also need a CRL from
// the offline root; sign one where the root key lives, with
// x509.CreateRevocationList.
//
// # Issuing
//
// [CA.Issue] signs a CSR after checking its signature, or generates a key
// (RSA-2048 by default, or ECDSA). It refuses:
//   - CSRs with a bad signature, or signed with SHA-1, MD5 or an unknown
//     algorithm;
//   - RSA keys under 2048 or over 8192 bits, curves other than P-256, P-384
//     and P-521, and other key types;
//   - CSRs that ask for a CA certificate (basic constraints CA:TRUE) or
//     for e-mail or URI names;
//   - names that break the names policy (below), and more than
//     [Options.MaxNames] names;
//   - a validity beyond [Options.MaxValidity] or beyond the CA's own
//     NotAfter (it is refused, not shortened; only the default validity,
//     used when a request names none, ends with the CA). The default is
//     [Options.DefaultValidity], or the request's MaxValidity when that is
//     shorter.
//
// The certificate carries what the request's role calls for:
//
//	role    EKU                     key usage (RSA)   key usage (ECDSA)
//	host    serverAuth, clientAuth  DS | KE           none
//	server  serverAuth              DS | KE           none
//	client  clientAuth              none              none
//
// ECDSA leaves carry no key usage because libvirt 9.0 demands
// keyEncipherment whenever the (critical) extension is present, which is
// wrong for ECDSA keys; client-only leaves carry none because zlint's RFC
// 5280 lints refuse keyEncipherment next to clientAuth alone. Every leaf
// has basic constraints CA:FALSE, a subject key identifier (RFC 7093) and
// an authority key identifier, and a serial of 159 random bits that the
// store's unique constraint proves never repeats.
//
// # Names policy
//
// Names come from the request (DNSNames, IPAddresses, CommonName), which
// the platform vouches for, and from the CSR (subject CN, DNS and IP
// SANs), which the requester controls. Of the CSR's names, only those the
// request also lists go into the certificate, so that a host cannot obtain
// a certificate for another host's name; CloudStack signed whatever the
// CSR asked for, which [Options.InsecureAllowCSRNames] restores (minus
// [Options.ReservedDNSNames]). DNS names must be RFC 1123 host names without
// wildcards, and are lower-cased; IP addresses may not be unspecified,
// multicast or broadcast. The subject is the common name alone (the
// request's, else the CSR's, else the first name), and the common name is
// always among the SANs, since Go and GnuTLS ignore the CN when SANs are
// present.
//
// # Revocation and CRLs
//
// [CA.Revoke] records a revocation with an RFC 5280 reason; revoking an
// unknown serial or revoking twice is an error. Revocations live in memory
// too, so [CA.VerifyPeer] checks them in O(1) at every handshake.
// [CA.SignCRL] signs a v2 CRL whose number never repeats, in the form
// libvirt (cacrl.pem), QEMU (ca-crl.pem) and `openssl verify -crl_check`
// read.
//
// # Verifying peers
//
// [CA.VerifyPeer] is the trust decision at TLS handshakes; hand it to
// crypto/tls with provider.VerifyConnection. It always verifies the chain
// to this CA, which CloudStack's trust manager never did. CloudStack's
// ca.plugin.root.auth.strictness=false and allow.expired.cert=true map to
// [Options.InsecureAllowMissingClientCert] and
// [Options.InsecureAllowExpired]; both default to off, and neither lets a
// revoked or foreign certificate in.
//
// # State
//
// State lives behind the small [Store] interface: [MemStore] for tests,
// and the SQL store of package rootca/sqlstore on database/sql. Every
// issuance and revocation is durable when its call returns, and
// TestCrashSafety kills an issuing process with SIGKILL to prove that
// nothing acknowledged is lost. The caller owns the store: a CA never
// closes it. Each database has a backend package, so that a program links
// only the driver it uses (package rootca itself links none):
//
//   - rootca/sqlstore/sqlite: one embedded database file (WAL,
//     synchronous=FULL, busy timeout) for a single management server.
//     Concurrent issuances are committed together, one fsync for all.
//   - rootca/sqlstore/postgres (pgx) and rootca/sqlstore/mysql (MariaDB or
//     MySQL): one database that every management server of a cluster
//     shares, as CloudStack's root CA plugin shares its database.
//     sqlstore.OpenURL opens any of them from a URL, with the backends the
//     program passes.
//
// Each SQL store creates and upgrades its own schema, in version steps
// recorded in the database, under a lock, so several servers may start at
// once. The database enforces what a cluster must never break: one CA,
// unique serials (a primary key), strictly increasing CRL numbers (a
// counter row updated in the transaction that reads it). The CA key is
// stored only encrypted, or not at all with an external signer.
//
// # Rotating the CA
//
// Apache CloudStack cannot change its CA (its issue #2930): a new root
// means re-provisioning every host at once, during which nothing trusts
// anything. A CA on a [RotationStore] (MemStore, and the SQL stores from
// schema version 3) rotates with an overlap during which both CAs are
// trusted:
//
//  1. [CA.BeginRotation] makes a successor (a new key under
//     Options.Password, a self-signed root named like the current CA with
//     " G2", or an intermediate with RotateOptions.Parent) and stores it
//     as the next generation. The successor issues every certificate from
//     that moment (there is no separate activation step), and
//     [CA.CACertificates] lists the successor's chain first, then the
//     previous CA's. [CA.VerifyPeer] accepts leaves of both, revocation
//     works for both (serials are unique across the CAs of a store: one
//     primary key), [CA.SignCRL] signs with the successor and
//     [CA.SignCRLs] (also [CA.CRLs], so provider.CRLs) one CRL per
//     trusted CA, the issuing one first, each listing every revocation.
//  2. The platform installs the new bundle on every peer (libvirt's
//     cacert.pem, QEMU's ca-cert.pem, the "cloudca.N" entries of
//     cloud.jks: all of them read several CA certificates), then renews
//     every certificate, which now comes from the successor. A peer whose
//     bundle still holds only the previous CA refuses the successor's
//     leaves, so the bundle goes out first.
//  3. [CA.RetirePrevious] retires the previous CA: it leaves the bundle,
//     VerifyPeer refuses its leaves (provider.ErrUnknownAuthority) and no
//     CRL is signed for it. It refuses, with a [*RemainingLeavesError]
//     (ErrLeavesRemain) naming them, while the previous CA has unexpired,
//     unrevoked leaves in the inventory; RetireOptions.Force retires it
//     anyway, and those leaves stop being trusted (they are reported in
//     RetireResult.Abandoned, not revoked, and can still be renewed from
//     the successor). Install the new bundle on the peers again, so that
//     they refuse the previous CA's leaves too.
//
// [CA.RotationStatus] lists the generations with their state and live
// leaves. The rotation is state of the store: it survives restarts, and
// only one runs at a time: a second BeginRotation before RetirePrevious,
// or a concurrent one on another server sharing the database, fails with
// [ErrRotationInProgress] (the database serialises the two through a row
// lock and a primary key; exactly one wins). CAs sharing the store pick a
// rotation or a retirement up with their revocation poll
// (Options.RevocationPollInterval, 250 ms by default, plus one query, also
// on PostgreSQL, whose notifications cover revocations only), and at once
// on Refresh, SignCRL and SignCRLs. A CA whose key is held outside the
// store (Options.Signer) cannot rotate yet. TestRotationInterop proves the
// overlap and the retirement with libvirtd and virsh, QEMU's VNC-TLS
// server and Java with a cloud.jks holding cloudca.1 and cloudca.2; given
// both CRLs of SignCRLs in one cacrl.pem (ca-crl.pem), libvirtd and QEMU
// refuse the revoked leaves of either CA.
//
// Driving a rotation across a fleet (package ca's Manager.Rotate) needs
// two things more, which a [RotationLeaseStore] keeps (MemStore, and the
// SQL stores from schema version 4): a lease, so that one driver works
// at a time across the servers sharing the store (a compare-and-set: of
// many claims at once exactly one wins; it expires unless renewed, so a
// crashed driver's lease passes to the next), and whether the bundle
// push after a retirement is still owed, so that a driver stopped
// between the retirement and the end of the push is resumed. A CA on
// such a store is a provider.RotationLeaser, and [CA.CARotationStatus]
// reports the lease and the pending push. Leases compare the CA's clock
// (Options.Time) with expiries other servers wrote: keep their clocks
// synchronised to well within a lease.
//
// # Clusters
//
// A CA keeps its revocations in memory for the handshake checks. On a
// shared store (a [RevocationFeed]) it learns of revocations made by other
// servers in the background: revocations are numbered in commit order,
// and the CA asks for those after the last it saw every
// [Options.RevocationPollInterval] (250 ms by default), or at once on
// PostgreSQL, which notifies them (LISTEN/NOTIFY, [RevocationWaiter]).
// [CA.SignCRL] catches up first, so a CRL holds every revocation committed
// before it. A lost database connection or a restarted server fails the
// calls made meanwhile with an error, and later calls, and the
// background catch-up, work again without a restart of the process.
// Close the CA to stop its background work.
//
//	store, err := postgres.Open(ctx, "postgres://ca@db.example.org/kvmpki?sslmode=verify-full")
//	defer store.Close()
//	ca, err := rootca.Open(ctx, store, &rootca.Options{Signer: hsmKey})
//	defer ca.Close()
package rootca
