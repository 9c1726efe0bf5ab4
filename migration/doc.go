// Package migration plans secure live migrations of KVM guests between
// libvirt hosts, and says precisely why one would fail.
//
// Apache CloudStack migrates between secured hosts over qemu+tls://, which
// encrypts only libvirt's control connection: the guest's memory still
// crosses the network in clear, QEMU to QEMU on ports 49152-49215, because
// CloudStack never asks for libvirt's native TLS migration. This package
// closes that hole, and enforces the rule CloudStack only stated: secured
// hosts migrate only to secured hosts.
//
// For the common case, describe both hosts from libvirttls's detection of
// their security state, and make a plan:
//
//	src := migration.HostFromStatus("kvm1", "10.0.0.1", libvirttls.CheckHost(ctx, kvm1Opts, nil))
//	dst := migration.HostFromStatus("kvm2", "10.0.0.2", kvm2Status) // or migration.Host{..., State: migration.StateSecured}
//	plan, err := migration.NewPlan(src, dst, nil)
//	// plan.DestinationURI  qemu+tls://10.0.0.2/system
//	// plan.Flags           VIR_MIGRATE_LIVE|VIR_MIGRATE_TLS
//	// plan.Params()        migrate_uri=tcp://10.0.0.2 (+ tls.destination when the certificate needs it)
//	// plan.VirshArgs("vm1") migrate --live --tls --domain vm1 --desturi ... --migrateuri ...
//
// A secured source and an unsecured destination (or the reverse) give a
// *SecurityMismatchError that names both hosts and their states. A host
// that holds TLS credentials or configuration but whose check failed
// (expired, revoked, a file missing, a failed dial) is StateFailing, not
// unsecured: NewPlan refuses it in either direction with ErrHostFailing,
// whatever PlanOptions.InsecureAllowUnsecuredMigration says.
// Preflight dials the destination libvirtd's TLS port with the source's
// client credentials and names the reason it would refuse: unknown CA,
// revoked, expired, name mismatch, port closed, client certificate
// refused. Classify turns libvirt's and QEMU's error texts (such as
// "Certificate does not match the hostname 10.0.0.2") into typed errors.
//
// # Transports
//
//   - NativeTLS (the default for two secured hosts): qemu+tls for libvirt,
//     and VIR_MIGRATE_TLS, so that the source QEMU opens a TLS session to the
//     destination QEMU with the certificates of qemu.conf's
//     migrate_tls_x509_cert_dir (libvirttls lays them out in
//     /etc/pki/qemu: every source needs client-cert.pem and client-key.pem,
//     every destination server-cert.pem and server-key.pem). The source QEMU
//     checks the destination certificate against the host of the migrate
//     URI, or against the plan's TLS destination
//     (VIR_MIGRATE_PARAM_TLS_DESTINATION, virsh --tls-destination) when the
//     certificate does not carry the migration address.
//   - Tunnelled (PlanOptions.Tunnelled): peer-to-peer, the memory inside the
//     source libvirtd's qemu+tls connection. No QEMU certificates and no
//     migration ports, at the cost of extra copies; libvirt may refuse it
//     with non-shared disks, parallel connections or post-copy.
//   - PlainTCP: two unsecured hosts, everything in clear, only with
//     PlanOptions.InsecureAllowUnsecuredMigration.
//
// With qemu.conf migrate_tls_force=1 (libvirttls can set it) a destination
// refuses any migration that is neither native TLS nor tunnelled, so a
// caller that forgets the plan's flags fails instead of leaking memory.
//
// # URIs
//
// Addresses are DNS names, IPv4 or IPv6 addresses. IPv6 addresses are
// bracketed in every URI ("qemu+tls://[2001:db8::2]:16514/system",
// "tcp://[2001:db8::2]:49152"); CloudStack's "tcp:" + address form breaks
// on them. Custom libvirt and migration ports are kept. ParseURI reads
// libvirt connection URIs back.
//
// # Security
//
// Preflight verifies the destination as libvirt's client does: the chain to
// the source's CAs for serverAuth, the address as a DNS name or (for an IP
// literal) an IP SAN, and every certificate of both chains against the
// CRL of its actual issuer (by key, not by name; an entry counts from its
// revocation time; a CRL must verify against the CA file and be current);
// it never skips verification. The certificate sentinels (ErrRevoked,
// ErrExpired, ErrUnknownAuthority, ErrNameMismatch) are provider's values. It cannot see why a
// destination refused the source's certificate (libvirtd just closes the
// connection), so it checks the source's certificate locally first and
// names the likely causes otherwise.
//
// # Renewed credentials
//
// Migration TLS needs no reload and no restart after a host's credentials
// are renewed (libvirttls writing new files into /etc/pki/qemu): libvirt
// creates QEMU's tls-creds-x509 object for each migration
// (qemuMigrationParamsEnableTLS, object objlibvirt_migrate_tls0) and
// deletes it afterwards (qemuMigrationParamsResetTLS), so every migration
// reads the directory afresh, on both ends, in a source QEMU that has run
// for months as in a destination just started. The package's tests prove
// it with one source QEMU process: it migrates, its files are renewed and
// the old certificate revoked, and its next migration presents the new
// certificate (read from the handshake on the wire) to a destination that
// refuses the old one; an object that outlives the renewal, which libvirt
// never makes, would still present the old certificate. (libvirtd's own
// TLS and running guests' VNC servers do need a reload: see package
// libvirttls.)
//
// # Compatibility
//
// The flags are libvirt's ABI values. VIR_MIGRATE_TLS needs libvirt 3.2
// and QEMU 2.9; the TLS destination parameter needs libvirt 6.0. Tested
// with libvirt 9.0, QEMU 7.2 and GnuTLS 3.7 (Debian 12): the package's
// tests migrate between real QEMU processes with the directories
// libvirttls lays out, and examples/secure-migration between two real
// libvirtd daemons.
package migration

// BUG(migration): Preflight checks libvirt's control connection only: it
// dials neither the destination's migration ports (49152-49215) nor QEMU's
// TLS endpoint, and does not read the QEMU migration certificates.

// BUG(migration): a source QEMU whose client certificate the destination
// refused reads only "Cannot write to TLS channel"; Classify returns
// ErrClientRefused, and the reason (no certificate, unknown issuer,
// revoked) is in the destination QEMU's log, which Classify also reads.
