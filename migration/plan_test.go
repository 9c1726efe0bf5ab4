package migration_test

import (
	"crypto/x509"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/migration"
)

func secured(name, addr string) migration.Host {
	return migration.Host{Name: name, Address: addr, State: migration.StateSecured}
}

func unsecured(name, addr string) migration.Host {
	return migration.Host{Name: name, Address: addr, State: migration.StateUnsecured}
}

func TestNewPlan(t *testing.T) {
	dnsCert := &x509.Certificate{DNSNames: []string{"kvm2.example.org"}}
	ipCert := &x509.Certificate{IPAddresses: []net.IP{net.ParseIP("10.0.0.2")}}
	tests := []struct {
		name      string
		src, dst  migration.Host
		opts      *migration.PlanOptions
		transport migration.Transport
		srcURI    string
		destURI   string
		migrate   string
		tlsDest   string
		flags     migration.Flags
	}{
		{
			name: "secured IPv4 pair", src: secured("kvm1", "10.0.0.1"), dst: secured("kvm2", "10.0.0.2"),
			transport: migration.NativeTLS(),
			srcURI:    "qemu+tls://10.0.0.1/system", destURI: "qemu+tls://10.0.0.2/system", migrate: "tcp://10.0.0.2",
			flags: migration.FlagLive | migration.FlagTLS,
		},
		{
			name:      "secured IPv6 pair with ports",
			src:       migration.Host{Address: "2001:db8::1", State: migration.StateSecured, LibvirtPort: 26514},
			dst:       migration.Host{Address: "2001:db8::2", State: migration.StateSecured, LibvirtPort: 26515, MigrationPort: 49300},
			transport: migration.NativeTLS(),
			srcURI:    "qemu+tls://[2001:db8::1]:26514/system", destURI: "qemu+tls://[2001:db8::2]:26515/system",
			migrate: "tcp://[2001:db8::2]:49300",
			flags:   migration.FlagLive | migration.FlagTLS,
		},
		{
			name: "IPv6 link-local zone is escaped in URIs",
			src:  secured("", "fe80::1%eth0"), dst: secured("", "fe80::2%eth0"),
			transport: migration.NativeTLS(),
			srcURI:    "qemu+tls://[fe80::1%25eth0]/system", destURI: "qemu+tls://[fe80::2%25eth0]/system",
			migrate: "tcp://[fe80::2%25eth0]",
			flags:   migration.FlagLive | migration.FlagTLS,
		},
		{
			name:      "host names, certificate carries the name: no TLS destination",
			src:       secured("kvm1", "kvm1.example.org"),
			dst:       migration.Host{Name: "kvm2", Address: "kvm2.example.org", State: migration.StateSecured, Certificate: dnsCert},
			transport: migration.NativeTLS(),
			srcURI:    "qemu+tls://kvm1.example.org/system", destURI: "qemu+tls://kvm2.example.org/system",
			migrate: "tcp://kvm2.example.org",
			flags:   migration.FlagLive | migration.FlagTLS,
		},
		{
			name: "migration network address not in the certificate: TLS destination from it",
			src:  secured("kvm1", "kvm1.example.org"),
			dst: migration.Host{Name: "kvm2", Address: "kvm2.example.org", State: migration.StateSecured,
				MigrationAddress: "192.168.50.2", Certificate: dnsCert},
			transport: migration.NativeTLS(),
			srcURI:    "qemu+tls://kvm1.example.org/system", destURI: "qemu+tls://kvm2.example.org/system",
			migrate: "tcp://192.168.50.2", tlsDest: "kvm2.example.org",
			flags: migration.FlagLive | migration.FlagTLS,
		},
		{
			name:      "certificate with an IP only",
			src:       secured("kvm1", "10.0.0.1"),
			dst:       migration.Host{Name: "kvm2", Address: "kvm2.example.org", State: migration.StateSecured, Certificate: ipCert},
			transport: migration.NativeTLS(),
			srcURI:    "qemu+tls://10.0.0.1/system", destURI: "qemu+tls://kvm2.example.org/system",
			migrate: "tcp://kvm2.example.org", tlsDest: "10.0.0.2",
			flags: migration.FlagLive | migration.FlagTLS,
		},
		{
			name:      "explicit TLS name wins",
			src:       secured("kvm1", "10.0.0.1"),
			dst:       migration.Host{Address: "10.0.0.2", State: migration.StateSecured, TLSName: "kvm2.example.org", Certificate: ipCert},
			transport: migration.NativeTLS(),
			srcURI:    "qemu+tls://10.0.0.1/system", destURI: "qemu+tls://10.0.0.2/system",
			migrate: "tcp://10.0.0.2", tlsDest: "kvm2.example.org",
			flags: migration.FlagLive | migration.FlagTLS,
		},
		{
			name: "tunnelled alternative has no migrate URI",
			src:  secured("kvm1", "10.0.0.1"), dst: secured("kvm2", "10.0.0.2"),
			opts:      &migration.PlanOptions{Tunnelled: true, PKIPath: "/etc/pki/kvm pki"},
			transport: migration.Tunnelled(),
			srcURI:    "qemu+tls://10.0.0.1/system?pkipath=/etc/pki/kvm%20pki",
			destURI:   "qemu+tls://10.0.0.2/system?pkipath=/etc/pki/kvm%20pki",
			flags:     migration.FlagLive | migration.FlagPeerToPeer | migration.FlagTunnelled,
		},
		{
			name: "extra flags are kept",
			src:  secured("kvm1", "10.0.0.1"), dst: secured("kvm2", "10.0.0.2"),
			opts:      &migration.PlanOptions{ExtraFlags: migration.FlagAutoConverge | migration.FlagPersistDest},
			transport: migration.NativeTLS(),
			srcURI:    "qemu+tls://10.0.0.1/system", destURI: "qemu+tls://10.0.0.2/system", migrate: "tcp://10.0.0.2",
			flags: migration.FlagLive | migration.FlagTLS | migration.FlagAutoConverge | migration.FlagPersistDest,
		},
		{
			name: "two unsecured hosts with the insecure opt-in",
			src:  unsecured("kvm1", "10.0.0.1"), dst: unsecured("kvm2", "10.0.0.2"),
			opts:      &migration.PlanOptions{InsecureAllowUnsecuredMigration: true},
			transport: migration.PlainTCP(),
			srcURI:    "qemu+tcp://10.0.0.1/system", destURI: "qemu+tcp://10.0.0.2/system", migrate: "tcp://10.0.0.2",
			flags: migration.FlagLive,
		},
		{
			name:      "same address, different libvirtd ports",
			src:       migration.Host{Address: "127.0.0.1", State: migration.StateSecured, LibvirtPort: 26514},
			dst:       migration.Host{Address: "127.0.0.1", State: migration.StateSecured, LibvirtPort: 26515},
			transport: migration.NativeTLS(),
			srcURI:    "qemu+tls://127.0.0.1:26514/system", destURI: "qemu+tls://127.0.0.1:26515/system", migrate: "tcp://127.0.0.1",
			flags: migration.FlagLive | migration.FlagTLS,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := migration.NewPlan(tc.src, tc.dst, tc.opts)
			require.NoError(t, err)
			assert.Equal(t, tc.transport, p.Transport)
			assert.Equal(t, tc.srcURI, p.SourceURI)
			assert.Equal(t, tc.destURI, p.DestinationURI)
			assert.Equal(t, tc.migrate, p.MigrateURI)
			assert.Equal(t, tc.tlsDest, p.TLSDestination)
			assert.Equal(t, tc.flags, p.Flags, "flags %v", p.Flags)
			assert.Equal(t, tc.transport.EncryptsMemory(), p.Flags&(migration.FlagTLS|migration.FlagTunnelled) != 0)
			// Every URI the plan writes parses back to the same host.
			for _, s := range []string{p.SourceURI, p.DestinationURI} {
				u, err := migration.ParseURI(s)
				require.NoError(t, err, s)
				assert.Equal(t, s, u.String())
			}
			dst, err := migration.ParseURI(p.DestinationURI)
			require.NoError(t, err)
			assert.Equal(t, tc.dst.Address, dst.Host)
			assert.Equal(t, tc.dst.LibvirtPort, dst.Port)
		})
	}
}

