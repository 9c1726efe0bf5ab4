// Package ca is the management-plane framework around a certificate
// authority provider ([provider.Provider]): what Apache CloudStack's
// CAManager and CAService do, without their weaknesses. It implements the
// TLS policy of the management server's agent port, of the agents and of
// the cluster port between management servers, and publishes revocation
// as RFC 5280 CRLs and RFC 6960 OCSP.
//
// Package ca imports provider, never a particular provider: the built-in
// rootca, or a third-party ACME or Vault provider, plug in through the
// platform's [provider.Registry]. A capability the provider lacks gives an
// error matching [errors.ErrUnsupported], never a panic.
//
// # Wiring it into a platform
//
// At start, the management server:
//
//  1. registers its providers on a [provider.Registry] (rootca.Factory for
//     the built-in CA) and calls [New] with a [Settings] value mapping its
//     ca.framework.* configuration keys; bad values are refused with a
//     *[SettingError] naming the key;
//  2. gets its own certificate with [Manager.NewIdentity] (host name,
//     addresses inside management.network.cidr, plus the management
//     marker name) and runs [Identity.Run] to renew it in place;
//  3. listens on the agent port with [Manager.NewAgentListener], which
//     verifies every agent's certificate on every handshake and lists the
//     connected agents in [Manager.ActiveCertificates];
//  4. serves the cluster port with [Manager.PeerServerTLSConfig] and dials
//     its peers with [Manager.PeerClientTLSConfig];
//  5. mounts [Manager.CABundleHandler], [Manager.CRLHandler] and
//     [Manager.OCSPHandler] on its HTTP server (for instance at /ca.pem,
//     /crl and /ocsp, as examples/kvmpki-ca serve does);
//  6. maps its API calls onto [Manager.Providers] (listCAProviders),
//     [Manager.CABundle] (listCaCertificate), [Manager.Issue]
//     (issueCertificate) and [Manager.Revoke] (revokeCertificate), and an
//     administrator's change of ca.framework.provider.plugin onto
//     [Manager.SetProvider], which needs no restart.
//
// On each host, the agent loads the files keystore-cert-import wrote with
// [LoadAgentCredentials] and connects with a [Dialer] over its host=
// list.
//
// # Security
//
// Everything fails closed by default:
//
//   - The agent port admits a client only with a certificate that chains
//     to the provider's CA, has the client role, is valid and is not
//     revoked (CloudStack never verified the chain). The checks run in
//     tls.Config.VerifyConnection, so resumed TLS 1.2 and 1.3 sessions
//     are judged again. The only relaxations are
//     AgentServerConfig.InsecureAllowMissingClientCert and
//     InsecureAllowExpired, and each waived refusal is still logged and
//     passed to AgentServerConfig.OnRefusal. An agent whose certificate
//     is revoked is disconnected at once, whether the revocation went
//     through this Manager or another management server sharing the
//     provider's store (CloudStack leaves it connected).
//   - Other endpoints that take client certificates (an API for
//     administrators) judge them with [Manager.VerifyClientCertificate].
//   - The management server presents a certificate of its own whose key
//     never leaves the process, never the CA key, and whose NotAfter
//     never exceeds the CA's.
//   - An agent's issue request naming the management marker
//     (Settings.ManagementSAN) is refused, and the cluster port accepts
//     only certificates that carry it.
//   - Agents verify the management server's chain and name or address,
//     and fail with [ErrNoCredentials] instead of trusting any server.
//   - Issued validity is capped by Settings.MaxValidity.
//
// The identity check CloudStack makes (a SAN equal to the client's source
// address) is AgentServerConfig.RequireSourceIP, off by default because it
// breaks agents behind NAT and multi-homed hosts.
//
// Keys are never logged; refusals are logged with the certificate's
// subject and serial through Settings.Logger.
//
// # Provisioning hosts
//
// [Manager.Provision] runs CloudStack's flow for one host through a
// [Host]: the host sets up its keystore and returns a CSR, the provider
// issues a host certificate with the platform's names for the host, the
// host installs it with the CA bundle, and reloads its services instead
// of restarting them. A host whose setup or install fails keeps its
// previous credentials byte for byte. Two transports implement Host:
//
//   - [SSHHost] (host add): x/crypto/ssh with key authentication and the
//     host key checked against known_hosts before anything is sent
//     ([ErrUnknownHostKey], [ErrHostKeyChanged]; only
//     SSHConfig.InsecureIgnoreHostKey skips the check). It runs the
//     host-side programs keystore-setup and keystore-cert-import of this
//     module's examples from SSHConfig.RemoteBinDir. CloudStack puts the
//     keystore password and the PEMs on the SSH command line; here the
//     passphrase never leaves the host (it stays in agent.properties) and
//     the certificate and CA bundle travel on the session's standard input
//     into a private temporary directory. Each step is bounded by
//     SSHConfig.StepTimeout, and a failed one is a *[RemoteCommandError]
//     with the end of the host's standard error. Reload runs
//     SSHConfig.ReloadCommand: by default virt-admin server-update-tls
//     for libvirtd and QEMU's display-reload for each running guest's VNC.
//   - [NewAgentHost] (in-band): the platform implements [AgentChannel]
//     over its own agent connection, carrying [SetupKeystoreCommand],
//     [SetupCertificateCommand] and [ReloadCommand]; the agent answers
//     them with package keystore's Setup and Import. A platform without
//     an agent protocol of its own uses the in-band transport of this
//     package: the agent runs [ServeAgent] on its connection to the agent
//     port, which sends an [AgentHello] (Provision set when the agent
//     connected with a short-lived bootstrap certificate and wants its
//     own) and answers commands; the management server wraps the
//     connection with [NewAgentSession], an AgentChannel. It is one JSON
//     object per line, each bounded, matched by id; after answering a
//     reload, ServeAgent returns so that the agent reconnects with its new
//     certificate. examples/mgmtserver and examples/agent use it.
//
// examples/kvmpki-ca provision drives an SSHHost from the command line.
// The tests prove both transports with the real keystore package, and
// the SSH one against a real OpenSSH sshd, whose recorded commands and
// DEBUG3 log hold no passphrase, PEM or key material.
//
// # Renewal and alerts
//
// [Manager.NewBackground] returns the background task (CloudStack's
// CABackgroundTask); run [Background.Run] next to the agent listener. It
// wakes every Settings.BackgroundInterval (plus or minus a tenth) and
// reads the provider's inventory, so a host that has not connected since
// this server started is renewed too (CloudStack walks only the hosts
// that handshook since its start, issue #4129); a provider without an
// inventory makes Run fail with an error matching [errors.ErrUnsupported].
// Each valid certificate is renewed through [Manager.Provision], with the
// host that BackgroundOptions.HostFor names, at a moment of its own in the
// first half of its alert window (a hash of its serial picks it, so a
// restart keeps it, and hosts issued on the same day renew over days);
// starts are spaced over the wake interval when more than one a minute is
// due, and bounded by BackgroundOptions.Concurrency and RatePerSecond.
// The replaced certificate is revoked as superseded once the host has
// reloaded. What is not renewed is alerted, at most once a day per host:
// renewal off, no host, or an issuing CA that ends inside the window. A
// failed renewal is an [Alert] naming the host and the cause, retried
// after a backoff that doubles up to the wake interval. The task also
// alerts a CA certificate nearing its end and renews the management
// server's [Identity] in place. Alerts go to BackgroundOptions.Alert and
// to Settings.Logger. Time comes from Settings.Time and waiting from
// BackgroundOptions.Sleep, so a test runs a year in seconds.
//
// # CA rotation
//
// [Manager.Rotate] replaces the provider's CA (CloudStack cannot, its
// weakness #4) through the [provider.Rotator] capability (rootca has it;
// without it the error matches [errors.ErrUnsupported]). It first claims
// the lease on driving the rotation, which the provider keeps in its
// store ([provider.RotationLeaser]): one driver works at a time, across
// management servers sharing the database too; another gets at once an
// error matching [ErrRotationBusy] naming the holder and until when. The
// driver renews the lease every third of RotateOptions.Lease (one
// minute) while it works and releases it when it returns; one that
// crashed loses it when it expires. Then it begins a rotation, or
// resumes the one in progress: the state is the provider's store, so a
// restarted management server, or a second one on the same database,
// continues it. It re-provisions every host whose certificate in the
// inventory still comes from the previous CA, through
// RotateOptions.HostFor and [Manager.Provision], at most
// RotateOptions.Concurrency at once and RatePerSecond starts a second:
// each gets a certificate from the new CA and the bundle of both CAs, and
// its old certificate is revoked as superseded, so a host done before a
// restart is not provisioned again. Then it retires the previous CA, but
// only when no host failed and none of that CA's certificates is left,
// unless RotateOptions.Force; otherwise it returns an error matching
// [ErrRotationIncomplete] naming the failed hosts, and a later run
// finishes the job. After retirement it pushes the bundle without the
// retired CA to every host (its current certificate installed again with
// it, then a reload). That push is recorded in the store as owed before
// the retirement and as done once every host has the bundle, so a driver
// stopped in between, or a host that failed the push, is resumed by the
// next Rotate in any process (RotationResult.Finished tells the end).
// Progress goes to RotateOptions.Progress and Settings.Logger.
//
// # Revocation over HTTP
//
// The CRL is signed when a revocation goes through [Manager.Revoke] and
// when half its lifetime has passed, never per request; OCSP answers are
// signed once per serial and cached until a revocation or issuance
// through the Manager touches that serial. A revocation made through the
// Manager is in both before Revoke returns.
//
// A revocation made by another management server, through the store the
// providers share, reaches this server's CRL and OCSP answers when the
// provider reports it ([provider.RevocationNotifier]): the CRL is signed
// again and the cached answers of the serials it newly lists are dropped.
// With rootca that is within a second: its watch of the store polls every
// 250 ms, and PostgreSQL notifies it at once.
//
// OCSP answers are signed by the provider when it is a
// [provider.OCSPSigner] (rootca signs with the CA key it holds, an HSM or
// KMS key included), so the platform never handles the CA key; an
// [OCSPResponder] from the platform is the fallback for providers that
// cannot.
//
// BUG(ca): With a provider that sends no revocation notices, a
// revocation made by another management server reaches this server's CRL
// and cached OCSP answers only when the CRL is next signed (at half its
// lifetime) and the answer is next refreshed (half an hour at most); the
// agent port, which asks the provider at every handshake, is not
// affected.
package ca
