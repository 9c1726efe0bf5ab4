package rootca_test

import (
	"crypto"
	"crypto/sha1"
)

const cryptoSHA1 = crypto.SHA1

func sha1Sum(b []byte) []byte {
	s := sha1.Sum(b)
	return s[:]
}
