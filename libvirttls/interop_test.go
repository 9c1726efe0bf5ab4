package libvirttls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/libvirtconf"
	"github.com/kvmpki/kvmpki/provider"
)

// pkiOf returns creds as the peers package takes them.
func pkiOf(c *Credentials) peers.PKI {
	return peers.PKI{CACert: c.CACert, Cert: c.Cert, Key: c.Key, CRL: c.CRL}
}

// layoutClient reads the client side of the layout under o.Root, as
// virsh on that host would use it.
func layoutClient(t testing.TB, o *Config) peers.PKI {
	t.Helper()
	read := func(p string) []byte {
		b, err := os.ReadFile(o.DiskPath(p))
		require.NoError(t, err)
		return b
	}
	return peers.PKI{CACert: read(CACertPath), Cert: read(ClientCertPath), Key: read(ClientKeyPath)}
}

// startSecuredLibvirtd plans and applies opts (with the port, socket
// directory and log the daemon needs) into a fresh root and starts
// libvirtd from the libvirtd.conf libvirttls rendered there.
func startSecuredLibvirtd(t *testing.T, creds *Credentials, base Config) (*peers.Libvirtd, *Config) {
	t.Helper()
	opts := base
	opts.Root = newRoot(t)
	opts.RootedConfigPaths = true
	d, err := peers.StartLibvirtdFromConfig(t, func(c peers.LibvirtdConfig) (string, error) {
		opts.TLSPort = c.Port
		opts.ListenAddr = "127.0.0.1"
		opts.ExtraLibvirtd = []libvirtconf.Setting{
			{Key: "unix_sock_dir", Value: libvirtconf.StringValue(c.SockDir)},
			{Key: "log_outputs", Value: libvirtconf.StringValue("3:file:" + c.LogPath)},
		}
		plan, err := NewPlan(t.Context(), creds, &opts)
		if err != nil {
			return "", err
		}
		if err := plan.Apply(t.Context(), nil); err != nil {
			return "", err
		}
		return opts.DiskPath(LibvirtdConfPath), nil
	})
	require.NoError(t, err)
	return d, &opts
}

func TestLibvirtdInterop(t *testing.T) {
	t.Parallel()
	peers.Require(t, "libvirtd", "virsh")
	ca := newTestCA(t)
	other := newTestCA(t)
	host, hostCert := ca.host(t, "kvm1.example.org")
	peer, _ := ca.host(t, "kvm2.example.org")
	revoked, revokedCert := ca.host(t, "kvm3.example.org")
	proxy, _ := ca.issue(t, provider.RoleClient, "consoleproxy.example.org")
	foreign, _ := other.host(t, "kvm2.example.org")
	ca.revoke(t, revokedCert)
	host.CRL = ca.crl(t)

	// The revoked host is on the allow list, so that its refusal proves
	// the CRL; the console proxy is from the same CA but not on it. The
	// peer host is allowed by a glob pattern.
	d, opts := startSecuredLibvirtd(t, host, Config{LookupGroup: fakeGroups,
		AllowedClients: []*x509.Certificate{hostCert, revokedCert},
		AllowedDNs:     []string{"CN=kvm2.*"},
	})

	for _, tc := range []struct {
		name    string
		client  peers.PKI
		wantErr string
	}{
		{name: "host's own client layout", client: layoutClient(t, opts)},
		{name: "peer host allowed by a pattern", client: pkiOf(peer)},
		{name: "revoked by crl_file", client: pkiOf(revoked), wantErr: "revoked"},
		{name: "DN outside tls_allowed_dn_list", client: pkiOf(proxy), wantErr: "not on the list of allowed clients"},
		{
			name: "foreign CA",
			// Both CAs in the client's file, or virsh refuses its own
			// certificate before connecting.
			client:  peers.PKI{CACert: append(append([]byte{}, ca.caPEM...), other.caPEM...), Cert: foreign.Cert, Key: foreign.Key},
			wantErr: "Failed to verify peer's certificate",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := d.Connect(t, tc.client, "localhost")
			if tc.wantErr == "" {
				assert.NoError(t, err)
			} else {
				assert.ErrorContains(t, err, tc.wantErr)
			}
		})
	}

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(d.Port))
	t.Run("CheckHost dials the secured host", func(t *testing.T) {
		st := CheckHost(t.Context(), opts, &CheckHostOptions{DialAddr: addr})
		assert.True(t, st.Secured, st.String())
		assert.Equal(t, "secured", st.String())
		assert.Equal(t, hostCert.SerialNumber, st.Certificate.SerialNumber)
	})
	t.Run("CheckHost sees libvirtd refuse a host off the allow list", func(t *testing.T) {
		// A host of the same CA, not on the daemon's list, checking
		// against the daemon: the handshake completes, then libvirtd
		// closes instead of confirming.
		proxyHost, _ := ca.host(t, "kvm9.example.org")
		o := &Config{LookupGroup: fakeGroups, Root: newRoot(t)}
		plan, err := NewPlan(t.Context(), proxyHost, o)
		require.NoError(t, err)
		require.NoError(t, plan.Apply(t.Context(), nil))
		st := CheckHost(t.Context(), o, &CheckHostOptions{DialAddr: addr})
		assert.False(t, st.Secured)
		assert.ErrorIs(t, st.Err(), ErrDialFailed)
		assert.ErrorContains(t, st.Err(), "refused the client certificate")
	})
	t.Run("CheckHost refuses a name mismatch", func(t *testing.T) {
		st := CheckHost(t.Context(), opts, &CheckHostOptions{DialAddr: addr, ServerName: "kvm7.example.org"})
		assert.False(t, st.Secured)
		assert.ErrorIs(t, st.Err(), ErrDialFailed)
		assert.ErrorContains(t, st.Err(), "kvm7.example.org")
	})
}

