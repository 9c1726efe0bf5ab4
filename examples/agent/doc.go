// Command agent is a KVM host's agent in miniature, in the role of
// CloudStack's cloudstack-agent: it keeps one verified TLS connection to a
// management server of its list, is provisioned over that connection (the
// in-band transport of package ca: the server sends SetupKeystoreCommand,
// SetupCertificateCommand and ReloadCommand, answered with package
// keystore), and applies renewed credentials without restarting.
//
// Usage:
//
//	agent -dir DIR -servers a:port,b:port [-properties FILE] [-bootstrap PREFIX]
//	    [-hostid NAME] [-reload-libvirt] [-max-backoff 5s] [-connect-timeout 10s]
//
// DIR is the credentials directory (CloudStack's /etc/cloudstack/agent):
// cloud.jks, cloud.crt, cloud.key (mode 0600) and cloud.ca.crt, written by
// package keystore. FILE is agent.properties (default DIR/agent.properties),
// where keystore keeps keystore.passphrase; no secret is taken from or
// written to the command line. -hostid defaults to the host name.
//
// # Credentials
//
// When DIR holds credentials that keystore.CheckSecured accepts, the agent
// connects with them (ca.LoadAgentCredentials on cloud.crt, cloud.key and
// cloud.ca.crt, read again at each handshake when they change).
//
// Otherwise it needs a bootstrap credential: a short-lived certificate an
// administrator made with the management server's issueCertificate API
// (without a CSR: the answer holds the certificate, its private key and the
// CA certificates), stored as PREFIX.crt, PREFIX.key (mode 0600, refused
// when group or others may read it) and PREFIX.ca.crt, with -bootstrap
// PREFIX (default DIR/bootstrap). The agent connects with it and asks to
// be provisioned (ca.AgentHello.Provision). The server provisions it over
// that connection: the agent sets up its keystore (keystore.Setup: a new
// key, its CSR is the answer), installs the certificate the server issued
// (keystore.Import, which refuses, changing nothing, a certificate that does
// not match the key or chain to the bundle) and, on ReloadCommand, checks
// the installed credentials with keystore.CheckSecured, switches to them
// and removes the bootstrap files. The server revokes the bootstrap
// certificate.
//
// When the server refuses the certificate in use, the agent tries its other
// credentials at the next connection, if they are usable: a revoked host
// (keystore.CheckSecured cannot tell a revoked certificate) enrols again
// as soon as an administrator puts a new bootstrap credential in place,
// without a restart.
//
// With neither, the agent exits with an error saying so: it never connects
// without a certificate and never trusts a server it cannot verify (the
// server's chain is checked against the CA file in use, and its name or
// address against the -servers entry).
//
// # Connections
//
// The agent dials the -servers list through ca.Dialer (shuffled once,
// verified) and answers the server's commands with ca.ServeAgent. After
// answering a ReloadCommand it reconnects at once with the new
// credentials: a TLS connection keeps the certificate of its handshake.
// After any other end (the server closed the connection, refused the
// certificate, or none answered) it reconnects after a backoff that starts
// at 200 ms and doubles up to -max-backoff, with jitter, forever, until
// SIGINT or SIGTERM. The process never restarts itself, and with
// -reload-libvirt a reload also runs "virt-admin server-update-tls
// libvirtd", which makes libvirtd load the new files without a restart.
//
// # Events
//
// The agent prints one JSON object per line on standard output for each
// event, for the operator and for tests; its logs go to standard error.
// Every line has "time" (RFC 3339 with nanoseconds, UTC) and "event":
//
//	{"event":"connected","server":ADDR,"serial":HEX,"bootstrap":true}
//	    the server accepted the agent's certificate: it sent a command, or
//	    did not refuse the certificate within 250 ms of the handshake;
//	    "time" is when the handshake completed; "bootstrap" is present on a
//	    bootstrap certificate
//	{"event":"disconnected","server":ADDR,"serial":HEX,"error":TEXT}
//	    the connection ended (not after a reload)
//	{"event":"refused","server":ADDR,"serial":HEX,"error":TEXT}
//	    the server refused the agent's certificate: its TLS alert ended
//	    the handshake (TLS 1.2) or the first read after it (TLS 1.3), for
//	    instance "remote error: tls: bad certificate"
//	{"event":"unreachable","error":TEXT}
//	    no server of the list answered
//	{"event":"command","command":NAME}
//	    the server sent SetupKeystoreCommand, SetupCertificateCommand or
//	    ReloadCommand
//	{"event":"provisioned","serial":HEX}
//	    a new certificate is installed in DIR
//	{"event":"reloaded","serial":HEX,"error":TEXT}
//	    the agent answered a ReloadCommand and reconnects with the new
//	    credentials; "error" only when -reload-libvirt's reload failed
//
// Serials are lower-case hexadecimal (provider.FormatSerial), as the
// management server's API takes them.
package main
