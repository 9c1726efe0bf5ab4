package libvirttls

// File names of a libvirt client's pkipath directory (the pkipath URI
// parameter, e.g. qemu+tls://host/system?pkipath=DIR), as libvirt looks
// them up and [WritePKIPath] writes them.
const (
	PKIPathCACert     = "cacert.pem"     // CA certificates
	PKIPathClientCert = "clientcert.pem" // client certificate
	PKIPathClientKey  = "clientkey.pem"  // its key, mode 0600
	PKIPathCRL        = "cacrl.pem"      // optional CRL
)
