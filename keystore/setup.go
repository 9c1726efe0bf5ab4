package keystore

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kvmpki/kvmpki/internal/pkicore"
)

// KeyAlgorithm is the algorithm of the key Setup generates, the one type
// every kvmpki package uses. Its zero value, KeyAlgorithmDefault, is
// ECDSA P-256 here: rootca gives it a certificate without key usage, which
// libvirt, QEMU, Go, OpenSSL and Java all accept.
type KeyAlgorithm = pkicore.KeyAlgorithm

// The key algorithms.
const (
	// KeyAlgorithmDefault is ECDSA P-256.
	KeyAlgorithmDefault = pkicore.KeyAlgorithmDefault
	// KeyAlgorithmRSA is an RSA key of SetupOptions.KeySize bits (2048 when
	// zero), as CloudStack's keytool -genkey makes.
	KeyAlgorithmRSA = pkicore.KeyAlgorithmRSA
	// KeyAlgorithmECDSA is an ECDSA key on P-256 (SetupOptions.KeySize 0
	// or 256) or P-384 (384).
	KeyAlgorithmECDSA = pkicore.KeyAlgorithmECDSA
)

// ParseKeyAlgorithm reads "rsa", "ecdsa" (or "ec"), and "default" (or
// ""), in any case.
func ParseKeyAlgorithm(s string) (KeyAlgorithm, error) {
	a, err := pkicore.ParseKeyAlgorithm(s)
	if err != nil {
		return 0, fmt.Errorf("keystore: %w", err)
	}
	return a, nil
}

// SetupOptions tunes Setup. The zero value (or nil) is the safe default.
type SetupOptions struct {
	// PropertiesFile is the agent.properties that holds the keystore
	// passphrase. If empty, it is PropertiesFile in the directory.
	PropertiesFile string

	// CommonName is the subject CN of the CSR. If empty, it is the host
	// name (os.Hostname).
	CommonName string
	// DNSNames are the DNS names the CSR asks for. If nil, the common name
	// is used when it is a DNS name.
	DNSNames []string
	// IPAddresses are the addresses the CSR asks for. If nil, they are
	// HostAddresses(ctx); pass an empty non-nil slice for none.
	IPAddresses []net.IP

	// KeyAlgorithm is the key algorithm; the zero value is ECDSA P-256.
	KeyAlgorithm KeyAlgorithm
	// KeySize is the RSA modulus in bits (zero: 2048; under 2048 or over
	// 8192 refused) or the ECDSA curve size (zero or 256: P-256; 384:
	// P-384; others refused).
	KeySize int

	// Format is the keystore format; the zero value means PKCS #12.
	Format Format

	// Rand is the source of randomness; nil means crypto/rand.
	Rand io.Reader
	// Time returns the current time; nil means time.Now.
	Time func() time.Time
}

// SetupResult is what Setup produced.
type SetupResult struct {
	// CSR is the PKCS #10 request, PEM, also written to cloud.csr.
	CSR []byte
	// Request is CSR parsed.
	Request *x509.CertificateRequest
	// Keystore is the path of the keystore written.
	Keystore string
	// Format is its format.
	Format Format
	// NewPassphrase is true when Setup generated the passphrase and wrote
	// it to the properties file, false when it reused the one there.
	NewPassphrase bool
}

// Setup prepares a host's credentials directory for a new certificate, as
// CloudStack's keystore-setup did: it generates a key, writes the keystore
// (dir/cloud.jks, in opts.Format) holding the key under alias "cloud" with
// a self-signed placeholder certificate (as keytool -genkeypair does), and
// writes a PKCS #10 CSR (dir/cloud.csr) naming the host.
//
// The keystore passphrase comes from keystore.passphrase in the properties
// file; when there is none, Setup generates one with GeneratePassword and
// adds it there, leaving every other line of the file as it was. The
// entries other than "cloud" of an existing keystore that opens with the
// passphrase are kept; a keystore that does not open (CloudStack issue
// #6716) is replaced. The properties file, keystore and CSR are written
// with mode 0600, each atomically.
func Setup(ctx context.Context, dir string, opts *SetupOptions) (*SetupResult, error) {
	return setup(ctx, dir, opts, osFS{})
}

