package libvirttls

import (
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/libvirtconf"
)

func TestCheckHost(t *testing.T) {
	ca := newTestCA(t)
	creds, cert := ca.host(t, "kvm1.example.org")
	secured := func(t *testing.T) *Config {
		o := &Config{LookupGroup: fakeGroups, Root: newRoot(t)}
		plan, err := NewPlan(t.Context(), creds, o)
		require.NoError(t, err)
		require.NoError(t, plan.Apply(t.Context(), nil))
		return o
	}

	t.Run("secured", func(t *testing.T) {
		st := CheckHost(t.Context(), secured(t), nil)
		assert.True(t, st.Secured, st.String())
		assert.NoError(t, st.Err())
	})

	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, o *Config)
		err   error
		msg   string
	}{
		{name: "unsecured stock host", spoil: func(t *testing.T, o *Config) {
			require.NoError(t, os.RemoveAll(o.DiskPath("/etc/pki")))
			require.NoError(t, os.WriteFile(o.DiskPath(LibvirtdConfPath), stock(t, "libvirtd.conf"), 0o644))
		}, err: ErrCredentialsMissing, msg: CACertPath},
		{name: "key removed", spoil: func(t *testing.T, o *Config) {
			require.NoError(t, os.Remove(o.DiskPath(ServerKeyPath)))
		}, err: ErrCredentialsMissing, msg: ServerKeyPath},
		{name: "listen_tls off", spoil: func(t *testing.T, o *Config) {
			b, err := libvirtconf.Edit(readFile(t, o.DiskPath(LibvirtdConfPath)), libvirtconf.Setting{Key: "listen_tls", Value: libvirtconf.IntValue(0)})
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(o.DiskPath(LibvirtdConfPath), b, 0o644))
		}, err: ErrNotConfigured, msg: "listen_tls"},
		{name: "other cert_file", spoil: func(t *testing.T, o *Config) {
			b, err := libvirtconf.Edit(readFile(t, o.DiskPath(LibvirtdConfPath)), libvirtconf.Setting{Key: "cert_file", Value: libvirtconf.StringValue("/tmp/x.pem")})
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(o.DiskPath(LibvirtdConfPath), b, 0o644))
		}, err: ErrNotConfigured, msg: "cert_file"},
		{name: "revoked by the installed CRL", spoil: func(t *testing.T, o *Config) {
			ca.revoke(t, cert)
			require.NoError(t, os.WriteFile(o.DiskPath(CRLPath), ca.crl(t), 0o644))
		}, err: ErrRevoked},
		{name: "QEMU migration key removed", spoil: func(t *testing.T, o *Config) {
			require.NoError(t, os.Remove(o.DiskPath(QEMUDir+"/client-key.pem")))
		}, err: ErrCredentialsMissing, msg: "/etc/pki/qemu/client-key.pem"},
		{name: "VNC certificate of another host", spoil: func(t *testing.T, o *Config) {
			otherCreds, _ := ca.host(t, "kvm8.example.org")
			require.NoError(t, os.WriteFile(o.DiskPath(VNCDir+"/server-cert.pem"), otherCreds.Cert, 0o644))
		}, err: ErrCredentialsInvalid, msg: "QEMU's VNC credentials"},
		{name: "migration TLS not configured", spoil: func(t *testing.T, o *Config) {
			require.NoError(t, os.WriteFile(o.DiskPath(QEMUConfPath), stock(t, "qemu.conf"), 0o644))
		}, err: ErrNotConfigured, msg: "qemu.conf: vnc_tls is not 1"},
		{name: "expired", spoil: func(t *testing.T, o *Config) {
			o.Time = func() time.Time { return cert.NotAfter.Add(time.Minute) }
		}, err: ErrCredentialsInvalid, msg: "expired"},
		{name: "port closed", spoil: func(t *testing.T, o *Config) {}, err: ErrDialFailed, msg: "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := secured(t)
			tc.spoil(t, o)
			check := &CheckHostOptions{}
			if tc.err == ErrDialFailed {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				port := l.Addr().(*net.TCPAddr).Port
				require.NoError(t, l.Close())
				check.DialAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			}
			st := CheckHost(t.Context(), o, check)
			assert.False(t, st.Secured)
			assert.ErrorIs(t, st.Err(), tc.err)
			if tc.msg != "" {
				assert.ErrorContains(t, st.Err(), tc.msg)
			}
			assert.Contains(t, st.String(), "not secured: ")
		})
	}
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}

func TestOptionsClone(t *testing.T) {
	o := &Config{AllowedDNs: []string{}, ExtraQEMU: []libvirtconf.Setting{{Key: "user", Value: libvirtconf.StringValue("root")}}}
	c := o.Clone()
	c.ExtraQEMU[0].Key = "group"
	c.Root = "/x"
	assert.Equal(t, "user", o.ExtraQEMU[0].Key)
	assert.Empty(t, o.Root)
	assert.NotNil(t, c.AllowedDNs, "an empty allow list stays empty, not unset")
	assert.Nil(t, c.AllowedClients)
	var nilOpts *Config
	assert.Nil(t, nilOpts.Clone())
}
