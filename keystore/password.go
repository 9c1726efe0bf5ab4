package keystore

import (
	"crypto/rand"
	"fmt"
	"io"
)

// checkPassword accepts the passwords Java can use for a store of format:
// at least MinPasswordLen characters (keytool's rule), printable ASCII.
func checkPassword(password []byte, format Format) error {
	if len(password) < MinPasswordLen {
		return fmt.Errorf("%w: shorter than %d characters", ErrInvalidPassword, MinPasswordLen)
	}
	return checkPasswordChars(password, format)
}

// checkPasswordChars refuses what Java and the Go libraries encode
// differently. keystore-go widens each byte to UTF-16 while Java widens
// each char, so JKS needs ASCII; PKCS #12 readers disagree on non-ASCII
// too (BMPString for the MAC, UTF-8 for PBES2), and agent.properties is
// read as ISO-8859-1, so both formats take printable ASCII only. The
// message never includes the password.
func checkPasswordChars(password []byte, _ Format) error {
	for i, c := range password {
		if c < 0x20 || c > 0x7e {
			return fmt.Errorf("%w: character %d is not printable ASCII, which Java keystores require", ErrInvalidPassword, i+1)
		}
	}
	return nil
}

// passwordAlphabet is the base32 alphabet: no character needs escaping in
// a properties file or a shell.
const passwordAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

// GeneratePassword returns a new keystore password of 26 characters drawn
// uniformly from a 32-letter alphabet (130 bits) with r, or crypto/rand if r
// is nil.
func GeneratePassword(r io.Reader) ([]byte, error) {
	if r == nil {
		r = rand.Reader
	}
	pw := make([]byte, generatedPasswordLen)
	if _, err := io.ReadFull(r, pw); err != nil {
		return nil, fmt.Errorf("keystore: generating a password: %w", err)
	}
	for i, b := range pw {
		pw[i] = passwordAlphabet[b&31] // 256 is a multiple of 32: uniform
	}
	return pw, nil
}