func setup(ctx context.Context, dir string, opts *SetupOptions, fsys fileSystem) (*SetupResult, error) {
	if opts == nil {
		opts = &SetupOptions{}
	}
	rnd := opts.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	now := time.Now
	if opts.Time != nil {
		now = opts.Time
	}
	format := opts.Format
	if format == FormatUnknown {
		format = FormatPKCS12
	}
	propsPath := opts.PropertiesFile
	if propsPath == "" {
		propsPath = filepath.Join(dir, PropertiesFile)
	}
	cn, dnsNames, ips, err := setupNames(ctx, opts)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	props, err := LoadProperties(ctx, propsPath)
	if err != nil {
		return nil, err
	}
	defer props.Clear()
	password, newPass := props.Lookup(PassphraseProperty)
	newPass = !newPass || len(password) == 0
	if newPass {
		if password, err = GeneratePassword(rnd); err != nil {
			return nil, err
		}
		if err := props.Set(PassphraseProperty, password); err != nil {
			return nil, err
		}
	}
	defer clear(password)
	if err := checkPassword(password, format); err != nil {
		return nil, fmt.Errorf("%w (keystore.passphrase in %s)", err, propsPath)
	}

	key, err := generateKey(opts.KeyAlgorithm, opts.KeySize, rnd)
	if err != nil {
		return nil, err
	}
	placeholder, err := selfSigned(key, cn, now(), rnd)
	if err != nil {
		return nil, err
	}
	ksPath := filepath.Join(dir, KeystoreFile)
	ks := New(format)
	if old, err := Load(ctx, ksPath, password); err == nil {
		// Only "cloud" is replaced: other entries, keys included, are
		// not Setup's to drop (keytool -genkeypair leaves them too).
		for _, a := range old.Aliases() {
			if a != KeyAlias {
				ks.entries[a] = old.entries[a]
				delete(old.entries, a) // now owned by ks, not cleared by Close
			}
		}
		old.Close()
	}
	defer ks.Close()
	if err := ks.SetPrivateKey(KeyAlias, key, []*x509.Certificate{placeholder}); err != nil {
		return nil, err
	}
	ks.entries[KeyAlias].created = now()
	// A passphrase generated just now carries 130 random bits: see
	// generatedPasswordIterations.
	iterations := writeIterations
	if newPass {
		iterations = min(iterations, generatedPasswordIterations)
	}
	ksData, err := ks.marshal(format, password, rnd, iterations)
	if err != nil {
		return nil, err
	}

	csrDER, err := x509.CreateCertificateRequest(rnd, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    dnsNames,
		IPAddresses: ips,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("keystore: creating the CSR: %w", err)
	}
	req, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("keystore: parsing the CSR: %w", err)
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})

	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	set := []fileWrite{
		{name: KeystoreFile, data: ksData, mode: 0o600},
		{name: CSRFile, data: csrPEM, mode: 0o600},
	}
	if newPass {
		propsData := props.Bytes()
		defer clear(propsData)
		// The properties file goes first, so that a keystore never exists
		// under a passphrase nobody kept; in the same directory it joins
		// the same all-or-nothing set.
		pf := fileWrite{name: filepath.Base(propsPath), data: propsData, mode: 0o600}
		if filepath.Clean(filepath.Dir(propsPath)) == filepath.Clean(dir) {
			set = append([]fileWrite{pf}, set...)
		} else if err := writeFiles(fsys, filepath.Dir(propsPath), []fileWrite{pf}); err != nil {
			return nil, err
		}
	}
	if err := writeFiles(fsys, dir, set); err != nil {
		return nil, err
	}
	return &SetupResult{CSR: csrPEM, Request: req, Keystore: ksPath, Format: format, NewPassphrase: newPass}, nil
}

// setupNames resolves the CSR's common name, DNS names and addresses.
func setupNames(ctx context.Context, opts *SetupOptions) (string, []string, []net.IP, error) {
	cn := opts.CommonName
	if cn == "" {
		h, err := os.Hostname()
		if err != nil {
			return "", nil, nil, fmt.Errorf("keystore: host name for the CSR: %w", err)
		}
		cn = h
	}
	dns := opts.DNSNames
	if dns == nil && isDNSName(cn) {
		dns = []string{cn}
	}
	ips := opts.IPAddresses
	if ips == nil {
		var err error
		if ips, err = HostAddresses(ctx); err != nil {
			return "", nil, nil, err
		}
	}
	return cn, dns, ips, nil
}

// isDNSName accepts RFC 1123 host names (no IP literals).
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 || net.ParseIP(s) != nil {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func generateKey(alg KeyAlgorithm, size int, rnd io.Reader) (crypto.Signer, error) {
	switch alg {
	case KeyAlgorithmDefault, KeyAlgorithmECDSA:
		var curve elliptic.Curve
		switch size {
		case 0, 256:
			curve = elliptic.P256()
		case 384:
			curve = elliptic.P384()
		default:
			return nil, fmt.Errorf("%w: ECDSA-%d (256 or 384 accepted)", ErrUnsupportedKey, size)
		}
		k, err := ecdsa.GenerateKey(curve, rnd)
		if err != nil {
			return nil, fmt.Errorf("keystore: generating an ECDSA key: %w", err)
		}
		return k, nil
	case KeyAlgorithmRSA:
		if size == 0 {
			size = defaultRSABits
		}
		if size < minRSABits || size > maxRSABits {
			return nil, fmt.Errorf("%w: RSA-%d (%d to %d bits accepted)", ErrUnsupportedKey, size, minRSABits, maxRSABits)
		}
		k, err := rsa.GenerateKey(rnd, size)
		if err != nil {
			return nil, fmt.Errorf("keystore: generating an RSA key: %w", err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("%w: key algorithm %v", ErrUnsupportedKey, alg)
}

// selfSigned makes the placeholder certificate of a new key entry: Java
// key entries need a chain, and Import replaces it.
func selfSigned(key crypto.Signer, cn string, now time.Time, rnd io.Reader) (*x509.Certificate, error) {
	serial, err := rand.Int(rnd, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("keystore: serial: %w", err)
	}
	der, err := x509.CreateCertificate(rnd, &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(placeholderValidity),
	}, &x509.Certificate{Subject: pkix.Name{CommonName: cn}}, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("keystore: self-signing the placeholder certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}
