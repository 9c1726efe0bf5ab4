package migration_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/libvirttls"
	"github.com/kvmpki/kvmpki/migration"
	"github.com/kvmpki/kvmpki/provider"
)

// markerAddr is where the source guest's RAM holds the marker page.
const markerAddr = 0x2000000 // 32 MiB, in a 64 MiB guest

// securedHost lays out a host's PKI with libvirttls under a temporary
// root, from agent credentials trusting the CA certificates trust, and
// returns the root and the host's migration TLS directory (/etc/pki/qemu
// under the root).
func securedHost(t *testing.T, trust []byte, id identity, crl []byte) (root, qemuDir string) {
	t.Helper()
	return securedHostTB(t, trust, id, crl)
}

func securedHostTB(t testing.TB, trust []byte, id identity, crl []byte) (root, qemuDir string) {
	t.Helper()
	root = t.TempDir()
	// A host's /etc/pki and /etc/libvirt exist before it is secured.
	for _, d := range []string{"etc/pki", "etc/libvirt"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	creds := &libvirttls.Credentials{CACert: trust, Cert: id.certPEM, Key: id.keyPEM, CRL: crl}
	opts := &libvirttls.Config{Root: root, RootedConfigPaths: true, LookupGroup: ownGroup}
	plan, err := libvirttls.NewPlan(t.Context(), creds, opts)
	require.NoError(t, err)
	require.NoError(t, plan.Apply(t.Context(), nil))
	qemuDir = opts.DiskPath(libvirttls.QEMUDir)
	for _, name := range []string{libvirttls.QEMUCACert, libvirttls.QEMUServerCert, libvirttls.QEMUServerKey, libvirttls.QEMUClientCert, libvirttls.QEMUClientKey} {
		require.FileExists(t, filepath.Join(qemuDir, name))
	}
	return root, qemuDir
}

// ownGroup resolves any QEMU group name to the test's own group, so that
// no result depends on the groups of the machine (a libvirt-qemu group
// or its absence).
func ownGroup(name string) (*user.Group, error) {
	return &user.Group{Name: name, Gid: strconv.Itoa(os.Getegid())}, nil
}

// tap is a TCP forwarder between the source and the destination QEMU that
// keeps every byte the source sends, so a test can see what crossed the
// network.
type tap struct {
	ln     net.Listener
	mu     sync.Mutex
	stream bytes.Buffer
	done   chan struct{}
}

const maxTapped = 256 << 20

func newTap(t testing.TB, listenHost, target string) *tap {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(listenHost, "0"))
	require.NoError(t, err)
	tp := &tap{ln: ln, done: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go func() {
		defer close(tp.done)
		src, err := ln.Accept()
		if err != nil {
			return
		}
		defer src.Close()
		dst, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer dst.Close()
		var wg sync.WaitGroup
		wg.Go(func() {
			_, _ = io.Copy(src, dst)
			_ = src.(*net.TCPConn).CloseWrite()
		})
		_, _ = io.Copy(dst, io.TeeReader(src, tp))
		_ = dst.(*net.TCPConn).CloseWrite()
		wg.Wait()
	}()
	return tp
}

func (tp *tap) Write(p []byte) (int, error) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.stream.Len()+len(p) <= maxTapped {
		tp.stream.Write(p)
	}
	return len(p), nil
}

func (tp *tap) port() int { return tp.ln.Addr().(*net.TCPAddr).Port }

