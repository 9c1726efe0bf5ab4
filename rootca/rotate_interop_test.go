package rootca_test

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/peers"
	"github.com/kvmpki/kvmpki/keystore"
	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
)

// rotationParty is one party's certificate, issued by one CA generation.
type rotationParty struct {
	name string
	cert *x509.Certificate
	pki  peers.PKI // CACert is set per check
}

// rotationLeaf issues a host certificate for localhost and 127.0.0.1 with
// a key the CA generates, for a daemon or a client.
func rotationLeaf(t *testing.T, ca *rootca.CA, name string) *rotationParty {
	t.Helper()
	res, err := ca.Issue(t.Context(), &provider.IssueRequest{
		CommonName: interopDNSName, DNSNames: []string{interopDNSName}, IPAddresses: []net.IP{interopIP},
		Role: provider.RoleHost, KeyAlgorithm: provider.KeyAlgorithmECDSA,
	})
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(res.PrivateKey)
	require.NoError(t, err)
	return &rotationParty{name: name, cert: res.Certificate, pki: peers.PKI{
		Cert: provider.EncodeCertificates(res.Certificate),
		Key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
	}}
}

// TestRotationInterop proves a rotation with the real consumers of the
// bundle. During the overlap, a libvirtd and a QEMU VNC-TLS server whose
// CA file holds both CAs (whether their own certificate is still the old
// CA's or already the new one's) accept virsh and VeNCrypt clients with a
// certificate of either CA (and, given both CAs' CRLs in cacrl.pem and
// ca-crl.pem, refuse the revoked ones of either), and Java with a
// cloud.jks holding cloudca.1
// (the new CA) and cloudca.2 (the old) completes mutual TLS with servers
// of either CA. After a forced retirement and the new bundle installed
// everywhere, the old CA's certificates are refused by libvirtd, QEMU and
// Java, and the new CA's still accepted.
func TestRotationInterop(t *testing.T) {
	t.Cleanup(rootca.SetKeyIterations(minTestKeyIterations))
	ctx := t.Context()
	store := rootca.NewMemStore()
	ca, err := rootca.Create(ctx, store, &rootca.CreateOptions{Options: rootca.Options{Password: passwordFunc}})
	require.NoError(t, err)
	t.Cleanup(func() { ca.Close() })
	oldServer, oldClient := rotationLeaf(t, ca, "old-CA server"), rotationLeaf(t, ca, "old-CA client")
	oldRevoked := rotationLeaf(t, ca, "revoked old-CA client")
	_, err = ca.BeginRotation(ctx, nil)
	require.NoError(t, err)
	newServer, newClient := rotationLeaf(t, ca, "new-CA server"), rotationLeaf(t, ca, "new-CA client")
	newRevoked := rotationLeaf(t, ca, "revoked new-CA client")
	overlap, err := provider.CABundle(ctx, ca)
	require.NoError(t, err)
	require.Len(t, parseBundle(t, overlap), 2)
	// cacrl.pem and ca-crl.pem during the overlap: one CRL per CA.
	for _, l := range []*rotationParty{oldRevoked, newRevoked} {
		require.NoError(t, ca.Revoke(ctx, &provider.RevokeRequest{Serial: l.cert.SerialNumber, Reason: provider.ReasonKeyCompromise}))
	}
	crls, err := ca.SignCRLs(ctx)
	require.NoError(t, err)
	require.Len(t, crls, 2)
	var overlapCRLs []byte
	for _, crl := range crls {
		overlapCRLs = append(overlapCRLs, rootca.EncodeCRL(crl.Raw)...)
	}

	// The Java host: keystore-setup, a certificate from the new CA,
	// keystore-cert-import with the overlap bundle.
	javaDir := t.TempDir()
	setup, err := keystore.Setup(ctx, javaDir, &keystore.SetupOptions{CommonName: interopDNSName, IPAddresses: []net.IP{interopIP}})
	require.NoError(t, err)
	javaCert, err := ca.Issue(ctx, &provider.IssueRequest{CSR: setup.CSR, DNSNames: []string{interopDNSName}, IPAddresses: []net.IP{interopIP}, Role: provider.RoleHost})
	require.NoError(t, err)
	javaCertPEM := provider.EncodeCertificates(javaCert.Certificate)
	imported, err := keystore.Import(ctx, javaDir, javaCertPEM, overlap, nil)
	require.NoError(t, err)
	require.Len(t, imported.CACerts, 2, "cloudca.1 and cloudca.2")
	overlapJKS := readFile(t, filepath.Join(javaDir, keystore.KeystoreFile))
	passphrase := keystorePassphrase(t, javaDir)

	t.Run("overlap", func(t *testing.T) {
		for _, server := range []*rotationParty{oldServer, newServer} {
			t.Run("libvirtd with "+server.name, func(t *testing.T) {
				t.Parallel()
				peers.Require(t, "libvirtd", "virsh")
				d, err := peers.StartLibvirtd(t, withCA(server.pki, overlap), peers.LibvirtdOptions{})
				require.NoError(t, err)
				for _, c := range []*rotationParty{oldClient, newClient} {
					assert.NoError(t, d.Connect(t, withCA(c.pki, overlap), interopDNSName), "virsh with the %s certificate", c.name)
				}
			})
			t.Run("QEMU with "+server.name, func(t *testing.T) {
				t.Parallel()
				peers.Require(t, "qemu-system-x86_64")
				q, err := peers.StartQEMUVNC(t, withCA(server.pki, overlap), peers.QEMUVNCOptions{})
				require.NoError(t, err)
				for _, c := range []*rotationParty{oldClient, newClient} {
					cfg, err := withCA(c.pki, overlap).ClientTLSConfig(interopDNSName)
					require.NoError(t, err)
					assert.NoError(t, q.Probe(t, cfg), "VeNCrypt probe with the %s certificate", c.name)
				}
			})
			t.Run("libvirtd with both CRLs and "+server.name, func(t *testing.T) {
				t.Parallel()
				peers.Require(t, "libvirtd", "virsh")
				d, err := peers.StartLibvirtd(t, withCRL(withCA(server.pki, overlap), overlapCRLs), peers.LibvirtdOptions{})
				require.NoError(t, err)
				for _, c := range []*rotationParty{oldClient, newClient} {
					assert.NoError(t, d.Connect(t, withCA(c.pki, overlap), interopDNSName), "virsh with the %s certificate", c.name)
				}
				for _, c := range []*rotationParty{oldRevoked, newRevoked} {
					err := d.Connect(t, withCA(c.pki, overlap), interopDNSName)
					assert.ErrorContains(t, err, "The certificate has been revoked",
						"virsh with the %s certificate", c.name)
				}
			})
			t.Run("QEMU with both CRLs and "+server.name, func(t *testing.T) {
				t.Parallel()
				peers.Require(t, "qemu-system-x86_64")
				q, err := peers.StartQEMUVNC(t, withCRL(withCA(server.pki, overlap), overlapCRLs), peers.QEMUVNCOptions{})
				require.NoError(t, err)
				for _, c := range []*rotationParty{oldClient, newClient, oldRevoked, newRevoked} {
					cfg, err := withCA(c.pki, overlap).ClientTLSConfig(interopDNSName)
					require.NoError(t, err)
					err = q.Probe(t, cfg)
					if c == oldRevoked || c == newRevoked {
						assert.ErrorContains(t, err, "The certificate has been revoked", "VeNCrypt probe with the %s certificate", c.name)
					} else {
						assert.NoError(t, err, "VeNCrypt probe with the %s certificate", c.name)
					}
				}
			})
			t.Run("Java cloud.jks with "+server.name, func(t *testing.T) {
				t.Parallel()
				peers.Require(t, "java")
				out, err := peers.JavaKeystoreClient(t, overlapJKS, overlapJKS, passphrase, withCA(server.pki, overlap), interopDNSName)
				require.NoError(t, err)
				assert.Contains(t, out, keystore.CAAliasPrefix+"1")
				assert.Contains(t, out, keystore.CAAliasPrefix+"2")
			})
		}
	})

	res, err := ca.RetirePrevious(ctx, &rootca.RetireOptions{Force: true})
	require.NoError(t, err)
	assert.Len(t, res.Abandoned, 2, "the old server and client certificates (the third is revoked)")
	retired, err := provider.CABundle(ctx, ca)
	require.NoError(t, err)
	require.Len(t, parseBundle(t, retired), 1)
	_, err = keystore.Import(ctx, javaDir, javaCertPEM, retired, nil)
	require.NoError(t, err)
	retiredJKS := readFile(t, filepath.Join(javaDir, keystore.KeystoreFile))

	t.Run("retired", func(t *testing.T) {
		t.Run("libvirtd", func(t *testing.T) {
			t.Parallel()
			peers.Require(t, "libvirtd", "virsh")
			d, err := peers.StartLibvirtd(t, withCA(newServer.pki, retired), peers.LibvirtdOptions{})
			require.NoError(t, err)
			assert.NoError(t, d.Connect(t, withCA(newClient.pki, retired), interopDNSName), "virsh with the new CA's certificate")
			// The client still trusts both, so that the refusal is
			// libvirtd's.
			// libvirtd's TLS handshake names only the new CA as acceptable,
			// so GnuTLS in virsh sends no certificate, and libvirtd
			// refuses the client.
			err = d.Connect(t, withCA(oldClient.pki, overlap), interopDNSName)
			assert.ErrorContains(t, err, "Failed to verify peer's certificate", "virsh with the retired CA's certificate")
		})
		t.Run("QEMU", func(t *testing.T) {
			t.Parallel()
			peers.Require(t, "qemu-system-x86_64")
			q, err := peers.StartQEMUVNC(t, withCA(newServer.pki, retired), peers.QEMUVNCOptions{})
			require.NoError(t, err)
			cfg, err := withCA(newClient.pki, retired).ClientTLSConfig(interopDNSName)
			require.NoError(t, err)
			assert.NoError(t, q.Probe(t, cfg), "VeNCrypt probe with the new CA's certificate")
			cfg, err = withCA(oldClient.pki, overlap).ClientTLSConfig(interopDNSName)
			require.NoError(t, err)
			err = q.Probe(t, cfg)
			assert.ErrorContains(t, err, "QEMU rejected the TLS client", "VeNCrypt probe with the retired CA's certificate")
		})
		t.Run("Java", func(t *testing.T) {
			t.Parallel()
			peers.Require(t, "java")
			out, err := peers.JavaKeystoreClient(t, retiredJKS, retiredJKS, passphrase, withCA(newServer.pki, retired), interopDNSName)
			require.NoError(t, err, "Java with the new CA's server")
			assert.NotContains(t, out, keystore.CAAliasPrefix+"2", "the retired CA left cloud.jks")
			_, err = peers.JavaKeystoreClient(t, retiredJKS, retiredJKS, passphrase, withCA(oldServer.pki, overlap), interopDNSName)
			assert.ErrorContains(t, err, "unable to find valid certification path", "Java refuses the retired CA's server")
		})
	})
}

// parseBundle parses a PEM bundle.
func parseBundle(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		require.NoError(t, err)
		out = append(out, c)
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	return b
}

// keystorePassphrase reads the passphrase keystore.Setup wrote.
func keystorePassphrase(t *testing.T, dir string) []byte {
	t.Helper()
	p, err := keystore.ParseProperties(readFile(t, filepath.Join(dir, keystore.PropertiesFile)))
	require.NoError(t, err)
	pw, ok := p.Lookup(keystore.PassphraseProperty)
	require.True(t, ok)
	return pw
}
