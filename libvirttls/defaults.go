package libvirttls

import (
	"io/fs"
	"time"
)

// Host paths of the libvirt and QEMU PKI, as libvirt and QEMU read them on
// Debian and Ubuntu (and, but for the QEMU group, on Fedora and RHEL).
// [Config.Root] prefixes them where files are written.
const (
	CACertPath     = "/etc/pki/CA/cacert.pem"
	CRLPath        = "/etc/pki/CA/cacrl.pem" // libvirt's default crl_file
	ServerCertPath = "/etc/pki/libvirt/servercert.pem"
	ServerKeyPath  = "/etc/pki/libvirt/private/serverkey.pem"
	ClientCertPath = "/etc/pki/libvirt/clientcert.pem"
	ClientKeyPath  = "/etc/pki/libvirt/private/clientkey.pem"

	// VNCDir is vnc_tls_x509_cert_dir: QEMU's VNC server credentials.
	VNCDir = "/etc/pki/libvirt-vnc"
	// QEMUDir is default_tls_x509_cert_dir and, as set by this package,
	// migrate_tls_x509_cert_dir. libvirt's own default for migration,
	// /etc/pki/libvirt-migrate, is denied to QEMU by Debian's AppArmor
	// abstraction; /etc/pki/qemu is allowed.
	QEMUDir = "/etc/pki/qemu"

	LibvirtdConfPath = "/etc/libvirt/libvirtd.conf"
	QEMUConfPath     = "/etc/libvirt/qemu.conf"
)

// File names inside a QEMU tls-creds-x509 directory.
const (
	QEMUCACert     = "ca-cert.pem"
	QEMUCRL        = "ca-crl.pem"
	QEMUServerCert = "server-cert.pem"
	QEMUServerKey  = "server-key.pem"
	QEMUClientCert = "client-cert.pem"
	QEMUClientKey  = "client-key.pem"
)

// File names of the agent credentials, as CloudStack's agent keeps them
// in /etc/cloudstack/agent.
const (
	AgentCACert = "cloud.ca.crt"
	AgentCert   = "cloud.crt"
	AgentKey    = "cloud.key"
	AgentCRL    = "cloud.crl"
)

// Defaults of [Config].
const (
	defaultTLSPort   = 16514
	defaultTCPPort   = 16509
	defaultQEMUGroup = "libvirt-qemu"
	// qemuGroupPackage is the Debian package whose postinst creates the
	// libvirt-qemu user and group.
	qemuGroupPackage = "libvirt-daemon-system"
)

// File modes of the layout. Certificates and CRLs are public; keys are
// readable by root, and by QEMU's group in the directories QEMU reads.
const (
	publicFileMode    fs.FileMode = 0o644
	rootKeyMode       fs.FileMode = 0o600
	groupKeyMode      fs.FileMode = 0o640
	publicDirMode     fs.FileMode = 0o755
	privateDirMode    fs.FileMode = 0o700
	qemuDirMode       fs.FileMode = 0o750
	configFileMode    fs.FileMode = 0o644
	maxConfigSize                 = 1 << 20
	maxListDepth                  = 32
	maxCommentedLines             = 64
	maxLinkHops                   = 8
)

// Bounds of the VNC reload ([ReloadVNC], [ReloadVNCQMP]).
const (
	defaultReloadTimeout = 10 * time.Second
	maxQMPLine           = 64 << 10 // one QMP reply, greeting or event
	maxQMPEvents         = 1000     // events skipped while awaiting a reply
	maxQMPDesc           = 1024     // QEMU's error text kept in an error
	maxVirshList         = 1 << 20  // virsh list --name output
	maxDomainName        = 1024
)
