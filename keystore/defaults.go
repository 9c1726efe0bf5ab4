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

	// defaultRSABits is the RSA key size when KeyAlgorithmRSA is chosen
	// without a size; x509-profiles asks for 2048 or more.
	defaultRSABits = 2048
	// minRSABits and maxRSABits bound RSA key sizes, as rootca does.
	minRSABits = 2048
	maxRSABits = 8192

	// pkcs12Iterations is the PBKDF2 and MAC iteration count of the PKCS #12
	// files written here, JDK 17 keytool's default: the password may be
	// one a person chose, and stretching is what slows guessing it.
	pkcs12Iterations = 10_000
	// generatedPasswordIterations is the count Setup uses when it has just
	// generated the passphrase (GeneratePassword: 130 random bits). No
	// guessing attack on 2^130 candidates is within reach, so stretching
	// adds nothing there; 2,048 (OpenSSL's and go-pkcs12's count) keeps
	// Setup to a few milliseconds. Import and Marshal cannot tell a
	// generated passphrase from a chosen one, so they use pkcs12Iterations.
	generatedPasswordIterations = 2048

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
	// MaxKDFIterations bounds the key derivation one Parse of a PKCS #12
	// file performs, across its MAC, encrypted safes and shrouded keys:
	// iterations times output blocks (hash chains run), about 0.2 s of
	// hashing. A keytool store costs 10,000 per key plus 20,000; keys
	// and safes that share salt and iteration count derive once.
	MaxKDFIterations = 1_000_000
	// MaxSignatureChecks bounds the certificate signature checks one Parse
	// of a PKCS #12 file makes to build its chains: about 0.4 s of ECDSA
	// P-256 verification on a slow, shared core. Each certificate's issuer
	// is looked for once, so an ordinary store needs one check per chain
	// link.
	MaxSignatureChecks = 1024
	// maxPEMSize bounds certificate and CA bundle input to Import.
	maxPEMSize = 4 << 20
)
