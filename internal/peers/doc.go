// Package peers is test support that runs the real software consuming
// kvmpki certificates, so that interop tests prove a certificate is
// accepted (or refused) by that software rather than by Go's idea of it.
//
// Peers, with the Debian 12 versions the package was written against:
//
//   - OpenSSL 3.0: [OpenSSLVerify] (openssl verify, optionally with a CRL,
//     a purpose, a host name and -x509_strict) and [OpenSSLVerifyCRL]
//     (openssl crl -verify).
//   - GnuTLS 3.7 certtool: [CerttoolVerify] (certtool --verify, optionally
//     with a CRL, a purpose and a host name). GnuTLS is what libvirt and
//     QEMU verify with.
//   - libvirt 9.0: [StartLibvirtd] starts a throwaway TLS libvirtd;
//     [Libvirtd.Connect] runs virsh over test+tls:// with a client
//     certificate.
//   - QEMU 7.2: [StartQEMUVNC] starts a QEMU whose VNC server uses
//     tls-creds-x509; [QEMUVNC.Probe] speaks RFB 3.8 and VeNCrypt 0.2
//     (X509None) up to QEMU's verdict on a Go TLS client.
//   - OpenJDK 17 JSSE: [JavaClient] and [JavaServer] run a small Java
//     program (PeerTLS.java, embedded) in either TLS role against a Go
//     peer; [KeytoolImportCA] imports CA certificates with keytool.
//   - For package keystore: [KeytoolList], [KeytoolGenKeyPair],
//     [KeytoolConvert] and [JavaKeystoreClient] (a Java TLS client on a
//     key store and trust store), and [OpenSSLReqVerify].
//   - For package libvirttls: [StartLibvirtdFromConfig] runs libvirtd on a
//     libvirtd.conf the test rendered, [StartLibvirtdOnHostPaths] on one
//     naming /etc/pki (bind-mounted in a private mount namespace), and
//     [StartQEMUVNCFromDir] QEMU on a directory the test laid out.
//   - For package migration: [StartQEMUMigration] starts a QEMU as a
//     migration source or destination, driven over QMP.
//   - For reload tests (package libvirttls): [QEMUVNCOptions].QMP gives a
//     VNC QEMU a QMP socket for display-reload; [ProbeVNC] probes any VNC
//     server, such as a guest's started by libvirt; [WriteDHParams] spares
//     QEMU generating DH parameters at each load of a directory; PID and
//     Exited on [QEMUVNC], [Libvirtd] and [QEMUMigration] let a test show
//     a reload kept the same process.
//   - For package rfb: [StartQEMUVNCPassword] (VNC password through a
//     secret file) and [StartXtigervnc] (TigerVNC 1.12, X509Vnc).
//   - OpenSSH 9.2 sshd, for package ca's SSH provisioning: [StartSSHD]
//     runs a throwaway daemon on loopback that records every command a
//     client runs ([SSHD.Commands]); [BuildCommands] builds the module's
//     host-side programs for it and [ReadFiles] snapshots a host's files.
//   - PostgreSQL 15 and MariaDB 10.11, started by .ci/start-databases:
//     [PostgresDatabase] and [MySQLDatabase] give a test a schema or
//     database of its own; [ControlDatabaseServer] stops and starts a
//     server, holding the servers exclusively ([ExclusiveDatabaseServers])
//     so that tests in other processes do not see it down.
//
// Inputs are PEM bytes in a [PKI] value, so the package does not depend on
// the rest of the module. Functions that check acceptance return an error
// holding the peer's own output, and never fail the test for a refusal:
// a test can assert acceptance (assert.NoError) and refusal
// (assert.ErrorContains with the peer's message) alike. Failures to set a
// peer up fail the test, except a daemon refusing its own certificate at
// start, which StartLibvirtd and StartQEMUVNC return as an error.
//
// # Gating
//
// Every helper calls [Require] for the binaries it runs. A missing binary
// skips the test, naming the binary and the Debian package that provides
// it; with KVMPKI_INTEROP=require in the environment it fails the test
// instead, which is how CI runs.
//
// # Isolation
//
// Every daemon listens on 127.0.0.1 on a port the kernel just reported
// free, keeps its state under t.TempDir, and is stopped by its own PID
// (SIGTERM, then SIGKILL) in a t.Cleanup; the kernel also kills it if the
// test binary dies first. Private keys are written with mode 0600 and no
// secret appears on a command line. Daemons from different test packages
// can run at the same time.
//
// # Compatibility
//
// The package needs Linux (it reads /proc to see that a daemon listens).
// libvirtd runs as root in this setup, as CI does, but loads no hypervisor
// driver: see [StartLibvirtd]. The Java helpers need the jdk.compiler
// module, which Debian's default-jre-headless includes: they compile
// PeerTLS.java once into the user's cache directory
// (os.UserCacheDir()/kvmpki/peers) and fall back to the single-file source
// launcher when that fails.
//
// BUG(peers): StartLibvirtd serves only the test driver (test+tls://), not
// qemu+tls://; the QEMU driver would need the libvirt-qemu user and
// per-daemon /run/libvirt, /var/lib/libvirt and /var/cache/libvirt.
//
// BUG(peers): QEMUVNC.Probe supports only VeNCrypt X509None, i.e. a QEMU
// VNC server without a password; package rfb's tests speak the rest.
package peers
