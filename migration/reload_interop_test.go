package migration_test

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/libvirttls"
	"github.com/kvmpki/kvmpki/provider"
)

// libvirtMigrateTLS is the id libvirt gives the tls-creds-x509 object it
// adds for one migration (qemuMigrationParamsEnableTLS, alias base
// "libvirt_migrate") and deletes after it (qemuMigrationParamsResetTLS).
const libvirtMigrateTLS = "objlibvirt_migrate_tls0"

// tls12 makes GnuTLS negotiate TLS 1.2, in which the client's Certificate
// message crosses the wire in clear, so the tap can read which
// certificate the source presented. (Production keeps GnuTLS's default.)
const tls12 = "NORMAL:-VERS-ALL:+VERS-TLS1.2"

// addTLSObject adds a tls-creds-x509 object for dir over QMP, as libvirt
// does before each migration.
func addTLSObject(t testing.TB, q *peers.QEMUMigration, dir string, server bool) {
	t.Helper()
	args := map[string]any{"qom-type": "tls-creds-x509", "id": libvirtMigrateTLS, "dir": dir, "endpoint": "client", "priority": tls12}
	if server {
		args["endpoint"], args["verify-peer"] = "server", true
	}
	_, err := q.QMP("object-add", args)
	require.NoError(t, err)
}

// delTLSObject resets the migration's tls-creds and deletes the object,
// as libvirt does after each migration.
func delTLSObject(t testing.TB, q *peers.QEMUMigration) {
	t.Helper()
	_, err := q.QMP("migrate-set-parameters", map[string]any{"tls-creds": ""})
	require.NoError(t, err)
	_, err = q.QMP("object-del", map[string]any{"id": libvirtMigrateTLS})
	require.NoError(t, err)
}

// migrateOnce migrates src to a fresh destination QEMU whose credentials
// are dstDir, through a tap, and returns the destination and what the
// source sent, once the source has finished. The destination gets a
// per-migration object, as libvirt gives it; the source uses srcCreds,
// the id of an object it already has. The destination gives the verdict
// (destinationCompleted, destinationRefused): QEMU checks the client
// certificate after the TLS handshake, so a source whose small stream
// fits in the socket buffers can report "completed" while the
// destination refuses it.
func migrateOnce(t *testing.T, src *peers.QEMUMigration, srcCreds, dstDir string) (*peers.QEMUMigration, []byte) {
	t.Helper()
	dst, err := peers.StartQEMUMigration(t, peers.QEMUMigrationOptions{Incoming: true})
	require.NoError(t, err)
	addTLSObject(t, dst, dstDir, true)
	_, err = dst.QMP("migrate-set-parameters", map[string]any{"tls-creds": libvirtMigrateTLS})
	require.NoError(t, err)
	incoming := freePort(t)
	tp := newTap(t, "127.0.0.1", fmt.Sprintf("127.0.0.1:%d", incoming))
	_, err = dst.QMP("migrate-incoming", map[string]any{"uri": fmt.Sprintf("tcp:127.0.0.1:%d", incoming)})
	require.NoError(t, err)

	_, err = src.QMP("migrate-set-parameters", map[string]any{"tls-creds": srcCreds, "tls-hostname": "kvm2.example.org"})
	require.NoError(t, err)
	_, err = src.QMP("migrate", map[string]any{"uri": fmt.Sprintf("tcp:127.0.0.1:%d", tp.port())})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	_, err = src.WaitMigration(ctx)
	require.NoError(t, err, "source log:\n%s\ndestination log:\n%s", src.Log(), dst.Log())
	return dst, tp.bytes(t)
}

// destinationCompleted asserts that the destination received the whole
// migration.
func destinationCompleted(t *testing.T, dst *peers.QEMUMigration, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	st, err := dst.WaitMigration(ctx)
	require.NoError(t, err, "destination log:\n%s", dst.Log())
	assert.Equal(t, "completed", st.Status, "%s: %s\n%s", msg, st.ErrorDesc, dst.Log())
}

// destinationRefused asserts that the destination refused the source's
// certificate with reason (QEMU logs the refusal and records no incoming
// migration).
func destinationRefused(t *testing.T, dst *peers.QEMUMigration, reason, msg string) {
	t.Helper()
	assert.Eventually(t, func() bool { return strings.Contains(dst.Log(), reason) }, 10*time.Second, 20*time.Millisecond,
		"%s; destination log:\n%s", msg, dst.Log())
	raw, err := dst.QMP("query-migrate", nil)
	require.NoError(t, err)
	assert.NotContains(t, string(raw), "completed", msg)
}

// clientCertificateSerial returns the serial of the first certificate in
// the client's TLS 1.2 Certificate handshake message in stream, the bytes
// a TLS client sent. Every length is checked against what is left.
func clientCertificateSerial(stream []byte) (*big.Int, error) {
	var hs []byte
	for len(stream) >= 5 && stream[0] == 0x16 { // handshake records, up to ChangeCipherSpec
		n := int(binary.BigEndian.Uint16(stream[3:5]))
		if len(stream) < 5+n {
			return nil, errors.New("truncated record")
		}
		hs = append(hs, stream[5:5+n]...)
		stream = stream[5+n:]
	}
	for len(hs) >= 4 {
		typ, n := hs[0], int(hs[1])<<16|int(hs[2])<<8|int(hs[3])
		if len(hs) < 4+n {
			return nil, errors.New("truncated handshake message")
		}
		body := hs[4 : 4+n]
		hs = hs[4+n:]
		if typ != 11 { // certificate
			continue
		}
		if len(body) < 6 {
			return nil, errors.New("empty Certificate message: no client certificate")
		}
		l := int(body[3])<<16 | int(body[4])<<8 | int(body[5])
		if len(body) < 6+l {
			return nil, errors.New("truncated certificate")
		}
		cert, err := x509.ParseCertificate(body[6 : 6+l])
		if err != nil {
			return nil, err
		}
		return cert.SerialNumber, nil
	}
	return nil, errors.New("no Certificate message in clear (TLS 1.3?)")
}