func TestQEMUVNCInterop(t *testing.T) {
	t.Parallel()
	peers.Require(t, "qemu-system-x86_64")
	ca := newTestCA(t)
	other := newTestCA(t)
	host, _ := ca.host(t, "kvm1.example.org")
	proxy, _ := ca.issue(t, provider.RoleClient, "consoleproxy.example.org")
	revoked, revokedCert := ca.issue(t, provider.RoleClient, "oldproxy.example.org")
	foreign, _ := other.issue(t, provider.RoleClient, "consoleproxy.example.org")
	ca.revoke(t, revokedCert)
	host.CRL = ca.crl(t)

	opts := &Config{LookupGroup: fakeGroups, Root: newRoot(t)}
	plan, err := NewPlan(t.Context(), host, opts)
	require.NoError(t, err)
	require.NoError(t, plan.Apply(t.Context(), nil))

	// The VNC directory, and the migration directory as a TLS server
	// (what a migration destination's QEMU loads).
	for _, dir := range []string{VNCDir, QEMUDir} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			q, err := peers.StartQEMUVNCFromDir(t, opts.DiskPath(dir), peers.QEMUVNCOptions{})
			require.NoError(t, err)
			for _, tc := range []struct {
				name    string
				client  *Credentials
				wantErr string
			}{
				{name: "console proxy certificate", client: proxy},
				{name: "revoked by ca-crl.pem", client: revoked, wantErr: "revoked"},
				{name: "foreign CA", client: foreign, wantErr: "rejected"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					client := pkiOf(tc.client)
					client.CACert = host.CACert // trust the server's CA
					cfg, err := client.ClientTLSConfig("127.0.0.1")
					require.NoError(t, err)
					err = q.Probe(t, cfg)
					if tc.wantErr == "" {
						assert.NoError(t, err)
					} else {
						assert.ErrorContains(t, err, tc.wantErr)
					}
				})
			}
		})
	}
}