func TestNewPlanRefuses(t *testing.T) {
	tests := []struct {
		name     string
		src, dst migration.Host
		opts     *migration.PlanOptions
		is       error
		contains []string
	}{
		{
			name: "secured to unsecured",
			src:  secured("kvm1", "10.0.0.1"),
			dst:  migration.Host{Name: "kvm2", Address: "10.0.0.2", State: migration.StateUnsecured, Reason: "libvirtd has listen_tls=0"},
			is:   migration.ErrSecurityMismatch,
			contains: []string{"refusing to migrate from kvm1 (10.0.0.1, secured) to kvm2 (10.0.0.2, unsecured: libvirtd has listen_tls=0)",
				"memory would cross the network in clear", "secure kvm2 (10.0.0.2) or choose a secured destination"},
		},
		{
			name: "unsecured to secured",
			src:  unsecured("kvm1", "10.0.0.1"), dst: secured("kvm2", "10.0.0.2"),
			is: migration.ErrSecurityMismatch,
			contains: []string{"from kvm1 (10.0.0.1, unsecured) to kvm2 (10.0.0.2, secured)",
				"secure kvm1 (10.0.0.1) or choose an unsecured destination"},
		},
		{
			name: "mismatch even with the insecure opt-in",
			src:  secured("kvm1", "10.0.0.1"), dst: unsecured("kvm2", "10.0.0.2"),
			opts: &migration.PlanOptions{InsecureAllowUnsecuredMigration: true},
			is:   migration.ErrSecurityMismatch,
		},
		{
			name: "two unsecured hosts without the opt-in",
			src:  unsecured("kvm1", "10.0.0.1"), dst: unsecured("kvm2", "10.0.0.2"),
			is: migration.ErrUnsecured, contains: []string{"InsecureAllowUnsecuredMigration"},
		},
		{
			name: "unknown state",
			src:  secured("kvm1", "10.0.0.1"), dst: migration.Host{Name: "kvm2", Address: "10.0.0.2"},
			is: migration.ErrStateUnknown, contains: []string{"destination kvm2 (10.0.0.2) is unknown"},
		},
		{name: "empty address", src: secured("kvm1", ""), dst: secured("kvm2", "10.0.0.2"), contains: []string{"source kvm1: address: empty"}},
		{name: "bracketed IPv6", src: secured("", "[::1]"), dst: secured("", "::2"), contains: []string{"without brackets"}},
		{name: "URI injection", src: secured("", "10.0.0.1/system?x=1"), dst: secured("", "10.0.0.2"), contains: []string{"not a valid host name"}},
		{name: "port out of range", src: secured("", "10.0.0.1"), dst: migration.Host{Address: "10.0.0.2", State: migration.StateSecured, MigrationPort: 70000}, contains: []string{"migration port 70000 is out of range"}},
		{name: "same libvirtd", src: secured("", "kvm1"), dst: secured("", "KVM1"), contains: []string{"same libvirtd"}},
		{name: "same libvirtd, IPv6 written two ways", src: secured("", "::1"), dst: secured("", "0:0::1"), contains: []string{"same libvirtd"}},
		{name: "same libvirtd, IPv4-mapped", src: secured("", "127.0.0.1"), dst: secured("", "::ffff:127.0.0.1"), contains: []string{"same libvirtd"}},
		{name: "same libvirtd, final dot", src: secured("", "kvm1.example.org."), dst: secured("", "kvm1.example.org"), contains: []string{"same libvirtd"}},
		{
			name: "transport flag in ExtraFlags",
			src:  secured("kvm1", "10.0.0.1"), dst: secured("kvm2", "10.0.0.2"),
			opts:     &migration.PlanOptions{ExtraFlags: migration.FlagTunnelled},
			contains: []string{"ExtraFlags may not hold VIR_MIGRATE_TUNNELLED"},
		},
		{
			name:     "certificate without names",
			src:      secured("kvm1", "10.0.0.1"),
			dst:      migration.Host{Address: "10.0.0.2", State: migration.StateSecured, Certificate: &x509.Certificate{}},
			contains: []string{"carries no DNS name or IP address"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := migration.NewPlan(tc.src, tc.dst, tc.opts)
			require.Error(t, err)
			assert.Nil(t, p)
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
			for _, want := range tc.contains {
				assert.Contains(t, err.Error(), want)
			}
			assert.Regexp(t, "^migration: ", err.Error())
		})
	}
}