// renewableHost lays out a host's PKI with libvirttls under a temporary
// root and returns the plan's options, to apply renewed credentials to
// the same root later, and the migration TLS directory.
func renewableHost(t *testing.T, trust []byte, id identity, crl []byte) (*libvirttls.Config, string) {
	t.Helper()
	root := t.TempDir()
	for _, d := range []string{"etc/pki", "etc/libvirt"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	opts := &libvirttls.Config{Root: root, RootedConfigPaths: true, LookupGroup: ownGroup}
	applyIdentity(t, opts, trust, id, crl)
	return opts, opts.DiskPath(libvirttls.QEMUDir)
}

func applyIdentity(t *testing.T, opts *libvirttls.Config, trust []byte, id identity, crl []byte) {
	t.Helper()
	plan, err := libvirttls.NewPlan(t.Context(), &libvirttls.Credentials{CACert: trust, Cert: id.certPEM, Key: id.keyPEM, CRL: crl}, opts)
	require.NoError(t, err)
	require.NoError(t, plan.Apply(t.Context(), nil))
}

// TestMigrationTLSUsesRenewedCredentials proves that migration TLS needs
// no reload: libvirt creates the tls-creds-x509 object for each
// migration and deletes it after, so QEMU reads /etc/pki/qemu afresh each
// time. One source QEMU (one PID) migrates, runs its guest again, its
// migration credentials are renewed on disk (and the old certificate
// revoked), and it migrates again: the tap sees the new client certificate's serial, and a
// destination whose CRL revokes the old one accepts it. A source whose
// object outlives the renewal, which libvirt never makes, still presents
// the old certificate and is refused: the per-migration object is what
// makes the renewal take effect.
func TestMigrationTLSUsesRenewedCredentials(t *testing.T) {
	t.Parallel()
	peers.Require(t, "qemu-system-x86_64")
	ca := newCA(t, "kvmpki migration CA")
	kvm1 := func() identity {
		return ca.issue(t, "kvm1.example.org", provider.RoleHost, []string{"kvm1.example.org"}, nil, time.Hour)
	}
	old := kvm1()
	kvm2 := ca.issue(t, "kvm2.example.org", provider.RoleHost, []string{"kvm2.example.org"}, nil, time.Hour)
	srcOpts, srcDir := renewableHost(t, ca.bundle, old, nil)
	_, dstDir := securedHost(t, ca.bundle, kvm2, nil)

	src, err := peers.StartQEMUMigration(t, peers.QEMUMigrationOptions{})
	require.NoError(t, err)
	pid := src.PID()
	// The control: an object created once, before the renewal, that is
	// never recreated.
	static, err := peers.StartQEMUMigration(t, peers.QEMUMigrationOptions{})
	require.NoError(t, err)
	addTLSObject(t, static, srcDir, false)

	addTLSObject(t, src, srcDir, false)
	dst, stream := migrateOnce(t, src, libvirtMigrateTLS, dstDir)
	destinationCompleted(t, dst, "the first migration")
	serial, err := clientCertificateSerial(stream)
	require.NoError(t, err)
	require.Equal(t, old.cert.SerialNumber, serial, "the first migration presents the first certificate")
	delTLSObject(t, src)
	// QEMU migrates a guest only once from a process unless the guest
	// runs again there (as after a cancelled migration, when libvirt
	// resumes the source).
	_, err = src.QMP("cont", nil)
	require.NoError(t, err)

	// The renewal: new files in /etc/pki/qemu, the old certificate
	// revoked, and a destination that knows it.
	renewed := kvm1()
	crl := ca.revoke(t, old)
	applyIdentity(t, srcOpts, ca.bundle, renewed, crl)
	_, dstWithCRL := securedHost(t, ca.bundle, kvm2, crl)

	addTLSObject(t, src, srcDir, false)
	dst, stream = migrateOnce(t, src, libvirtMigrateTLS, dstWithCRL)
	destinationCompleted(t, dst, "a destination that revoked the old certificate accepts the source")
	serial, err = clientCertificateSerial(stream)
	require.NoError(t, err)
	assert.Equal(t, renewed.cert.SerialNumber, serial, "the second migration presents the renewed certificate")
	delTLSObject(t, src)
	assert.Equal(t, pid, src.PID())
	assert.False(t, src.Exited(), "the source QEMU never stopped")

	t.Run("an object that outlives the renewal", func(t *testing.T) {
		dst, stream := migrateOnce(t, static, libvirtMigrateTLS, dstWithCRL)
		destinationRefused(t, dst, "The certificate has been revoked", "the destination refuses the old, revoked certificate")
		serial, err := clientCertificateSerial(stream)
		require.NoError(t, err)
		assert.Equal(t, old.cert.SerialNumber, serial, "a long-lived object keeps the certificate it loaded")
	})
}
