package libvirtconf_test

import (
	"fmt"

	"github.com/kvmpki/kvmpki/libvirtconf"
)

// Edit uncomments the commented default, replaces active values and
// keeps everything else byte for byte.
func ExampleEdit() {
	src := []byte(`# Flag listening for secure TLS connections
#listen_tls = 0
listen_tcp = 1   # set by an old script
`)
	out, err := libvirtconf.Edit(src,
		libvirtconf.Setting{Key: "listen_tls", Value: libvirtconf.IntValue(1)},
		libvirtconf.Setting{Key: "listen_tcp", Value: libvirtconf.IntValue(0)},
		libvirtconf.Setting{Key: "tls_allowed_dn_list", Value: libvirtconf.StringListValue("CN=kvm1.example.org")},
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(string(out))
	fmt.Print(libvirtconf.UnifiedDiff("libvirtd.conf", src, out))

	_, err = libvirtconf.Edit(src, libvirtconf.Setting{Key: "ca_file", Value: libvirtconf.StringValue("/x\"\nlisten_tcp = 1")})
	fmt.Println(err)
	// Output:
	// # Flag listening for secure TLS connections
	// listen_tls = 1
	// listen_tcp = 0   # set by an old script
	// tls_allowed_dn_list = ["CN=kvm1.example.org"]
	// --- libvirtd.conf
	// +++ libvirtd.conf
	// @@ -1,3 +1,4 @@
	//  # Flag listening for secure TLS connections
	// -#listen_tls = 0
	// -listen_tcp = 1   # set by an old script
	// +listen_tls = 1
	// +listen_tcp = 0   # set by an old script
	// +tls_allowed_dn_list = ["CN=kvm1.example.org"]
	// libvirtconf: invalid value: string holds '"' at byte 2; libvirt's syntax has no escapes (setting ca_file)
}
