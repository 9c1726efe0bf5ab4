// Package kvmpki is the certificate story of a KVM cloud, as a library a
// management platform imports: a certificate authority, TLS for its
// servers and agents, the files libvirt and QEMU read, secure live
// migration and VNC over TLS. It re-implements, and hardens, Apache
// CloudStack's CA framework, secure KVM live migration and VNC-over-TLS
// consoles.
//
// This package holds no code. The packages:
//
//   - provider: the CA provider contract (issue, revoke, CRL, CA bundle,
//     peer verification, renewal, inventory, lifecycle), the policy every
//     provider applies (CheckCSR, VerifyChain), TLS hooks, a registry of
//     named providers, and provider/providertest, the conformance suite
//     third-party providers run. Standard library only (plus
//     internal/pkicore, itself standard library only).
//   - rootca: the built-in provider: the platform is its own CA, with an
//     inventory of issued certificates, revocation and CRLs; its durable
//     state in rootca/sqlstore, with one package per database
//     (sqlstore/sqlite, sqlstore/postgres, sqlstore/mysql) so a program
//     links only the driver it opens.
//   - ca: the management-plane framework around any provider: the Manager
//     (CloudStack's CAManager), TLS for the agent port, agents and peer
//     management servers, CRL and OCSP over HTTP.
//   - keystore: the agent side: key and CSR, certificate import, JKS and
//     PKCS #12 keystores that Java's keytool reads.
//   - libvirtconf: a byte-preserving editor for libvirt's .conf files.
//   - libvirttls: libvirtd.conf and qemu.conf TLS settings, the PKI file
//     layout libvirt and QEMU read, and a host's secured state.
//   - migration: qemu+tls:// or qemu+tcp://, refusal of secured/unsecured
//     mixes and of failing hosts, and native TLS for the memory stream.
//   - rfb: an RFB 3.8 client with VeNCrypt X509, as a console proxy uses
//     to reach QEMU's VNC server, and the viewer side of a proxy.
//
// A rule two packages need lives once in an internal package and is
// re-exported where users need its name: internal/pkicore (the sentinel
// errors, so errors.Is(err, provider.ErrRevoked) holds whichever package
// found the revocation; the key algorithm type), internal/pemx (PEM
// files), internal/revocation (CRLs and chain revocation checks),
// internal/libvirtdial (the TLS dial to libvirtd) and internal/safefs
// (atomic writes and symlink-free paths beneath a root).
//
// The layering is a policy that deps_test.go enforces: provider imports
// only the standard library; rootca and ca import provider but not each
// other; keystore, libvirtconf, libvirttls and rfb are leaves that import
// only the shared internal packages; migration may import libvirttls and
// libvirtconf; only the programs under examples/ glue packages together.
package kvmpki
