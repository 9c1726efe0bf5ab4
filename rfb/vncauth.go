package rfb

import (
	"crypto/des"
	"io"
	"math/bits"
)

// vncChallengeLength is the size of the VNC authentication challenge and
// response.
const vncChallengeLength = 16

// VNCAuthResponse returns the response to a VNC authentication challenge
// (RFC 6143 §7.2.2, with the key convention of rfbproto, RFC 6143 errata
// 4951): the challenge's two 8-byte halves encrypted with DES-ECB under
// the password's first 8 bytes, zero-padded, each byte's bits reversed.
// Like every VNC server, it ignores the password beyond 8 bytes.
//
// It is exported for servers and test doubles; clients get it from Dial.
func VNCAuthResponse(password []byte, challenge [16]byte) [16]byte {
	var key [8]byte
	copy(key[:], password)
	for i, b := range key {
		key[i] = bits.Reverse8(b)
	}
	defer clear(key[:])
	block, err := des.NewCipher(key[:])
	if err != nil {
		// des.NewCipher fails only on a key that is not 8 bytes.
		panic("rfb: " + err.Error())
	}
	var resp [vncChallengeLength]byte
	block.Encrypt(resp[:8], challenge[:8])
	block.Encrypt(resp[8:], challenge[8:])
	return resp
}

// vncAuth reads the server's challenge from r and returns the response
// for the caller's password; the caller sends it and clears it.
func vncAuth(r io.Reader, cfg *Config) ([vncChallengeLength]byte, error) {
	var challenge [vncChallengeLength]byte
	if _, err := io.ReadFull(r, challenge[:]); err != nil {
		return challenge, readError("VNC authentication challenge", err)
	}
	password, err := cfg.password()
	if err != nil {
		return challenge, err
	}
	resp := VNCAuthResponse(password, challenge)
	clear(password)
	return resp, nil
}
