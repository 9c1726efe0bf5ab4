package keystore

import (
	"bytes"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/asn1"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	jks "github.com/pavlo-v-chernykh/keystore-go/v4"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// JKS layout (OpenJDK JavaKeyStore): magic, version, entry count, entries,
// then a 20-byte SHA-1 digest keyed with the password.
const (
	jksTagKey     = 1
	jksTagTrusted = 2
	jksDigestLen  = 20
	// jksKeyOverhead is the salt and check value around a JKS-protected
	// key: keystore-go slices the key blob without checking its length.
	jksKeyOverhead = 40
	// jksCertType is what keytool writes as a certificate's type.
	jksCertType = "X.509"
)

// sunJKSKeyProtector is the OID of Sun's proprietary key protection.
var sunJKSKeyProtector = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 42, 2, 17, 1, 1}

// jksEntry is one entry of a JKS file, pointing into the file's bytes.
type jksEntry struct {
	alias   string
	created int64
	keyData []byte   // the protected key (salt, ciphertext, check); nil for a trusted entry
	certs   [][]byte // DER, leaf first
}

// readJKS walks a JKS file, checking every length and count against the
// bytes present and the package limits before using it. keystore-go's
// Load allocates whatever a length field says and slices key blobs without
// checking them, so hostile input would exhaust memory or panic there;
// this reader never allocates more than the input's size.
func readJKS(data []byte) ([]jksEntry, error) {
	r := &jksReader{b: data}
	r.skip(4) // magic, checked by DetectFormat
	version := r.u32()
	count := r.u32()
	if r.err != nil {
		return nil, r.err
	}
	if version != 1 && version != 2 {
		return nil, fmt.Errorf("%w: JKS version %d", ErrMalformed, version)
	}
	if count > MaxEntries {
		return nil, fmt.Errorf("%w: JKS with %d entries, limit %d", ErrTooLarge, count, MaxEntries)
	}
	cert := func() []byte {
		if version == 2 {
			r.skip(int(r.u16())) // certificate type
		}
		return r.bytes(int(r.u32()))
	}
	entries := make([]jksEntry, 0, min(int(count), len(data)/16))
	for i := uint32(0); i < count && r.err == nil; i++ {
		var e jksEntry
		tag := r.u32()
		e.alias = string(r.bytes(int(r.u16())))
		e.created = int64(r.u64())
		switch tag {
		case jksTagKey:
			blob := r.bytes(int(r.u32()))
			if r.err == nil {
				var err error
				if e.keyData, err = jksKeyData(blob); err != nil {
					return nil, err
				}
			}
			n := r.u32()
			if r.err == nil && n > MaxChainLen {
				return nil, fmt.Errorf("%w: JKS chain of %d certificates, limit %d", ErrTooLarge, n, MaxChainLen)
			}
			if r.err == nil && n == 0 {
				return nil, fmt.Errorf("%w: JKS key entry %q has no certificate", ErrMalformed, e.alias)
			}
			for j := uint32(0); j < n && r.err == nil; j++ {
				e.certs = append(e.certs, cert())
			}
		case jksTagTrusted:
			e.certs = [][]byte{cert()}
		default:
			if r.err == nil {
				return nil, fmt.Errorf("%w: JKS entry %d has tag %d", ErrMalformed, i, tag)
			}
		}
		entries = append(entries, e)
	}
	r.skip(jksDigestLen)
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the JKS digest", ErrMalformed, len(r.b))
	}
	return entries, nil
}

// jksKeyData checks that a key entry holds an EncryptedPrivateKeyInfo with
// Sun's algorithm and room for salt and check value, and returns its data.
func jksKeyData(blob []byte) ([]byte, error) {
	in := cryptobyte.String(blob)
	var info, algo cryptobyte.String
	var oid asn1.ObjectIdentifier
	var data []byte
	if !in.ReadASN1(&info, cbasn1.SEQUENCE) || !in.Empty() ||
		!info.ReadASN1(&algo, cbasn1.SEQUENCE) || !algo.ReadASN1ObjectIdentifier(&oid) ||
		!info.ReadASN1Bytes(&data, cbasn1.OCTET_STRING) || !info.Empty() {
		return nil, fmt.Errorf("%w: JKS key entry is not an EncryptedPrivateKeyInfo", ErrMalformed)
	}
	if !oid.Equal(sunJKSKeyProtector) {
		return nil, unsupported("JKS key protected with %v", oid)
	}
	if len(data) <= jksKeyOverhead {
		return nil, fmt.Errorf("%w: JKS key entry of %d bytes", ErrMalformed, len(data))
	}
	return data, nil
}

// jksReader reads big-endian fields, remembering the first shortfall.
type jksReader struct {
	b   []byte
	err error
}

func (r *jksReader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = fmt.Errorf("%w: JKS field of %d bytes with %d left", ErrTruncated, n, len(r.b))
		r.b = nil
		return nil
	}
	// v keeps the capacity of the rest of the input: parseJKS computes
	// offsets from it.
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *jksReader) skip(n int) { r.bytes(n) }

