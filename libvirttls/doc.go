// Package libvirttls secures a KVM host's libvirtd and QEMU with X.509
// certificates: it lays out the PKI files libvirt and QEMU read, edits
// libvirtd.conf and qemu.conf, plans and applies those changes
// atomically, and tells whether a host is secured.
//
// It does what Apache CloudStack's keystore-cert-import and
// "cloudstack-setup-agent -s" do, plus what they lack: a CRL that libvirtd
// and QEMU themselves check (crl_file, ca-crl.pem), a tls_allowed_dn_list
// naming the certificates allowed to drive libvirtd (so that, say, a
// console-proxy certificate from the same CA cannot), and QEMU's native
// TLS for the migration stream (migrate_tls_x509_*), without which a
// qemu+tls:// migration still sends the guest's memory in clear.
//
// Target: libvirt 9.0 with GnuTLS 3.7 and QEMU 7.2 (Debian 12); the files
// and keys are those of libvirt's "TLS x509 certificates" documentation and
// QEMU's tls-creds-x509 object.
//
// For the common case, plan and apply from the agent's credentials:
//
//	creds, err := libvirttls.LoadCredentials(ctx, "/etc/cloudstack/agent")
//	opts := &libvirttls.Config{AllowedClients: hostCerts} // or AllowedDNs
//	plan, err := libvirttls.NewPlan(ctx, creds, opts)
//	fmt.Print(plan.Diff())
//	err = plan.Apply(ctx, &libvirttls.ApplyOptions{RunAction: libvirttls.ExecAction})
//	status := libvirttls.CheckHost(ctx, opts, &libvirttls.CheckHostOptions{DialAddr: "10.0.0.5:16514"})
//
// # The configuration
//
// The files are edited with package libvirtconf, which keeps every byte
// an edit does not need to change. [Config.LibvirtdSettings] and
// [Config.QEMUSettings] list what a secured host needs: listen_tls=1,
// listen_tcp=0, tls_port, tcp_port, auth_tls="none", key_file, cert_file,
// ca_file, crl_file, tls_allowed_dn_list, and tls_no_verify_certificate=0
// and tls_no_sanity_certificate=0 in libvirtd.conf; vnc_tls,
// vnc_tls_x509_cert_dir, vnc_tls_x509_verify, migrate_tls_x509_cert_dir,
// migrate_tls_x509_verify and optionally migrate_tls_force in qemu.conf.
// auth_tcp is not written (libvirt's default is "sasl"; an existing
// "none" is set back to it): the plan closes the TCP socket instead.
//
// # The PKI layout
//
// From the agent's cloud.ca.crt, cloud.crt and cloud.key (one host
// certificate with serverAuth and clientAuth) and an optional CRL, a plan
// writes:
//
//	/etc/pki/CA/cacert.pem                    0644  CA certificates
//	/etc/pki/CA/cacrl.pem                     0644  CRL (crl_file)
//	/etc/pki/libvirt/servercert.pem           0644  host certificate
//	/etc/pki/libvirt/clientcert.pem           0644  host certificate
//	/etc/pki/libvirt/private/serverkey.pem    0600  root only
//	/etc/pki/libvirt/private/clientkey.pem    0600  root only
//	/etc/pki/libvirt-vnc/                     0750  root:QEMU group
//	    ca-cert.pem, server-cert.pem, ca-crl.pem  0644
//	    server-key.pem                        0640  root:QEMU group
//	/etc/pki/qemu/                            0750  root:QEMU group
//	    ca-cert.pem, server-cert.pem, client-cert.pem, ca-crl.pem  0644
//	    server-key.pem, client-key.pem        0640  root:QEMU group
//
// /etc/pki/qemu serves migration because Debian's AppArmor abstraction for
// QEMU allows /etc/pki/qemu but denies /etc/pki/libvirt-migrate. Every
// path is written under [Config.Root], so tests and dry runs never touch
// the real /etc; the configuration names the host paths (or, with
// [Config.RootedConfigPaths], the paths under Root, for a daemon started
// from a temporary root).
//
// With [InstallSymlinks], certificates and the root-only keys are symbolic links
// to the agent's files, as CloudStack makes them; the keys QEMU reads are
// still copies, because AppArmor checks the link's target and the agent's
// key should not become readable by QEMU's group. NewPlan refuses InstallSymlinks
// unless the agent's files under Root are the given credentials, so no
// link dangles. [InstallCopies], the default, copies everything.
//
// QEMU's group is looked up (with [Config.LookupGroup]) only when the
// plan runs as root. For the real host (Root "/") a missing group makes
// [Plan.Apply] fail with [ErrQEMUGroupMissing], naming the Debian package
// that creates libvirt-qemu, libvirt-daemon-system (the plan and its Diff
// are still made, for a dry run); under another root QEMU's keys get the
// caller's group, so plans work on a machine without libvirt.
//
// [WritePKIPath] writes the layout of a libvirt client's pkipath URI
// parameter (cacert.pem, clientcert.pem, clientkey.pem, cacrl.pem), for
// virsh or a migration source that does not use the system paths.
//
// # Plan and apply
//
// [NewPlan] compares the wanted state with the files under Root and lists
// the [Change]s (directories, files, links, configuration edits) and the
// service [Action]s: on a socket-activated host, enabling
// libvirtd-tls.socket around a libvirtd restart; when only certificates
// changed, "virt-admin server-update-tls libvirtd" instead of a restart.
// (libvirt 9.0 reloads from its default paths, whatever key_file,
// cert_file, ca_file and crl_file say; the layout uses those paths, and a
// plan with RootedConfigPaths under another root restarts instead.)
// The actions include, whenever libvirtd-tcp.socket is enabled or active, stopping,
// disabling and masking it before libvirtd restarts. A socket-activated
// libvirtd serves every socket systemd hands it, libvirtd-tcp.socket
// included and unencrypted, whatever listen_tcp says. The units' state
// comes from [Config.Units]: [Systemctl] on a host booted with systemd,
// [UnitFiles] under another root.
// [Plan.Diff] shows it as a readable diff (keys are never shown).
// [Plan.Apply] first writes every new file next to its target, then renames
// them into place; if a step fails, the files already renamed are put back,
// so a failed apply leaves the old configuration. Apply refuses a plan
// whose files changed since it was made ([ErrStalePlan]). NewPlan and
// Apply refuse to write through a symbolic link between Root and a file
// (Root/etc or Root/etc/pki linked elsewhere), which would put keys
// outside Root. A link where a PKI file goes is replaced, not followed;
// a libvirtd.conf or qemu.conf that is a link is refused.
//
// # Reload instead of restart
//
// After renewed credentials land (a plan that only replaces PKI files),
// nothing that runs guests needs a restart, where CloudStack restarts
// libvirtd and the agent and still leaves running guests on their old VNC
// certificates (CloudStack issues #9718 and #12982):
//
//   - libvirtd: "virt-admin server-update-tls libvirtd" (the plan's
//     action; libvirt >= 6.2) loads the new certificate, key, CA and CRL
//     into the running daemon; new connections see them, open ones are
//     kept.
//   - running guests' VNC servers: QEMU's display-reload (QEMU >= 6.0)
//     loads the guest's tls-creds-x509 directory again.
//     [ReloadVNC] sends it to every running guest through libvirt
//     (virsh qemu-monitor-command; guests without VNC TLS are skipped,
//     failures name the guest); [ReloadVNCQMP] sends it on a QMP socket
//     of a QEMU that libvirt does not manage, with a small QMP client
//     whose every read is bounded. A plan that writes into an existing
//     VNC directory (renewal, new CRL or CA) ends with this action
//     ([Action.Run], which [ExecAction] runs): without it a running guest
//     would keep its old certificate and, after a CRL update, keep
//     accepting a revoked console proxy.
//   - migration TLS: nothing. libvirt creates QEMU's tls-creds-x509
//     object for each migration and deletes it after, so each migration
//     reads /etc/pki/qemu afresh (see package migration).
//
// The reload takes milliseconds (display-reload 3-7 ms against
// 170-300 ms for a QEMU to start, before its guest boots;
// server-update-tls about as long as virt-admin itself takes to run,
// 50-110 ms), and the PIDs stay the same. QEMU 7.2 generates 2048-bit DH parameters each time it loads a
// directory without dh-params.pem, at start and at every display-reload
// (about 1 s); the layout does not write one.
//
// # Secured state
//
// [CheckHost] reports a host secured when its credentials are complete,
// parse, match their key, chain to the CA, are in their validity period
// and not revoked by the installed CRL (for libvirtd, the libvirt client,
// QEMU's VNC server and both ends of a migration); libvirtd.conf serves TLS
// and qemu.conf enables VNC and migration TLS with those files; nothing
// undoes that ([ErrInsecureConfig]: plain TCP through listen_tcp or an
// enabled or active libvirtd-tcp.socket, auth_tcp="none", a certificate
// check turned off, a tls_priority that [CheckPriority] refuses); and, if
// asked, a TLS handshake with the host's libvirtd port, using the
// host's client credentials, verifies the server's chain and name. When
// not secured, [Status.Reasons] says why, each reason wrapping a sentinel
// such as [ErrCredentialsMissing] or [ErrNotConfigured]. Links in the
// layout are resolved under Root, as the host will resolve them. The dial
// waits for libvirtd's one-byte TLS confirmation, so a client certificate
// that libvirtd refuses after the handshake (revoked, or not on
// tls_allowed_dn_list) is reported too.
//
// # Security
//
// Private keys are written 0600 (0640 to QEMU's group where QEMU must
// read them) and never appear in a diff, a log or an error. Credentials
// are refused when the key does not match the certificate, the chain does
// not verify, the certificate is expired, revoked by the given CRL or
// signed with SHA-1, or the RSA key is under 2048 bits.
//
// tls_allowed_dn_list is left unset unless [Config.AllowedClients] or
// [Config.AllowedDNs] is given; while it is unset, any certificate from
// the CA may drive libvirtd, as with CloudStack. [AllowedDN] renders a certificate's DN in the order GnuTLS
// compares (the certificate's RDN order, "O=Example,CN=kvm1", not the
// reversed RFC 4514 form Go's pkix.Name.String prints).
//
// BUG(libvirttls): by default the QEMU group is resolved with os/user on
// the machine running the plan, not from Root's /etc/group.
//
// BUG(libvirttls): ReloadVNC and the plan's VNC reload action use virsh
// qemu-monitor-command, after which libvirt marks each guest tainted
// ("custom-monitor"): libvirt 9.0 has no API for display-reload. libvirt
// 10.2 added one (virDomainGraphicsReload, virsh domdisplay-reload),
// which ReloadVNC does not use yet.
package libvirttls