// bytes returns what the source sent, once the connection has closed.
func (tp *tap) bytes(t testing.TB) []byte {
	t.Helper()
	select {
	case <-tp.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the migration connection did not close")
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return bytes.Clone(tp.stream.Bytes())
}

// migrationRun is the outcome of one QEMU-to-QEMU migration.
type migrationRun struct {
	status peers.MigrationStatus
	stream []byte // what the source sent on the wire
	dst    *peers.QEMUMigration
	marker []byte
}

// runQEMUMigration migrates a guest whose RAM holds a random marker page
// (and, with fill > 0, fill more random bytes at fillAddr) from a source
// QEMU (credentials srcDir, endpoint=client) to a
// destination QEMU (dstDir, endpoint=server, verify-peer=on) through a
// tap, using the plan's migrate URI (rewritten to the tap's port) and TLS
// destination. With tls false, neither side gets tls-creds: the control
// run that shows what the tap sees of a cleartext stream.
func runQEMUMigration(t testing.TB, srcDir, dstDir string, plan *migration.Plan, tls bool) migrationRun {
	return runQEMUMigrationFill(t, srcDir, dstDir, plan, tls, 0)
}

// fillAddr is where runQEMUMigrationFill puts its random bytes.
const fillAddr = 0x400000 // 4 MiB, below markerAddr: at most 28 MiB

func runQEMUMigrationFill(t testing.TB, srcDir, dstDir string, plan *migration.Plan, tls bool, fill int) migrationRun {
	t.Helper()
	marker := make([]byte, 32)
	_, err := rand.Read(marker)
	require.NoError(t, err)
	page := bytes.Repeat(marker, 4096/len(marker))
	memFile := filepath.Join(t.TempDir(), "marker.bin")
	require.NoError(t, os.WriteFile(memFile, page, 0o600))

	dstOpts := peers.QEMUMigrationOptions{Incoming: true}
	srcOpts := peers.QEMUMigrationOptions{Memory: []peers.MemoryImage{{File: memFile, Addr: markerAddr}}}
	if fill > 0 {
		data := make([]byte, fill)
		_, err := rand.Read(data)
		require.NoError(t, err)
		fillFile := filepath.Join(t.TempDir(), "fill.bin")
		require.NoError(t, os.WriteFile(fillFile, data, 0o600))
		srcOpts.Memory = append(srcOpts.Memory, peers.MemoryImage{File: fillFile, Addr: fillAddr})
	}
	if tls {
		dstOpts.CredsDir, srcOpts.CredsDir = dstDir, srcDir
	}
	dst, err := peers.StartQEMUMigration(t, dstOpts)
	require.NoError(t, err)
	src, err := peers.StartQEMUMigration(t, srcOpts)
	require.NoError(t, err)

	// Before: the marker is in the source's RAM, not in the destination's.
	mem, err := src.ReadMemory(markerAddr, len(page))
	require.NoError(t, err)
	require.Equal(t, page, mem, "the loader put the marker page into the source guest's RAM")
	mem, err = dst.ReadMemory(markerAddr, len(page))
	require.NoError(t, err)
	require.NotContains(t, string(mem), string(marker))

	// The tap listens where the plan sends the stream; the destination
	// QEMU listens on 127.0.0.1 behind it.
	incoming := freePort(t)
	tp := newTap(t, migrateHost(t, plan.MigrateURI), fmt.Sprintf("127.0.0.1:%d", incoming))
	if tls {
		_, err = dst.QMP("migrate-set-parameters", map[string]any{"tls-creds": dst.CredsID})
		require.NoError(t, err)
		params := map[string]any{"tls-creds": src.CredsID}
		if plan.TLSDestination != "" {
			params["tls-hostname"] = plan.TLSDestination
		}
		_, err = src.QMP("migrate-set-parameters", params)
		require.NoError(t, err)
	}
	_, err = dst.QMP("migrate-incoming", map[string]any{"uri": fmt.Sprintf("tcp:127.0.0.1:%d", incoming)})
	require.NoError(t, err)

	uri := qemuURI(t, plan.MigrateURI, tp.port())
	_, err = src.QMP("migrate", map[string]any{"uri": uri})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	st, err := src.WaitMigration(ctx)
	require.NoError(t, err, "source log:\n%s\ndestination log:\n%s", src.Log(), dst.Log())
	return migrationRun{status: st, stream: tp.bytes(t), dst: dst, marker: marker}
}

// migrateHost returns the host of a "tcp://host[:port]" migrate URI.
func migrateHost(t testing.TB, migrateURI string) string {
	t.Helper()
	rest, ok := strings.CutPrefix(migrateURI, "tcp://")
	require.True(t, ok, migrateURI)
	if h, _, err := net.SplitHostPort(rest); err == nil {
		return h
	}
	return strings.Trim(rest, "[]")
}

// qemuURI turns the plan's libvirt migrate URI "tcp://host[:port]" into
// QEMU's "tcp:host:port", with the tap's port.
func qemuURI(t testing.TB, migrateURI string, port int) string {
	t.Helper()
	return "tcp:" + net.JoinHostPort(migrateHost(t, migrateURI), fmt.Sprint(port))
}

// TestQEMUNativeTLSMigration migrates between two real QEMU processes
// over loopback with the migration TLS directories libvirttls laid out,
// using the migrate URI and TLS destination from a migration plan.
func TestQEMUNativeTLSMigration(t *testing.T) {
	t.Parallel()
	peers.Require(t, "qemu-system-x86_64")
	ca := newCA(t, "kvmpki migration CA")
	other := newCA(t, "another CA")
	// The destination certificate names the host, not the loopback
	// address the stream goes to: the plan must supply the TLS
	// destination, or the source QEMU refuses the name.
	kvm1 := ca.issue(t, "kvm1.example.org", provider.RoleHost, []string{"kvm1.example.org"}, []string{"10.0.0.1"}, time.Hour)
	kvm2 := ca.issue(t, "kvm2.example.org", provider.RoleHost, []string{"kvm2.example.org"}, []string{"10.0.0.2"}, time.Hour)
	rogue := other.issue(t, "kvm2.example.org", provider.RoleHost, []string{"kvm2.example.org"}, []string{"10.0.0.2"}, time.Hour)
	rogueSrc := other.issue(t, "kvm1.example.org", provider.RoleHost, []string{"kvm1.example.org"}, []string{"10.0.0.1"}, time.Hour)

	revokedSrc := ca.issue(t, "kvm3.example.org", provider.RoleHost, []string{"kvm3.example.org"}, nil, time.Hour)
	_, revokedSrcDir := securedHost(t, ca.bundle, revokedSrc, nil)
	crl := ca.revoke(t, revokedSrc)

	_, srcDir := securedHost(t, ca.bundle, kvm1, nil)
	_, dstDir := securedHost(t, ca.bundle, kvm2, nil)
	// The same destination with the CA's CRL installed by libvirttls
	// (ca-crl.pem in its migration TLS directory).
	_, dstWithCRLDir := securedHost(t, ca.bundle, kvm2, crl)
	_, rogueDstDir := securedHost(t, other.bundle, rogue, nil)
	// This source trusts both CAs, so that it accepts the destination and
	// the refusal comes from the destination, which trusts only ca.
	_, rogueSrcDir := securedHost(t, append(bytes.Clone(other.bundle), ca.bundle...), rogueSrc, nil)

	plan, err := migration.NewPlan(
		migration.Host{Name: "kvm1", Address: "127.0.0.1", State: migration.StateSecured, LibvirtPort: 26514},
		migration.Host{Name: "kvm2", Address: "127.0.0.1", State: migration.StateSecured, LibvirtPort: 26515,
			MigrationPort: 49300, Certificate: kvm2.cert},
		nil)
	require.NoError(t, err)
	require.Equal(t, migration.NativeTLS(), plan.Transport)
	require.Equal(t, "tcp://127.0.0.1:49300", plan.MigrateURI)
	require.Equal(t, "kvm2.example.org", plan.TLSDestination)
	require.NotZero(t, plan.Flags&migration.FlagTLS)

	t.Run("cleartext control run", func(t *testing.T) {
		// Without tls-creds, what CloudStack's plan amounts to: the tap
		// sees QEMU's stream magic and the guest's memory.
		run := runQEMUMigration(t, srcDir, dstDir, plan, false)
		require.Equal(t, "completed", run.status.Status, run.status.ErrorDesc)
		assert.True(t, bytes.HasPrefix(run.stream, []byte("QEVM")), "a plain stream starts with QEMU's magic, got % x", head(run.stream))
		assert.GreaterOrEqual(t, bytes.Count(run.stream, run.marker), 128, "the marker page crossed the wire in clear")
		_, _, err := tlsRecords(run.stream)
		assert.Error(t, err, "a cleartext stream is not TLS records: the record check can fail")
		t.Logf("cleartext stream: %d bytes, starts % x, %d marker hits", len(run.stream), head(run.stream), bytes.Count(run.stream, run.marker))
	})

	t.Run("native TLS completes and hides the memory", func(t *testing.T) {
		run := runQEMUMigration(t, srcDir, dstDir, plan, true)
		require.Equal(t, "completed", run.status.Status, run.status.ErrorDesc)
		require.GreaterOrEqual(t, len(run.stream), 5)
		assert.Equal(t, []byte{0x16, 0x03}, run.stream[:2], "the stream starts with a TLS handshake record, got % x", head(run.stream))
		assert.Equal(t, 0, bytes.Count(run.stream, run.marker), "the marker never crossed the wire in clear")
		assert.False(t, bytes.Contains(run.stream, []byte("QEVM")), "QEMU's stream magic never crossed the wire in clear")
		records, appData, err := tlsRecords(run.stream)
		require.NoError(t, err, "every byte on the wire is part of a TLS record")
		assert.Greater(t, appData, 10, "the memory travelled as TLS application data")
		t.Logf("TLS stream: %d records, %d of application data", records, appData)
		assert.Greater(t, len(run.stream), 64<<10, "the memory was sent (encrypted)")
		t.Logf("TLS stream: %d bytes, starts % x, %d marker hits", len(run.stream), head(run.stream), bytes.Count(run.stream, run.marker))
		// The destination decrypted the memory: the marker page is in its RAM.
		mem, err := run.dst.ReadMemory(markerAddr, 4096)
		require.NoError(t, err)
		assert.Equal(t, bytes.Repeat(run.marker, 4096/len(run.marker)), mem)
		raw, err := run.dst.QMP("query-status", nil)
		require.NoError(t, err)
		var status struct {
			Status  string `json:"status"`
			Running bool   `json:"running"`
		}
		require.NoError(t, json.Unmarshal(raw, &status))
		assert.True(t, status.Running, "the guest runs on the destination: %s", raw)
	})

	t.Run("IPv6 destination", func(t *testing.T) {
		ln, err := net.Listen("tcp", "[::1]:0")
		if err != nil {
			t.Skipf("no IPv6 loopback here: %v", err)
		}
		ln.Close()
		v6, err := migration.NewPlan(
			migration.Host{Name: "kvm1", Address: "::1", State: migration.StateSecured, LibvirtPort: 26514},
			migration.Host{Name: "kvm2", Address: "::1", State: migration.StateSecured, LibvirtPort: 26515,
				MigrationPort: 49300, Certificate: kvm2.cert},
			nil)
		require.NoError(t, err)
		require.Equal(t, "tcp://[::1]:49300", v6.MigrateURI)
		require.Equal(t, "kvm2.example.org", v6.TLSDestination)
		run := runQEMUMigration(t, srcDir, dstDir, v6, true)
		require.Equal(t, "completed", run.status.Status, run.status.ErrorDesc)
		assert.True(t, isTLSRecord(run.stream), "% x", head(run.stream))
		assert.Equal(t, 0, bytes.Count(run.stream, run.marker))
	})

	t.Run("without the TLS destination the name check fails", func(t *testing.T) {
		noName := *plan
		noName.TLSDestination = ""
		run := runQEMUMigration(t, srcDir, dstDir, &noName, true)
		require.Equal(t, "failed", run.status.Status)
		e := migration.Classify(run.status.ErrorDesc)
		require.NotNil(t, e, run.status.ErrorDesc)
		assert.ErrorIs(t, e, migration.ErrNameMismatch)
		assert.Equal(t, "127.0.0.1", e.Name)
		assert.Equal(t, 0, bytes.Count(run.stream, run.marker))
	})

	t.Run("destination certificate from another CA", func(t *testing.T) {
		run := runQEMUMigration(t, srcDir, rogueDstDir, plan, true)
		require.Equal(t, "failed", run.status.Status)
		t.Logf("source: %s", run.status.ErrorDesc)
		e := migration.Classify(run.status.ErrorDesc)
		require.NotNil(t, e, run.status.ErrorDesc)
		assert.ErrorIs(t, e, migration.ErrUnknownAuthority)
		assert.Equal(t, 0, bytes.Count(run.stream, run.marker))
	})

	t.Run("source certificate from another CA", func(t *testing.T) {
		run := runQEMUMigration(t, rogueSrcDir, dstDir, plan, true)
		assertSourceFailedOrFinished(t, run)
		assertRefusedByDestination(t, run, migration.ErrClientCertificateMissing)
		// GnuTLS sends no certificate whose issuer the server did not
		// list, so the destination saw none: "No certificate was found".
	})

	t.Run("source certificate revoked, CRL installed by libvirttls", func(t *testing.T) {
		require.FileExists(t, filepath.Join(dstWithCRLDir, libvirttls.QEMUCRL))
		run := runQEMUMigration(t, revokedSrcDir, dstWithCRLDir, plan, true)
		assertSourceFailedOrFinished(t, run)
		assertRefusedByDestination(t, run, migration.ErrRevoked)

		// The same pair without the revoked certificate completes: the
		// CRL file itself is fine.
		ok := runQEMUMigration(t, srcDir, dstWithCRLDir, plan, true)
		assert.Equal(t, "completed", ok.status.Status, ok.status.ErrorDesc)
	})
}

// TestQEMUCredentialsUnreadable classifies QEMU's own refusal of a
// migration TLS directory without the CA certificate.
func TestQEMUCredentialsUnreadable(t *testing.T) {
	t.Parallel()
	peers.Require(t, "qemu-system-x86_64")
	dir := t.TempDir()
	_, err := peers.StartQEMUMigration(t, peers.QEMUMigrationOptions{CredsDir: dir, Incoming: true})
	require.Error(t, err)
	e := migration.Classify(err.Error())
	require.NotNil(t, e, err.Error())
	assert.ErrorIs(t, e, migration.ErrCredentialsUnreadable)
	assert.Equal(t, filepath.Join(dir, libvirttls.QEMUCACert), e.Path)
}

// assertSourceFailedOrFinished accepts either verdict of the source
// when the destination refuses the source's client certificate: with TLS
// 1.3 the client finishes its handshake before the server has judged its
// certificate, so a source QEMU may stream the whole (encrypted) state and
// report "completed" while the destination refuses it. The verdict that
// counts is the destination's (assertRefusedByDestination), as libvirt's
// confirm phase makes it; a source that reports anything else than
// "failed" or "completed" is a defect.
func assertSourceFailedOrFinished(t *testing.T, run migrationRun) {
	t.Helper()
	assert.Contains(t, []string{"failed", "completed"}, run.status.Status, run.status.ErrorDesc)
}

// assertRefusedByDestination checks a migration the destination QEMU
// refused after the TLS handshake: its log gives the reason, the source's
// error (when QEMU 7.2 records one: a failure it detects late, at
// completion, has none) is ErrClientRefused, nothing of the memory
// crossed in clear, and the destination is still waiting, not running.
func assertRefusedByDestination(t *testing.T, run migrationRun, reason error) {
	t.Helper()
	var dstErr *migration.Error
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if dstErr = migration.Classify(run.dst.Log()); dstErr != nil {
			break
		}
	}
	t.Logf("source: %q\ndestination log:\n%s", run.status.ErrorDesc, run.dst.Log())
	require.NotNil(t, dstErr, "the destination logged no reason")
	assert.ErrorIs(t, dstErr, reason)
	if run.status.ErrorDesc != "" {
		assert.ErrorIs(t, migration.Classify(run.status.ErrorDesc), migration.ErrClientRefused)
	}
	assert.Equal(t, 0, bytes.Count(run.stream, run.marker))
	raw, err := run.dst.QMP("query-status", nil)
	require.NoError(t, err)
	var status struct{ Status string }
	require.NoError(t, json.Unmarshal(raw, &status))
	assert.Equal(t, "inmigrate", status.Status, "the destination guest never ran")
}

