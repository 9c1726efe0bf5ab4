package keystore

import "time"

// CloudStack's names for the files in an agent's credentials directory and
// the entries of its keystore.
const (
	KeystoreFile   = "cloud.jks"
	CSRFile        = "cloud.csr"
	CertFile       = "cloud.crt"
	KeyFile        = "cloud.key"
	CACertFile     = "cloud.ca.crt"
	PropertiesFile = "agent.properties"

	// KeyAlias is the alias of the agent's key entry.
	KeyAlias = "cloud"
	// CAAliasPrefix starts the aliases of the trusted CA entries:
	// "cloudca.1", "cloudca.2", ... in the order of the CA bundle.
	CAAliasPrefix = "cloudca."
	// PassphraseProperty is the key of the keystore password in
	// agent.properties.
	PassphraseProperty = "keystore.passphrase"
)

const (
	// MinPasswordLen is keytool's minimum store password length.
	MinPasswordLen = 6
	// generatedPasswordLen is the length of a generated passphrase: 26
	// characters of a 32-letter alphabet, 130 bits.
	generatedPasswordLen = 26

	// DefaultRSABits is the RSA key size when KeyRSA is chosen without a
	// size; x509-profiles asks for 2048 or more.
	DefaultRSABits = 2048
	// minRSABits and maxRSABits bound RSA key sizes, as rootca does.
	minRSABits = 2048
	maxRSABits = 8192

	// pkcs12Iterations is the PBKDF2 and MAC iteration count of the PKCS #12
	// files written here: go-pkcs12's Modern encoder uses the same. The
	// generated passphrases carry 130 bits, so stretching adds nothing to
	// them; it keeps Setup well under a few milliseconds.
	pkcs12Iterations = 2048
	// maxPKCS12Iterations bounds the work a file can ask a reader to do:
	// a hundred times keytool's 10,000, about a second of hashing.
	maxPKCS12Iterations = 1_000_000

	// placeholderValidity is the validity of the self-signed certificate
	// Setup puts on the key entry until Import replaces it (keytool's
	// -genkeypair default is 90 days).
	placeholderValidity = 90 * 24 * time.Hour
)

// Limits on input, so that a hostile or corrupt file cannot make a reader
// allocate or compute without bound.
const (
	// MaxFileSize is the largest keystore Parse accepts.
	MaxFileSize = 16 << 20
	// MaxPropertiesSize is the largest properties file ParseProperties
	// accepts.
	MaxPropertiesSize = 4 << 20
	// MaxEntries is the most entries a keystore may hold.
	MaxEntries = 10_000
	// MaxChainLen is the longest certificate chain of a key entry.
	MaxChainLen = 32
	// maxPEMSize bounds certificate and CA bundle input to Import.
	maxPEMSize = 4 << 20
)
