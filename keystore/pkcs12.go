package keystore

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf16"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// PKCS #12 (RFC 7292) structures, as JDK 17's PKCS12KeyStore writes and
// reads them.

var (
	oidData            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidEncryptedData   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 6}
	oidKeyBag          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 1}
	oidShroudedKeyBag  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 2}
	oidCertBag         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 3}
	oidX509Certificate = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 22, 1}
	oidFriendlyName    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 20}
	oidLocalKeyID      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 21}
	// oidJavaTrustedKeyUsage marks a trusted certificate entry; its value
	// is the set of extended key usages trusted, here anyExtendedKeyUsage.
	oidJavaTrustedKeyUsage = asn1.ObjectIdentifier{2, 16, 840, 1, 113894, 746875, 1, 1}
	oidAnyExtendedKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 37, 0}
)

type pfxPDU struct {
	Version  int
	AuthSafe contentInfo
	MacData  macData `asn1:"optional"`
}

// contentInfo's Content is the [0] EXPLICIT wrapper; its Bytes hold the
// wrapped element.
type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"optional"`
}

type macData struct {
	Mac        digestInfo
	MacSalt    []byte
	Iterations int `asn1:"optional,default:1"`
}

type digestInfo struct {
	Algorithm pkix.AlgorithmIdentifier
	Digest    []byte
}

type encryptedData struct {
	Version              int
	EncryptedContentInfo encryptedContentInfo
}

type encryptedContentInfo struct {
	ContentType                asn1.ObjectIdentifier
	ContentEncryptionAlgorithm pkix.AlgorithmIdentifier
	EncryptedContent           []byte `asn1:"tag:0,optional"`
}

type safeBag struct {
	ID         asn1.ObjectIdentifier
	Value      asn1.RawValue
	Attributes []bagAttribute `asn1:"set,optional"`
}

type bagAttribute struct {
	ID     asn1.ObjectIdentifier
	Values asn1.RawValue
}

type certBag struct {
	ID   asn1.ObjectIdentifier
	Data asn1.RawValue
}

type encryptedPrivateKeyInfo struct {
	Algorithm     pkix.AlgorithmIdentifier
	EncryptedData []byte
}

// explicit wraps DER in a [0] EXPLICIT tag.
func explicit(der []byte) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: der}
}

// unwrapExplicit returns the element inside a [0] EXPLICIT tag.
func unwrapExplicit(v asn1.RawValue, what string) ([]byte, error) {
	if v.Class != asn1.ClassContextSpecific || v.Tag != 0 || !v.IsCompound {
		return nil, fmt.Errorf("%w: %s is not [0] EXPLICIT", ErrMalformed, what)
	}
	return v.Bytes, nil
}

// unmarshalDER parses exactly one DER element into out.
func unmarshalDER(der []byte, out any, what string) error {
	rest, err := asn1.Unmarshal(der, out)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d bytes after %s", ErrMalformed, len(rest), what)
	}
	return nil
}

// derTruncated reports whether the DER element at the start of data
// claims more bytes than data holds.
func derTruncated(data []byte) bool {
	if len(data) < 2 {
		return true
	}
	l := int(data[1])
	hdr := 2
	if l&0x80 != 0 {
		n := l & 0x7f
		if n == 0 || n > 4 {
			return false
		}
		if len(data) < 2+n {
			return true
		}
		l = 0
		for _, b := range data[2 : 2+n] {
			l = l<<8 | int(b)
		}
		hdr += n
	}
	return hdr+l > len(data)
}

// p12Key and p12Cert are the bags of a parsed file before they become
// entries.
type p12Key struct {
	name, id []byte
	der      []byte
}

type p12Cert struct {
	name, id []byte
	trusted  bool
	cert     *x509.Certificate
}

func parsePKCS12(data, password []byte) (*KeyStore, error) {
	if derTruncated(data) {
		return nil, fmt.Errorf("%w: PKCS #12 file of %d bytes", ErrTruncated, len(data))
	}
	if err := checkPasswordChars(password, FormatPKCS12); err != nil {
		return nil, err
	}
	var pfx pfxPDU
	if err := unmarshalDER(data, &pfx, "PKCS #12 PFX"); err != nil {
		return nil, err
	}
	if pfx.Version != 3 {
		return nil, fmt.Errorf("%w: PKCS #12 version %d", ErrUnsupported, pfx.Version)
	}
	if !pfx.AuthSafe.ContentType.Equal(oidData) {
		return nil, fmt.Errorf("%w: public-key integrity mode (%v)", ErrUnsupported, pfx.AuthSafe.ContentType)
	}
	inner, err := unwrapExplicit(pfx.AuthSafe.Content, "authSafe")
	if err != nil {
		return nil, err
	}
	var content []byte
	if err := unmarshalDER(inner, &content, "authSafe data"); err != nil {
		return nil, err
	}
	if err := verifyMAC(&pfx.MacData, password, content); err != nil {
		return nil, err
	}
	var safes []contentInfo
	if err := unmarshalDER(content, &safes, "authenticated safe"); err != nil {
		return nil, err
	}
	var (
		keys  []p12Key
		certs []p12Cert
	)
	defer func() {
		for _, k := range keys {
			clear(k.der)
		}
	}()
	for i, ci := range safes {
		bags, err := safeContents(ci, password, i)
		if err != nil {
			return nil, err
		}
		for _, bag := range bags {
			if len(keys)+len(certs) >= MaxEntries*(MaxChainLen+1) {
				return nil, fmt.Errorf("%w: too many PKCS #12 bags", ErrTooLarge)
			}
			if err := addBag(bag, password, &keys, &certs); err != nil {
				return nil, err
			}
		}
	}
	return assemblePKCS12(keys, certs)
}

// verifyMAC checks the MAC over the authenticated safe. A file without a
// MAC is refused: nothing would protect its trusted certificates.
func verifyMAC(m *macData, password, content []byte) error {
	if len(m.Mac.Algorithm.Algorithm) == 0 {
		return fmt.Errorf("%w: PKCS #12 without a MAC (password-less); its content is not integrity-protected", ErrUnsupported)
	}
	h, v, err := macHash(m.Mac.Algorithm.Algorithm)
	if err != nil {
		return err
	}
	if err := checkIterations(m.Iterations); err != nil {
		return err
	}
	want := pkcs12MAC(h, v, password, m.MacSalt, m.Iterations, content)
	if !hmac.Equal(want, m.Mac.Digest) {
		return ErrIncorrectPassword
	}
	return nil
}

// safeContents returns the bags of one item of the authenticated safe.
func safeContents(ci contentInfo, password []byte, i int) ([]safeBag, error) {
	what := "authenticated safe item " + strconv.Itoa(i)
	inner, err := unwrapExplicit(ci.Content, what)
	if err != nil {
		return nil, err
	}
	var plain []byte
	switch {
	case ci.ContentType.Equal(oidData):
		if err := unmarshalDER(inner, &plain, what); err != nil {
			return nil, err
		}
	case ci.ContentType.Equal(oidEncryptedData):
		var ed encryptedData
		if err := unmarshalDER(inner, &ed, what); err != nil {
			return nil, err
		}
		eci := ed.EncryptedContentInfo
		if plain, err = pbeDecrypt(eci.ContentEncryptionAlgorithm, password, eci.EncryptedContent); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: %s of type %v", ErrUnsupported, what, ci.ContentType)
	}
	var bags []safeBag
	if err := unmarshalDER(plain, &bags, "safe contents"); err != nil {
		return nil, err
	}
	// plain is not cleared: its key bags are shrouded on their own, and
	// the bags point into it.
	return bags, nil
}

func addBag(bag safeBag, password []byte, keys *[]p12Key, certs *[]p12Cert) error {
	name, id, trusted, err := bagAttributes(bag.Attributes)
	if err != nil {
		return err
	}
	inner, err := unwrapExplicit(bag.Value, "safe bag")
	if err != nil {
		return err
	}
	switch {
	case bag.ID.Equal(oidShroudedKeyBag):
		var epki encryptedPrivateKeyInfo
		if err := unmarshalDER(inner, &epki, "shrouded key bag"); err != nil {
			return err
		}
		der, err := pbeDecrypt(epki.Algorithm, password, epki.EncryptedData)
		if err != nil {
			return err
		}
		if !isPKCS8(der) {
			clear(der)
			return fmt.Errorf("%w: shrouded key bag is not PKCS #8", ErrMalformed)
		}
		*keys = append(*keys, p12Key{name: name, id: id, der: der})
	case bag.ID.Equal(oidKeyBag):
		if !isPKCS8(inner) {
			return fmt.Errorf("%w: key bag is not PKCS #8", ErrMalformed)
		}
		*keys = append(*keys, p12Key{name: name, id: id, der: bytes.Clone(inner)})
	case bag.ID.Equal(oidCertBag):
		var cb certBag
		if err := unmarshalDER(inner, &cb, "certificate bag"); err != nil {
			return err
		}
		if !cb.ID.Equal(oidX509Certificate) {
			return fmt.Errorf("%w: certificate bag of type %v", ErrUnsupported, cb.ID)
		}
		certDER, err := unwrapExplicit(cb.Data, "certificate bag")
		if err != nil {
			return err
		}
		var raw []byte
		if err := unmarshalDER(certDER, &raw, "certificate bag value"); err != nil {
			return err
		}
		cert, err := x509.ParseCertificate(raw)
		if err != nil {
			return fmt.Errorf("%w: certificate bag: %v", ErrMalformed, err)
		}
		*certs = append(*certs, p12Cert{name: name, id: id, trusted: trusted, cert: cert})
	default:
		return fmt.Errorf("%w: safe bag of type %v (secret keys, CRLs and nested bags are not read)", ErrUnsupported, bag.ID)
	}
	return nil
}

// bagAttributes extracts friendlyName (as ASCII-range UTF-16 decoded to
// UTF-8), localKeyId and Java's trusted-usage mark. Other attributes are
// ignored, as Java ignores them.
func bagAttributes(attrs []bagAttribute) (name, id []byte, trusted bool, err error) {
	for _, a := range attrs {
		switch {
		case a.ID.Equal(oidFriendlyName):
			var v asn1.RawValue
			if err := unmarshalDER(a.Values.Bytes, &v, "friendlyName"); err != nil {
				return nil, nil, false, err
			}
			if v.Tag != asn1.TagBMPString || len(v.Bytes)%2 != 0 {
				return nil, nil, false, fmt.Errorf("%w: friendlyName is not a BMPString", ErrMalformed)
			}
			u := make([]uint16, len(v.Bytes)/2)
			for i := range u {
				u[i] = uint16(v.Bytes[2*i])<<8 | uint16(v.Bytes[2*i+1])
			}
			name = []byte(string(utf16.Decode(u)))
		case a.ID.Equal(oidLocalKeyID):
			if err := unmarshalDER(a.Values.Bytes, &id, "localKeyId"); err != nil {
				return nil, nil, false, err
			}
		case a.ID.Equal(oidJavaTrustedKeyUsage):
			trusted = true
		}
	}
	return name, id, trusted, nil
}

// assemblePKCS12 turns bags into entries the way Java does: a key's leaf is
// the certificate with its localKeyId, the chain follows issuers among all
// certificates, aliases are friendlyNames ("1", "2", ... when absent), and
// certificates marked trusted become trusted entries.
func assemblePKCS12(keys []p12Key, certs []p12Cert) (*KeyStore, error) {
	ks := New(FormatPKCS12)
	now := time.Now()
	unnamed := 0
	alias := func(name []byte) string {
		if len(name) == 0 {
			unnamed++
			return strconv.Itoa(unnamed)
		}
		return normalizeAlias(string(name))
	}
	for i := range keys {
		k := &keys[i]
		leaf := -1
		for j, c := range certs {
			if len(k.id) > 0 && bytes.Equal(c.id, k.id) {
				leaf = j
				break
			}
		}
		if leaf < 0 && len(keys) == 1 && len(certs) > 0 && len(k.id) == 0 {
			leaf = 0
		}
		if leaf < 0 {
			return nil, fmt.Errorf("%w: PKCS #12 key %q has no certificate", ErrMalformed, k.name)
		}
		chain := [][]byte{certs[leaf].cert.Raw}
		cur := certs[leaf].cert
		for len(chain) < MaxChainLen && !bytes.Equal(cur.RawIssuer, cur.RawSubject) {
			next := issuerOf(cur, certs, chain)
			if next == nil {
				break
			}
			chain = append(chain, next.Raw)
			cur = next
		}
		a := alias(k.name)
		if err := checkAlias(a); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		ks.entries[a] = &entry{created: now, key: k.der, chain: chain}
		k.der = nil // now owned by ks
	}
	for _, c := range certs {
		if !c.trusted || len(c.id) > 0 {
			continue
		}
		a := alias(c.name)
		if err := checkAlias(a); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		if _, dup := ks.entries[a]; dup {
			return nil, fmt.Errorf("%w: alias %q used twice", ErrMalformed, a)
		}
		ks.entries[a] = &entry{created: now, chain: [][]byte{c.cert.Raw}}
	}
	if len(ks.entries) > MaxEntries {
		return nil, fmt.Errorf("%w: more than %d entries", ErrTooLarge, MaxEntries)
	}
	return ks, nil
}

// issuerOf finds the certificate among certs that signed c and is not yet
// in chain.
func issuerOf(c *x509.Certificate, certs []p12Cert, chain [][]byte) *x509.Certificate {
	for _, cand := range certs {
		if !bytes.Equal(cand.cert.RawSubject, c.RawIssuer) {
			continue
		}
		seen := false
		for _, der := range chain {
			if bytes.Equal(der, cand.cert.Raw) {
				seen = true
				break
			}
		}
		if !seen && c.CheckSignatureFrom(cand.cert) == nil {
			return cand.cert
		}
	}
	return nil
}

func (ks *KeyStore) marshalPKCS12(password []byte, rnd io.Reader) ([]byte, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	aliases := ks.Aliases()
	hasKey := false
	for _, a := range aliases {
		hasKey = hasKey || ks.entries[a].key != nil
	}
	if !hasKey {
		return ks.marshalTrustStore(aliases, password, rnd)
	}
	var certBags, keyBags []safeBag
	for i, a := range aliases {
		e := ks.entries[a]
		name, err := bmpAttribute(oidFriendlyName, a)
		if err != nil {
			return nil, err
		}
		if e.key == nil {
			trust, err := asn1.Marshal(oidAnyExtendedKeyUsage)
			if err != nil {
				return nil, err
			}
			bag, err := newCertBag(e.chain[0], name, bagAttribute{ID: oidJavaTrustedKeyUsage, Values: setOf(trust)})
			if err != nil {
				return nil, err
			}
			certBags = append(certBags, bag)
			continue
		}
		idDER, err := asn1.Marshal([]byte("kvmpki " + strconv.Itoa(i)))
		if err != nil {
			return nil, err
		}
		id := bagAttribute{ID: oidLocalKeyID, Values: setOf(idDER)}
		for j, der := range e.chain {
			var attrs []bagAttribute
			if j == 0 {
				attrs = []bagAttribute{name, id}
			}
			bag, err := newCertBag(der, attrs...)
			if err != nil {
				return nil, err
			}
			certBags = append(certBags, bag)
		}
		algo, ct, err := pbes2Encrypt(rnd, password, e.key, writeIterations)
		if err != nil {
			return nil, err
		}
		epki, err := asn1.Marshal(encryptedPrivateKeyInfo{Algorithm: algo, EncryptedData: ct})
		if err != nil {
			return nil, err
		}
		keyBags = append(keyBags, safeBag{ID: oidShroudedKeyBag, Value: explicit(epki), Attributes: []bagAttribute{name, id}})
	}
	certSafe, err := asn1.Marshal(certBags)
	if err != nil {
		return nil, err
	}
	algo, ct, err := pbes2Encrypt(rnd, password, certSafe, writeIterations)
	if err != nil {
		return nil, err
	}
	encDER, err := asn1.Marshal(encryptedData{EncryptedContentInfo: encryptedContentInfo{
		ContentType: oidData, ContentEncryptionAlgorithm: algo, EncryptedContent: ct}})
	if err != nil {
		return nil, err
	}
	keySafe, err := asn1.Marshal(keyBags)
	if err != nil {
		return nil, err
	}
	keyData, err := asn1.Marshal(keySafe)
	if err != nil {
		return nil, err
	}
	content, err := asn1.Marshal([]contentInfo{
		{ContentType: oidEncryptedData, Content: explicit(encDER)},
		{ContentType: oidData, Content: explicit(keyData)},
	})
	if err != nil {
		return nil, err
	}
	return marshalPFX(content, password, rnd)
}

// marshalPFX wraps the authenticated safe with an HMAC-SHA256 MAC.
func marshalPFX(content, password []byte, rnd io.Reader) ([]byte, error) {
	salt := make([]byte, 16)
	if _, err := io.ReadFull(rnd, salt); err != nil {
		return nil, fmt.Errorf("keystore: reading random salt: %w", err)
	}
	mac := pkcs12MAC(sha256.New, 64, password, salt, writeIterations, content)
	data, err := asn1.Marshal(content)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(pfxPDU{
		Version:  3,
		AuthSafe: contentInfo{ContentType: oidData, Content: explicit(data)},
		MacData: macData{
			Mac:        digestInfo{Algorithm: pkix.AlgorithmIdentifier{Algorithm: oidSHA256, Parameters: asn1.NullRawValue}, Digest: mac},
			MacSalt:    salt,
			Iterations: writeIterations,
		},
	})
}

// marshalTrustStore writes a store of trusted certificates only with
// go-pkcs12's Modern encoder, which JDK 17 keytool reads (see the interop
// tests).
func (ks *KeyStore) marshalTrustStore(aliases []string, password []byte, rnd io.Reader) ([]byte, error) {
	entries := make([]pkcs12.TrustStoreEntry, 0, len(aliases))
	for _, a := range aliases {
		c, err := ks.TrustedCert(a)
		if err != nil {
			return nil, err
		}
		entries = append(entries, pkcs12.TrustStoreEntry{Cert: c, FriendlyName: a})
	}
	// go-pkcs12 takes the password as a string, a copy that cannot be
	// cleared; a trust store protects no secret.
	out, err := pkcs12.Modern.WithRand(rnd).EncodeTrustStoreEntries(entries, string(password))
	if err != nil {
		return nil, fmt.Errorf("keystore: writing PKCS #12 trust store: %w", err)
	}
	return out, nil
}

func newCertBag(der []byte, attrs ...bagAttribute) (safeBag, error) {
	octets, err := asn1.Marshal(der)
	if err != nil {
		return safeBag{}, err
	}
	cb, err := asn1.Marshal(certBag{ID: oidX509Certificate, Data: explicit(octets)})
	if err != nil {
		return safeBag{}, err
	}
	return safeBag{ID: oidCertBag, Value: explicit(cb), Attributes: attrs}, nil
}

func setOf(der []byte) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: der}
}

// bmpAttribute is a friendlyName-style attribute holding s as a BMPString.
func bmpAttribute(oid asn1.ObjectIdentifier, s string) (bagAttribute, error) {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		b[2*i], b[2*i+1] = byte(c>>8), byte(c)
	}
	der, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagBMPString, Bytes: b})
	if err != nil {
		return bagAttribute{}, err
	}
	return bagAttribute{ID: oid, Values: setOf(der)}, nil
}