// tlsRecords walks b as a sequence of TLS records (RFC 8446 section 5.1:
// type 20-23, legacy version 3.1-3.3, length at most 2^14+256) to its
// very end, and returns how many there are and how many carry
// application data. It fails on the first byte that is not part of a
// well-formed record: then something crossed the wire outside TLS.
func tlsRecords(b []byte) (records, appData int, err error) {
	for off := 0; off < len(b); {
		if len(b)-off < 5 {
			return records, appData, fmt.Errorf("%d trailing bytes at offset %d are not a TLS record header", len(b)-off, off)
		}
		typ, major, minor := b[off], b[off+1], b[off+2]
		length := int(b[off+3])<<8 | int(b[off+4])
		if typ < 20 || typ > 23 || major != 3 || minor < 1 || minor > 3 || length > 1<<14+256 {
			return records, appData, fmt.Errorf("no TLS record at offset %d: % x", off, b[off:off+5])
		}
		if off+5+length > len(b) {
			return records, appData, fmt.Errorf("TLS record at offset %d truncated", off)
		}
		records++
		if typ == 23 {
			appData++
		}
		off += 5 + length
	}
	return records, appData, nil
}

// isTLSRecord reports whether b starts with a TLS handshake record.
func isTLSRecord(b []byte) bool { return len(b) >= 3 && b[0] == 0x16 && b[1] == 0x03 }

// head returns the first bytes of b, for messages.
func head(b []byte) []byte { return b[:min(len(b), 16)] }