func TestAllowedDNMatchesVirtPKIQueryDN(t *testing.T) {
	t.Parallel()
	peers.Require(t, "virt-pki-query-dn")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	atv := func(oid asn1.ObjectIdentifier, v string) pkix.AttributeTypeAndValue {
		return pkix.AttributeTypeAndValue{Type: oid, Value: v}
	}
	ia5 := func(oid asn1.ObjectIdentifier, v string) pkix.AttributeTypeAndValue {
		return pkix.AttributeTypeAndValue{Type: oid, Value: asn1.RawValue{Tag: asn1.TagIA5String, Bytes: []byte(v)}}
	}
	var (
		c   = asn1.ObjectIdentifier{2, 5, 4, 6}
		st  = asn1.ObjectIdentifier{2, 5, 4, 8}
		l   = asn1.ObjectIdentifier{2, 5, 4, 7}
		o   = asn1.ObjectIdentifier{2, 5, 4, 10}
		ou  = asn1.ObjectIdentifier{2, 5, 4, 11}
		cn  = asn1.ObjectIdentifier{2, 5, 4, 3}
		dc  = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
		uid = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}
	)
	for _, tc := range []struct {
		name        string
		subject     pkix.RDNSequence
		want        string
		unsupported bool // AllowedDN refuses it
	}{
		{name: "CN only (rootca)", subject: pkix.RDNSequence{{atv(cn, "kvm1.example.org")}}, want: "CN=kvm1.example.org"},
		{name: "Go order", subject: (&pkix.Name{Country: []string{"DE"}, Province: []string{"Berlin"}, Locality: []string{"Berlin"},
			Organization: []string{"Example"}, OrganizationalUnit: []string{"Cloud"}, CommonName: "kvm1"}).ToRDNSequence(),
			want: "C=DE,ST=Berlin,L=Berlin,O=Example,OU=Cloud,CN=kvm1"},
		{name: "country and state by OID", subject: pkix.RDNSequence{{atv(c, "FR")}, {atv(st, "Bretagne")}, {atv(l, "Rennes")}, {atv(cn, "kvm2")}}, want: "C=FR,ST=Bretagne,L=Rennes,CN=kvm2"},
		{name: "CN first", subject: pkix.RDNSequence{{atv(cn, "kvm1")}, {atv(o, "Example")}}, want: "CN=kvm1,O=Example"},
		{name: "DC and UID", subject: pkix.RDNSequence{{ia5(dc, "org")}, {ia5(dc, "example")}, {atv(uid, "agent1")}}, want: "DC=org,DC=example,UID=agent1"},
		{name: "DC as PrintableString", subject: pkix.RDNSequence{{atv(dc, "org")}, {atv(cn, "kvm1")}}, unsupported: true},
		{name: "serialNumber", subject: pkix.RDNSequence{{atv(asn1.ObjectIdentifier{2, 5, 4, 5}, "42")}, {atv(cn, "kvm1")}}, unsupported: true},
		{name: "glob character", subject: pkix.RDNSequence{{atv(cn, "*")}}, unsupported: true},
		{name: "multi-valued RDN", subject: pkix.RDNSequence{{atv(o, "Example")}, {atv(cn, "kvm1"), atv(ou, "Hosts")}}},
		{name: "unicode", subject: pkix.RDNSequence{{atv(o, "Bärlin Hosting")}, {atv(cn, "kvm1")}}, want: "O=Bärlin Hosting,CN=kvm1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := asn1.Marshal(tc.subject)
			require.NoError(t, err)
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), RawSubject: raw,
				NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
			require.NoError(t, err)
			cert, err := x509.ParseCertificate(der)
			require.NoError(t, err)
			path := filepath.Join(t.TempDir(), "cert.pem")
			require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
			out, err := exec.CommandContext(t.Context(), "virt-pki-query-dn", path).CombinedOutput()
			require.NoError(t, err, "%s", out)
			gnutls := strings.TrimSpace(string(out))

			got, err := AllowedDN(cert)
			if tc.unsupported {
				assert.ErrorIs(t, err, ErrUnsupportedDN, "GnuTLS prints %q", gnutls)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, gnutls, got, "AllowedDN must print what libvirt compares")
			if tc.want != "" {
				assert.Equal(t, tc.want, got)
			}
		})
	}
}