func (r *jksReader) u16() uint16 {
	if b := r.bytes(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *jksReader) u32() uint32 {
	if b := r.bytes(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *jksReader) u64() uint64 {
	if b := r.bytes(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// jksPassword is the password as JKS hashes it: UTF-16BE, which for the
// ASCII passwords accepted here is a zero byte before each byte.
func jksPassword(password []byte) []byte {
	out := make([]byte, 2*len(password))
	for i, c := range password {
		out[2*i+1] = c
	}
	return out
}

// jksWhitener is the constant OpenJDK mixes into the store digest.
var jksWhitener = []byte("Mighty Aphrodite")

// jksDecryptKey undoes Sun's key protection: the key is XORed with the
// stream D[i] = SHA-1(pw ‖ D[i-1]), D[0] = salt, and checked against
// SHA-1(pw ‖ plaintext).
func jksDecryptKey(data, pw16 []byte) ([]byte, bool) {
	salt := data[:sha1.Size]
	ct := data[sha1.Size : len(data)-sha1.Size]
	check := data[len(data)-sha1.Size:]
	out := make([]byte, len(ct))
	h := sha1.New()
	d := make([]byte, 0, sha1.Size)
	d = append(d, salt...)
	for off := 0; off < len(ct); off += sha1.Size {
		h.Reset()
		h.Write(pw16)
		h.Write(d)
		d = h.Sum(d[:0])
		subtle.XORBytes(out[off:], ct[off:], d)
	}
	h.Reset()
	h.Write(pw16)
	h.Write(out)
	if subtle.ConstantTimeCompare(h.Sum(d[:0]), check) != 1 {
		clear(out)
		return nil, false
	}
	return out, true
}

// parseJKS reads a JKS file with readJKS and checks its digest and keys
// with password. The format is small enough that reading it here, bounded,
// is simpler than making keystore-go's reader safe; writing goes through
// keystore-go, and the tests check the two agree both ways.
func parseJKS(data, password []byte) (*KeyStore, error) {
	entries, err := readJKS(data)
	if err != nil {
		return nil, err
	}
	// Java hashes the password's UTF-16 chars, keystore-go its bytes: they
	// only agree on ASCII, so anything else cannot open a keytool store.
	if err := checkPasswordChars(password, FormatJKS); err != nil {
		return nil, err
	}
	pw16 := jksPassword(password)
	defer clear(pw16)
	h := sha1.New()
	h.Write(pw16)
	h.Write(jksWhitener)
	h.Write(data[:len(data)-jksDigestLen])
	if subtle.ConstantTimeCompare(h.Sum(nil), data[len(data)-jksDigestLen:]) != 1 {
		return nil, ErrIncorrectPassword
	}
	// One copy of the file backs every certificate, so that the caller's
	// buffer is not retained.
	own := bytes.Clone(data)
	rebase := func(b []byte) []byte {
		off := cap(data) - cap(b)
		return own[off : off+len(b) : off+len(b)]
	}
	ks := &KeyStore{format: FormatJKS, entries: make(map[string]*entry, len(entries))}
	for _, je := range entries {
		e := &entry{created: time.UnixMilli(je.created), chain: make([][]byte, len(je.certs))}
		for i, c := range je.certs {
			e.chain[i] = rebase(c)
		}
		if je.keyData != nil {
			key, ok := jksDecryptKey(je.keyData, pw16)
			if !ok {
				// The store password verified, so the key has its own.
				ks.Close()
				return nil, fmt.Errorf("%w: key entry %q has a different password", ErrIncorrectPassword, je.alias)
			}
			if !isPKCS8(key) {
				clear(key)
				ks.Close()
				return nil, fmt.Errorf("%w: key entry %q is not PKCS #8; Java cannot use it", ErrMalformed, je.alias)
			}
			e.key = key
		}
		// Java lower-cases aliases on load; the last entry wins.
		a := normalizeAlias(je.alias)
		if old, ok := ks.entries[a]; ok {
			clear(old.key)
		}
		ks.entries[a] = e
	}
	return ks, nil
}

// isPKCS8 checks the shape of a PrivateKeyInfo without parsing the key:
// PKCS #1 and SEC 1 keys, which keytool lists but cannot use, fail it.
func isPKCS8(der []byte) bool {
	in := cryptobyte.String(der)
	var info, algo cryptobyte.String
	var version int
	var key []byte
	return in.ReadASN1(&info, cbasn1.SEQUENCE) && in.Empty() &&
		info.ReadASN1Integer(&version) &&
		info.ReadASN1(&algo, cbasn1.SEQUENCE) &&
		info.ReadASN1Bytes(&key, cbasn1.OCTET_STRING)
}

func (ks *KeyStore) marshalJKS(password []byte, rand io.Reader) ([]byte, error) {
	opts := []jks.Option{jks.WithOrderedAliases(), jks.WithMinPasswordLen(MinPasswordLen)}
	if rand != nil {
		opts = append(opts, jks.WithCustomRandomNumberGenerator(rand))
	}
	dst := jks.New(opts...)
	size := 64
	for alias, e := range ks.entries {
		chain := make([]jks.Certificate, len(e.chain))
		for i, der := range e.chain {
			chain[i] = jks.Certificate{Type: jksCertType, Content: der}
			size += len(der) + 16
		}
		if e.key == nil {
			if err := dst.SetTrustedCertificateEntry(alias, jks.TrustedCertificateEntry{CreationTime: e.created, Certificate: chain[0]}); err != nil {
				return nil, fmt.Errorf("keystore: writing JKS entry %q: %w", alias, err)
			}
			continue
		}
		size += len(e.key) + 64
		if err := dst.SetPrivateKeyEntry(alias, jks.PrivateKeyEntry{CreationTime: e.created, PrivateKey: e.key, CertificateChain: chain}, password); err != nil {
			return nil, fmt.Errorf("keystore: writing JKS entry %q: %w", alias, err)
		}
	}
	var buf bytes.Buffer
	buf.Grow(size)
	if err := dst.Store(&buf, password); err != nil {
		return nil, fmt.Errorf("keystore: writing JKS: %w", err)
	}
	return buf.Bytes(), nil
}
