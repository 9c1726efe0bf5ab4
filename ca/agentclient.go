package ca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/kvmpki/kvmpki/internal/pemx"
)

// AgentCredentialFiles names an agent's credentials on disk: the files
// CloudStack's keystore-cert-import writes (cloud.crt, cloud.key,
// cloud.ca.crt), as PEM.
type AgentCredentialFiles struct {
	// CertFile holds the agent's certificate, then its intermediates.
	CertFile string
	// KeyFile holds its private key.
	KeyFile string
	// CAFile holds the CA certificates the agent trusts.
	CAFile string
	// Logger receives a record when a renewed file cannot be used. If
	// nil, nothing is logged.
	Logger *slog.Logger
}

// AgentCredentials are an agent's certificate, key and trusted CAs, read
// from files and read again when the files change: a renewal that
// replaced them (by an atomic rename, as keystore and rootca's examples
// write) is used from the next handshake on, without a restart. A pair
// that does not parse or does not match (a half-written file, a new
// certificate whose key has not landed yet) is never used: the last good
// credentials stay until the files are whole again.
type AgentCredentials struct {
	files  AgentCredentialFiles
	logger *slog.Logger

	mu      sync.Mutex
	pairSig [2]fileSig
	pair    *tls.Certificate
	caSig   fileSig
	roots   *x509.CertPool
}

// fileSig identifies a version of a file without reading it.
type fileSig struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
}

func statSig(path string) (fileSig, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileSig{}, err
	}
	s := fileSig{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = uint64(st.Dev), uint64(st.Ino)
	}
	return s, nil
}

// LoadAgentCredentials reads the agent's credentials. Missing or unusable
// files are an error matching ErrNoCredentials: an agent never falls
// back to trusting any server (CloudStack's agent uses a trust-all
// manager when its keystore is missing).
func LoadAgentCredentials(files AgentCredentialFiles) (*AgentCredentials, error) {
	if files.CertFile == "" || files.KeyFile == "" || files.CAFile == "" {
		return nil, fmt.Errorf("%w: the certificate, key and CA files must all be named", ErrNoCredentials)
	}
	c := &AgentCredentials{files: files, logger: files.Logger}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.reloadPair(); err != nil {
		return nil, err
	}
	if err := c.reloadCA(); err != nil {
		return nil, err
	}
	return c, nil
}

// reloadPair reads the pair again if either file changed. Callers hold
// c.mu.
func (c *AgentCredentials) reloadPair() error {
	cs, err1 := statSig(c.files.CertFile)
	ks, err2 := statSig(c.files.KeyFile)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("%w: %w", ErrNoCredentials, err)
	}
	if c.pair != nil && c.pairSig == [2]fileSig{cs, ks} {
		return nil
	}
	certPEM, err1 := os.ReadFile(c.files.CertFile)
	keyPEM, err2 := os.ReadFile(c.files.KeyFile)
	defer clear(keyPEM)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("%w: %w", ErrNoCredentials, err)
	}
	chain, key, err := pemx.ParseKeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("%w: %s and %s: %w", ErrNoCredentials, c.files.CertFile, c.files.KeyFile, err)
	}
	pair := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		pair.Certificate = append(pair.Certificate, x.Raw)
	}
	c.pair, c.pairSig = pair, [2]fileSig{cs, ks}
	return nil
}

// reloadCA reads the CA file again if it changed. Callers hold c.mu.
func (c *AgentCredentials) reloadCA() error {
	s, err := statSig(c.files.CAFile)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoCredentials, err)
	}
	if c.roots != nil && c.caSig == s {
		return nil
	}
	data, err := os.ReadFile(c.files.CAFile)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoCredentials, err)
	}
	certs, err := pemx.ParseCertificates(data)
	if err != nil {
		return fmt.Errorf("%w: CA file %s: %w", ErrNoCredentials, c.files.CAFile, err)
	}
	pool := x509.NewCertPool()
	for _, x := range certs {
		pool.AddCert(x)
	}
	c.roots, c.caSig = pool, s
	return nil
}

// current returns the pair, read again if the files changed and are
// whole; otherwise the last good pair.
func (c *AgentCredentials) current() *tls.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.reloadPair(); err != nil {
		c.logger.Warn("ca: renewed agent credentials unusable; keeping the previous ones", "error", err)
	}
	return c.pair
}

// Certificate returns the agent's certificate in use.
func (c *AgentCredentials) Certificate() *x509.Certificate { return c.current().Leaf }

// TLSConfig returns the tls.Config of an agent dialling the management
// server at serverName (a DNS name or an IP address, the entry of the
// host= list): TLS 1.2 and later, the server's chain verified against
// the CA file (as it is on disk now) and its name or address checked,
// which CloudStack's agent checks neither of, and the agent's
// certificate presented, read again at each handshake if the files
// changed.
func (c *AgentCredentials) TLSConfig(serverName string) (*tls.Config, error) {
	if serverName == "" {
		return nil, errors.New("ca: the management server's name or address is required")
	}
	c.mu.Lock()
	if err := c.reloadCA(); err != nil {
		c.logger.Warn("ca: renewed CA file unusable; keeping the previous one", "error", err)
	}
	roots := c.roots
	c.mu.Unlock()
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    roots,
		ServerName: serverName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return c.current(), nil
		},
	}, nil
}