func TestSecurityMismatchErrorNamesBothHosts(t *testing.T) {
	_, err := migration.NewPlan(secured("kvm1", "10.0.0.1"), unsecured("kvm2", "2001:db8::2"), nil)
	var mismatch *migration.SecurityMismatchError
	require.ErrorAs(t, err, &mismatch)
	assert.Equal(t, "kvm1", mismatch.Source.Name)
	assert.Equal(t, migration.StateSecured, mismatch.Source.State)
	assert.Equal(t, "kvm2", mismatch.Destination.Name)
	assert.Equal(t, migration.StateUnsecured, mismatch.Destination.State)
}

func TestPlanParamsAndVirshArgs(t *testing.T) {
	p, err := migration.NewPlan(secured("kvm1", "10.0.0.1"), migration.Host{
		Address: "2001:db8::2", State: migration.StateSecured, LibvirtPort: 26515, MigrationPort: 49300,
		TLSName: "kvm2.example.org",
	}, &migration.PlanOptions{ExtraFlags: migration.FlagAutoConverge})
	require.NoError(t, err)
	assert.Equal(t, []migration.Param{
		{Name: migration.ParamURI, Value: "tcp://[2001:db8::2]:49300"},
		{Name: migration.ParamTLSDestination, Value: "kvm2.example.org"},
	}, p.Params())
	args, err := p.VirshArgs("vm-1")
	require.NoError(t, err)
	assert.Equal(t, []string{"migrate", "--live", "--auto-converge", "--tls", "--domain", "vm-1",
		"--desturi", "qemu+tls://[2001:db8::2]:26515/system", "--migrateuri", "tcp://[2001:db8::2]:49300",
		"--tls-destination", "kvm2.example.org"}, args)

	_, err = p.VirshArgs("")
	assert.ErrorContains(t, err, "domain name")
	_, err = p.VirshArgs("vm\n--unsafe")
	assert.ErrorContains(t, err, "newline")

	tun, err := migration.NewPlan(secured("kvm1", "10.0.0.1"), secured("kvm2", "10.0.0.2"), &migration.PlanOptions{Tunnelled: true})
	require.NoError(t, err)
	assert.Empty(t, tun.Params())
	args, err = tun.VirshArgs("vm1")
	require.NoError(t, err)
	assert.Equal(t, []string{"migrate", "--live", "--p2p", "--tunnelled", "--domain", "vm1", "--desturi", "qemu+tls://10.0.0.2/system"}, args)
}

