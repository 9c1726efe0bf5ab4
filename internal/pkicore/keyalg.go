package pkicore

import (
	"fmt"
	"strings"
)

// KeyAlgorithm names the kind of key to generate. The zero value lets the
// generating package choose its documented default.
type KeyAlgorithm int

const (
	// KeyAlgorithmDefault lets the generating package choose.
	KeyAlgorithmDefault KeyAlgorithm = iota
	// KeyAlgorithmRSA is an RSA key; a size is the modulus in bits.
	KeyAlgorithmRSA
	// KeyAlgorithmECDSA is an ECDSA key; a size is the curve size in bits
	// (256 for P-256, 384 for P-384).
	KeyAlgorithmECDSA
)

// String returns "rsa", "ecdsa" or "default", the names
// ParseKeyAlgorithm reads.
func (a KeyAlgorithm) String() string {
	switch a {
	case KeyAlgorithmRSA:
		return "rsa"
	case KeyAlgorithmECDSA:
		return "ecdsa"
	case KeyAlgorithmDefault:
		return "default"
	}
	return fmt.Sprintf("KeyAlgorithm(%d)", int(a))
}

// ParseKeyAlgorithm reads "rsa", "ecdsa" (or "ec"), and "default" (or
// ""), in any case.
func ParseKeyAlgorithm(s string) (KeyAlgorithm, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "rsa":
		return KeyAlgorithmRSA, nil
	case "ecdsa", "ec":
		return KeyAlgorithmECDSA, nil
	case "default", "":
		return KeyAlgorithmDefault, nil
	}
	return 0, fmt.Errorf("unknown key algorithm %q (want rsa or ecdsa)", s)
}
