// Command mgmtserver is a small CloudStack-style management server glued
// from packages ca and rootca: a JSON-over-HTTPS API with CloudStack's
// certificate commands, the agent port with in-band provisioning, and the
// background task that renews agents before their certificates expire.
//
//	mgmtserver (-dir DIR | -db URL) -api-listen ADDR -agent-listen ADDR [-names a,b] [-ips x,y]
//	           [-validity D] [-max-validity D] [-alert-period D] [-background-interval D]
//	           [-password-file FILE] [-shutdown-timeout D]
//	mgmtserver admin-cert (-dir DIR | -db URL) -out PREFIX [-name NAME] [-validity D] [-force]
//
// The CA is rootca's: in the SQLite database ca.db in -dir (the directory
// is created with mode 0700), or in a database that several management
// servers share, named by -db (postgres://USER@HOST/DB or
// mysql://USER@tcp(HOST:PORT)/DB). It is created on first start when the
// store holds none; of two servers starting at once on one database, one
// creates it and the other opens it. The CA key password comes from
// $KVMPKI_CA_PASSWORD or -password-file, never from an argument. A
// password in the -db URL is warned about (the process list shows it):
// put it in $KVMPKI_DB_PASSWORD (as kvmpki-ca takes it), or use
// PostgreSQL's $PGPASSWORD or ~/.pgpass.
//
// The server runs until SIGINT or SIGTERM, then stops accepting, closes
// the agent sessions and the CA. Once both listeners are open it prints
// one JSON line on standard output with their actual addresses (so port 0
// works), and logs JSON records (log/slog) to standard error:
//
//	{"event":"listening","api":"127.0.0.1:8443","agent":"127.0.0.1:8250"}
//
// -validity, -max-validity, -alert-period and -background-interval are
// package ca's Settings (Validity, MaxValidity, ExpiryAlertPeriod,
// BackgroundInterval); -validity must exceed -alert-period and the
// interval must be at least a minute. With -validity 3m -alert-period 150s
// -background-interval 1m, the background task renews each agent within
// about two minutes of its provisioning.
//
// # The API
//
// On -api-listen, over HTTPS with a certificate from the CA naming -names
// and -ips (and the management marker name), renewed in place. Each
// command is at /COMMAND and takes GET query parameters or a POSTed JSON
// object (Content-Type application/json, at most 1 MiB) whose keys are
// CloudStack's parameter names, matched case-insensitively; an unknown or
// repeated parameter is refused. domain and ipaddress are comma-separated
// (a JSON array of strings works too), duration is in days (a number or a
// string). Every answer is a JSON object; certificates and keys are PEM
// strings in it.
//
//	listCAProviders       [name]                      {"count":1,"caprovider":[{"name":"root","description":"..."}]}
//	listCaCertificate     [provider]                  {"cacertificates":"PEM"}
//	issueCertificate      [csr] [domain] [ipaddress] [duration] [provider]
//	                                                  {"certificate":"PEM","cacertificates":"PEM","serial":"hex","notafter":"RFC 3339",
//	                                                   "privatekey":"PEM, only without csr"}
//	revokeCertificate     serial [cn] [provider]      {"success":true,"serial":"hex"}
//	provisionCertificate  hostid [provider]           {"hostid":"kvm1","serial":"hex of the new certificate"}
//	listHosts             [hostid]                    {"count":N,"host":[{"hostid","serial","remoteaddress","since","notafter"}]}
//
// issueCertificate issues host certificates (server and client
// authentication); without a csr the CA generates the key and the answer
// holds it, as in CloudStack. Without duration the certificate lives
// -validity; a duration beyond -max-validity is refused (400). revokeCertificate checks cn, when given,
// against the certificate's common name. provider, when given, must name
// the current provider. provisionCertificate re-provisions a connected
// agent over its own connection now and revokes its previous certificate
// (superseded); a host not connected to this server is 404.
//
// Errors are {"errorcode":STATUS,"errortext":"..."} with the HTTP status:
// 400 for a missing, unknown or invalid parameter or a request the CA
// refuses, 401 without a client certificate, 403 for a certificate that
// is not an administrator's (or no longer valid), 404 for an unknown
// command, serial or host, 405 for a method other than GET and POST, 409
// for a certificate revoked already or a host being provisioned, 413 for
// a body over 1 MiB, 415 for a body that is not JSON, 501 for what the
// provider cannot do; 5xx only for faults of the server or the agent
// (502).
//
// # Security
//
// Commands require an administrator's client certificate: one that chains
// to the CA, is valid, not revoked (checked at every handshake, resumed
// sessions included, and again at every request, so that a keep-alive
// connection does not outlive a revocation), has the client role only,
// its extended key usage exactly clientAuth, and carries the DNS name
// administrator.mgmtserver.invalid, which admin-cert writes. Agents and
// management servers hold host certificates (serverAuth as well), so they
// can never call the API; the client role alone is not enough, since a
// console proxy's certificate (or a libvirt client's) is client-only and
// from the same CA. issueCertificate cannot mint an administrator:
// administrators' certificates come only from admin-cert, run where the
// CA's database and key password are. The CA bundle (/ca.pem), the CRL
// (/crl) and OCSP (/ocsp) are served on the same listener to anyone; the
// listener requests a client certificate but does not require one.
//
// The CA key never leaves rootca (OCSP answers are signed by it), the
// server's own key never leaves the process, and an agent's key never
// leaves the agent: provisioning sends only its CSR and certificate.
// issueCertificate without a csr returns the generated private key in its
// answer, as CloudStack does for system VMs; send a csr to avoid it. Keys
// are never logged. There is no insecure mode.
//
// # The agent port
//
// On -agent-listen, package ca's strict agent port: every agent presents a
// certificate that chains to the CA, has the client role, is valid and not
// revoked. After the handshake (bounded to 10 s) the agent's hello is read
// (ca.NewAgentSession) and the agent is known by its certificate's common
// name (or first DNS name), its host id; a second connection of one host
// id closes the first. An agent whose hello asks for provisioning (one
// that connected with a short-lived bootstrap certificate from
// issueCertificate) is provisioned over its connection at once, with the
// names of that certificate, and the certificate it connected with is then
// revoked as superseded, so a bootstrap certificate serves once. The
// background task renews each connected agent's certificate over its
// connection; a certificate whose agent is not connected here is alerted
// only (another management server may hold it).
//
// # Example
//
// With a CA in /var/lib/mgmt (created at the first run):
//
//	export KVMPKI_CA_PASSWORD=...                # or -password-file
//	mgmtserver admin-cert -dir /var/lib/mgmt -out admin
//	mgmtserver -dir /var/lib/mgmt -api-listen 127.0.0.1:8443 -agent-listen :8250 \
//	    -names mgmt.example.org -ips 127.0.0.1 &
//	curl --cacert admin.ca.crt --cert admin.crt --key admin.key https://127.0.0.1:8443/listCAProviders
//	curl --cacert admin.ca.crt --cert admin.crt --key admin.key \
//	    'https://127.0.0.1:8443/issueCertificate?domain=kvm1&duration=1'
//	curl --cacert admin.ca.crt --cert admin.crt --key admin.key -H 'Content-Type: application/json' \
//	    -d '{"serial":"3f2a..."}' https://127.0.0.1:8443/revokeCertificate
//	curl --cacert admin.ca.crt https://127.0.0.1:8443/crl -o ca.crl   # no client certificate needed
package main