func TestFlagsString(t *testing.T) {
	tests := []struct {
		name  string
		flags migration.Flags
		want  string
	}{
		{"zero", 0, "0"},
		{"native TLS", migration.FlagLive | migration.FlagTLS, "VIR_MIGRATE_LIVE|VIR_MIGRATE_TLS"},
		{"CloudStack's", migration.FlagLive | migration.FlagCompressed, "VIR_MIGRATE_LIVE|VIR_MIGRATE_COMPRESSED"},
		{"unknown bits", migration.FlagLive | 1<<40, "VIR_MIGRATE_LIVE|0x10000000000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.flags.String())
		})
	}
	// libvirt's ABI values.
	assert.EqualValues(t, 65536, migration.FlagTLS)
	assert.EqualValues(t, 2, migration.FlagPeerToPeer)
	assert.EqualValues(t, 4, migration.FlagTunnelled)
	assert.EqualValues(t, 2048, migration.FlagCompressed)
	assert.EqualValues(t, 8192, migration.FlagAutoConverge)
}

func TestTransports(t *testing.T) {
	assert.True(t, migration.NativeTLS() == migration.NativeTLS())
	assert.False(t, migration.NativeTLS() == migration.Tunnelled())
	assert.True(t, migration.NativeTLS().EncryptsMemory())
	assert.True(t, migration.Tunnelled().EncryptsMemory())
	assert.False(t, migration.PlainTCP().EncryptsMemory())
	assert.Equal(t, "qemu+tcp", migration.PlainTCP().Scheme())
	assert.Equal(t, "qemu+tls", migration.Tunnelled().Scheme())
}

func TestStateString(t *testing.T) {
	assert.Equal(t, "secured", migration.StateSecured.String())
	assert.Equal(t, "unsecured", migration.StateUnsecured.String())
	assert.Equal(t, "unknown", migration.StateUnknown.String())
	assert.Equal(t, "State(7)", migration.State(7).String())
}
