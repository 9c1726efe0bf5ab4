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
//     peer verification), a registry of named providers, and
//     provider/providertest, the conformance suite third-party providers
//     run. Standard library only.
//   - rootca: the built-in provider: the platform is its own CA, with an
//     inventory of issued certificates, revocation, CRLs and durable state
//     in SQLite.
//   - ca: the management-plane framework around a provider: TLS for servers
//     and agents, renewal, expiry alerts, provisioning of hosts.
//   - keystore: the agent side: key and CSR, certificate import, JKS and
//     PKCS #12 keystores that Java's keytool reads.
//   - libvirttls: libvirtd.conf and qemu.conf TLS settings and the PKI file
//     layout libvirt and QEMU read.
//   - migration: qemu+tls:// or qemu+tcp://, refusal of secured/unsecured
//     mixes, and native TLS for the memory stream.
//   - rfb: an RFB 3.8 client with VeNCrypt X509, as a console proxy uses
//     to reach QEMU's VNC server.
//
// The layering is a policy that deps_test.go enforces: provider imports
// only the standard library; rootca and ca import provider but not each
// other; keystore, libvirttls and rfb are leaves; migration may import
// libvirttls; only the programs under examples/ glue packages together.
package kvmpki