// TestHostPathsAndReload runs libvirtd on the host paths a real host's
// configuration names (/etc/pki/..., as secure-host writes it), seen
// through an overlay of the temporary root's /etc, and proves the plan's
// action for a credentials-only change: after a new CRL is applied,
// "virt-admin server-update-tls libvirtd" makes the running daemon refuse
// the newly revoked client, without a restart. libvirt reloads from its
// default paths only, which is why the layout keeps them.
func TestHostPathsAndReload(t *testing.T) {
	t.Parallel()
	peers.Require(t, "libvirtd", "virsh", "virt-admin")
	ca := newTestCA(t)
	host, _ := ca.host(t, "kvm1.example.org")
	peer, peerCert := ca.host(t, "kvm2.example.org")
	host.CRL = ca.crl(t)

	var sockDir string
	opts := Config{LookupGroup: fakeGroups, Root: newRoot(t), ListenAddr: "127.0.0.1"}
	d, err := peers.StartLibvirtdOnHostPaths(t, opts.DiskPath("/etc/pki"), func(c peers.LibvirtdConfig) (string, error) {
		sockDir = c.SockDir
		opts.TLSPort = c.Port
		opts.ExtraLibvirtd = []libvirtconf.Setting{
			{Key: "unix_sock_dir", Value: libvirtconf.StringValue(c.SockDir)},
			{Key: "log_outputs", Value: libvirtconf.StringValue("3:file:" + c.LogPath)},
		}
		plan, err := NewPlan(t.Context(), host, &opts)
		if err != nil {
			return "", err
		}
		return opts.DiskPath(LibvirtdConfPath), plan.Apply(t.Context(), nil)
	})
	require.NoError(t, err)
	conf := string(readFile(t, opts.DiskPath(LibvirtdConfPath)))
	require.Contains(t, conf, "\nca_file = \"/etc/pki/CA/cacert.pem\"\n", "the daemon reads host paths")
	require.NoError(t, d.Connect(t, pkiOf(peer), "localhost"), "before the revocation")

	ca.revoke(t, peerCert)
	host.CRL = ca.crl(t)
	plan, err := NewPlan(t.Context(), host, &opts)
	require.NoError(t, err)
	require.Len(t, plan.Actions, 2, "server-update-tls, then the guests' VNC reload")
	require.Equal(t, []string{"virt-admin", "server-update-tls", "libvirtd"}, plan.Actions[0].Command)
	require.NoError(t, plan.Apply(t.Context(), nil))
	require.NoError(t, d.Connect(t, pkiOf(peer), "localhost"), "new files alone change nothing: the daemon holds its credentials")
	// The action, against the test daemon's admin socket.
	adminURI := "libvirtd:///system?socket=" + filepath.Join(sockDir, "libvirt-admin-sock")
	a := plan.Actions[0]
	require.NoError(t, ExecAction(t.Context(), Action{Command: append([]string{a.Command[0], "-c", adminURI}, a.Command[1:]...)}))
	assert.ErrorContains(t, d.Connect(t, pkiOf(peer), "localhost"), "revoked", "after server-update-tls, without a restart")
	assert.NoError(t, d.Connect(t, pkiOf(host), "localhost"), "other clients still connect")

	// With paths under another root the reload would read /etc/pki, so
	// such a plan restarts instead.
	rooted := opts
	rooted.RootedConfigPaths = true
	renewed, _ := ca.host(t, "kvm1.example.org")
	renewed.CRL = host.CRL
	p2, err := NewPlan(t.Context(), renewed, &rooted)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(p2.Actions), 2)
	assert.Equal(t, []string{"systemctl", "restart", "libvirtd.service"}, p2.Actions[len(p2.Actions)-2].Command)
	assert.Equal(t, "qemu-monitor-command", p2.Actions[len(p2.Actions)-1].Command[1], "a restart of libvirtd does not reach running guests")
}
