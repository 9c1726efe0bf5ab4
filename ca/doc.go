// Package ca is the management-plane framework around a certificate
// authority provider ([provider.Provider]): what CloudStack's CAManager
// and CAService do, without their weaknesses.
//
// A platform builds one [Manager] from its [provider.Registry] and a
// [Settings] value mapping CloudStack's ca.framework.* keys, and then:
//
//   - issues and revokes certificates ([Manager.Issue], [Manager.Revoke]),
//     lists providers and serves the CA bundle (CloudStack's
//     issueCertificate, revokeCertificate, listCAProviders and
//     listCaCertificate APIs);
//   - gives the management server its own certificate ([Manager.NewIdentity]),
//     never the CA key, renewed in place;
//   - runs the agent port with [Manager.NewAgentListener] (or
//     [Manager.AgentServerTLSConfig]);
//   - runs the cluster port between management servers with
//     [Manager.PeerServerTLSConfig] and [Manager.PeerClientTLSConfig];
//   - serves the CA bundle, the CRL and OCSP over HTTP
//     ([Manager.CABundleHandler], [Manager.CRLHandler],
//     [Manager.OCSPHandler]).
//
// Agents use [LoadAgentCredentials] and [Dialer] to reach the management
// servers.
//
// Package ca imports provider, never a particular provider: the built-in
// rootca, or a third-party ACME or Vault provider, plug in through the
// registry.
package ca
