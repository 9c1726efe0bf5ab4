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
// entries. A p12Cert points at its certificate in the parse's certSet.
type p12Key struct {
	name, id []byte
	der      []byte
}

type p12Cert struct {
	name, id []byte
	trusted  bool
	cert     int
}

// p12Parser is the state of one PKCS #12 parse: its key-derivation budget
// and cache, and the de-duplicated certificates with their memoised
// issuers.
type p12Parser struct {
	kdf   *kdf
	certs certSet
	keys  []p12Key
	bags  []p12Cert
}

func parsePKCS12(data, password []byte) (*KeyStore, error) {
	p := newP12Parser(password)
	defer p.close()
	return p.parse(data)
}

func newP12Parser(password []byte) *p12Parser {
	return &p12Parser{kdf: newKDF(password), certs: newCertSet()}
}

// close clears derived keys and the keys not handed to a KeyStore.
func (p *p12Parser) close() {
	p.kdf.close()
	for _, k := range p.keys {
		clear(k.der)
	}
}

func (p *p12Parser) parse(data []byte) (*KeyStore, error) {
	if derTruncated(data) {
		return nil, fmt.Errorf("%w: PKCS #12 file of %d bytes", ErrTruncated, len(data))
	}
	if err := checkPasswordChars(p.kdf.password, FormatPKCS12); err != nil {
		return nil, err
	}
	pfx, content, err := unmarshalPFX(data)
	if err != nil {
		return nil, err
	}
	if err := p.verifyMAC(&pfx.MacData, content); err != nil {
		return nil, err
	}
	var safes []contentInfo
	if err := unmarshalDER(content, &safes, "authenticated safe"); err != nil {
		return nil, err
	}
	for i, ci := range safes {
		bags, err := p.safeContents(ci, i)
		if err != nil {
			return nil, err
		}
		for _, bag := range bags {
			if len(p.keys)+len(p.bags) >= MaxEntries*(MaxChainLen+1) {
				return nil, fmt.Errorf("%w: too many PKCS #12 bags", ErrTooLarge)
			}
			if err := p.addBag(bag); err != nil {
				return nil, err
			}
		}
	}
	return p.assemble()
}

// unmarshalPFX parses the outer PFX of a password-integrity PKCS #12 file
// and returns it with the authenticated safe's bytes, the MAC's input.
func unmarshalPFX(data []byte) (*pfxPDU, []byte, error) {
	var pfx pfxPDU
	if err := unmarshalDER(data, &pfx, "PKCS #12 PFX"); err != nil {
		return nil, nil, err
	}
	if pfx.Version != 3 {
		return nil, nil, unsupported("PKCS #12 version %d", pfx.Version)
	}
	if !pfx.AuthSafe.ContentType.Equal(oidData) {
		return nil, nil, unsupported("public-key integrity mode (%v)", pfx.AuthSafe.ContentType)
	}
	inner, err := unwrapExplicit(pfx.AuthSafe.Content, "authSafe")
	if err != nil {
		return nil, nil, err
	}
	var content []byte
	if err := unmarshalDER(inner, &content, "authSafe data"); err != nil {
		return nil, nil, err
	}
	return &pfx, content, nil
}

// verifyMAC checks the MAC over the authenticated safe. A file without a
// MAC is refused: nothing would protect its trusted certificates.
func (p *p12Parser) verifyMAC(m *macData, content []byte) error {
	if len(m.Mac.Algorithm.Algorithm) == 0 {
		return unsupported("PKCS #12 without a MAC (password-less); its content is not integrity-protected")
	}
	h, v, err := macHash(m.Mac.Algorithm.Algorithm)
	if err != nil {
		return err
	}
	key, err := p.kdf.pkcs12(m.Mac.Algorithm.Algorithm, h, v, m.MacSalt, m.Iterations, 3, h().Size())
	if err != nil {
		return err
	}
	if !hmac.Equal(pkcs12MAC(h, key, content), m.Mac.Digest) {
		return ErrIncorrectPassword
	}
	return nil
}

// safeContents returns the bags of one item of the authenticated safe.
func (p *p12Parser) safeContents(ci contentInfo, i int) ([]safeBag, error) {
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
		if plain, err = p.kdf.pbeDecrypt(eci.ContentEncryptionAlgorithm, eci.EncryptedContent); err != nil {
			return nil, err
		}
	default:
		return nil, unsupported("%s of type %v", what, ci.ContentType)
	}
	var bags []safeBag
	if err := unmarshalDER(plain, &bags, "safe contents"); err != nil {
		return nil, err
	}
	// plain is not cleared: its key bags are shrouded on their own, and
	// the bags point into it.
	return bags, nil
}

func (p *p12Parser) addBag(bag safeBag) error {
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
		der, err := p.kdf.pbeDecrypt(epki.Algorithm, epki.EncryptedData)
		if err != nil {
			return err
		}
		if !isPKCS8(der) {
			clear(der)
			return fmt.Errorf("%w: shrouded key bag is not PKCS #8", ErrMalformed)
		}
		p.keys = append(p.keys, p12Key{name: name, id: id, der: der})
	case bag.ID.Equal(oidKeyBag):
		if !isPKCS8(inner) {
			return fmt.Errorf("%w: key bag is not PKCS #8", ErrMalformed)
		}
		p.keys = append(p.keys, p12Key{name: name, id: id, der: bytes.Clone(inner)})
	case bag.ID.Equal(oidCertBag):
		var cb certBag
		if err := unmarshalDER(inner, &cb, "certificate bag"); err != nil {
			return err
		}
		if !cb.ID.Equal(oidX509Certificate) {
			return unsupported("certificate bag of type %v", cb.ID)
		}
		certDER, err := unwrapExplicit(cb.Data, "certificate bag")
		if err != nil {
			return err
		}
		var raw []byte
		if err := unmarshalDER(certDER, &raw, "certificate bag value"); err != nil {
			return err
		}
		i, err := p.certs.add(raw)
		if err != nil {
			return err
		}
		p.bags = append(p.bags, p12Cert{name: name, id: id, trusted: trusted, cert: i})
	default:
		return unsupported("safe bag of type %v (secret keys, CRLs and nested bags are not read)", bag.ID)
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

// assemble turns bags into entries the way Java does: a key's leaf is the
// certificate with its localKeyId, the chain follows issuers among all
// certificates, aliases are friendlyNames ("1", "2", ... when absent), and
// certificates marked trusted become trusted entries.
func (p *p12Parser) assemble() (*KeyStore, error) {
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
	byID := make(map[string]int, len(p.keys))
	for _, c := range p.bags {
		if _, dup := byID[string(c.id)]; len(c.id) > 0 && !dup {
			byID[string(c.id)] = c.cert
		}
	}
	for i := range p.keys {
		k := &p.keys[i]
		leaf, ok := byID[string(k.id)]
		if len(k.id) == 0 {
			ok = len(p.keys) == 1 && len(p.bags) > 0
			if ok {
				leaf = p.bags[0].cert
			}
		}
		if !ok {
			return nil, fmt.Errorf("%w: PKCS #12 key %q has no certificate", ErrMalformed, k.name)
		}
		chain, err := p.certs.chain(leaf)
		if err != nil {
			return nil, err
		}
		a := alias(k.name)
		if err := checkAlias(a); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		ks.entries[a] = &entry{created: now, key: k.der, chain: chain}
		k.der = nil // now owned by ks
	}
	for _, c := range p.bags {
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
		ks.entries[a] = &entry{created: now, chain: [][]byte{p.certs.certs[c.cert].Raw}}
	}
	if len(ks.entries) > MaxEntries {
		return nil, fmt.Errorf("%w: more than %d entries", ErrTooLarge, MaxEntries)
	}
	return ks, nil
}

// certSet holds a file's certificates once each, however many bags repeat
// them, and builds chains with a bounded number of signature checks: the
// issuer of each certificate is found once (memoised), and among the
// certificates named like an issuer, the one that last verified a
// signature under that name is tried first. Chains of many keys issued by
// one CA among many certificates bearing its name then cost one check per
// key, not one per key and namesake; a file that still needs more than
// MaxSignatureChecks is refused with ErrWorkLimit.
//
// signatureBudget is MaxSignatureChecks; the fuzz targets lower it.
type certSet struct {
	certs     []*x509.Certificate
	byRaw     map[string]int
	bySubject map[string][]int
	// issuer[i] is the index of the issuer of certs[i], noIssuer, or
	// issuerUnknown before it is looked for.
	issuer []int
	// verified maps an issuer name to the certificate that last verified
	// a signature under it.
	verified map[string]int
	// checks counts the signature checks made.
	checks int
}

var signatureBudget = MaxSignatureChecks

const (
	issuerUnknown = -2
	noIssuer      = -1
)

func newCertSet() certSet {
	return certSet{byRaw: map[string]int{}, bySubject: map[string][]int{}, verified: map[string]int{}}
}

// add parses der unless the set holds it already, and returns its index.
func (s *certSet) add(der []byte) (int, error) {
	if i, ok := s.byRaw[string(der)]; ok {
		return i, nil
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return 0, fmt.Errorf("%w: certificate bag: %v", ErrMalformed, err)
	}
	i := len(s.certs)
	s.certs = append(s.certs, c)
	s.issuer = append(s.issuer, issuerUnknown)
	s.byRaw[string(c.Raw)] = i
	s.bySubject[string(c.RawSubject)] = append(s.bySubject[string(c.RawSubject)], i)
	return i, nil
}

// chain returns the DER chain of certs[leaf]: the leaf, then issuers up to
// a self-issued certificate, one without an issuer in the set, a cycle, or
// MaxChainLen certificates.
func (s *certSet) chain(leaf int) ([][]byte, error) {
	chain := [][]byte{s.certs[leaf].Raw}
	seen := map[int]bool{leaf: true}
	for cur := leaf; len(chain) < MaxChainLen; {
		next, err := s.issuerOf(cur)
		if err != nil {
			return nil, err
		}
		if next == noIssuer || seen[next] {
			break
		}
		seen[next] = true
		chain = append(chain, s.certs[next].Raw)
		cur = next
	}
	return chain, nil
}

// issuerOf finds, once, the certificate of the set that signed certs[i].
func (s *certSet) issuerOf(i int) (int, error) {
	if s.issuer[i] != issuerUnknown {
		return s.issuer[i], nil
	}
	c := s.certs[i]
	s.issuer[i] = noIssuer
	if bytes.Equal(c.RawIssuer, c.RawSubject) {
		return noIssuer, nil
	}
	name := string(c.RawIssuer)
	// signed reports whether cand signed c, counting the check.
	signed := func(cand int) (bool, error) {
		if s.checks >= signatureBudget {
			return false, fmt.Errorf("%w: building the chains takes more than %d signature checks", ErrWorkLimit, signatureBudget)
		}
		s.checks++
		if c.CheckSignatureFrom(s.certs[cand]) != nil {
			return false, nil
		}
		s.issuer[i], s.verified[name] = cand, cand
		return true, nil
	}
	last, hasLast := s.verified[name]
	if hasLast && last != i {
		if ok, err := signed(last); ok || err != nil {
			return s.issuer[i], err
		}
	}
	for _, cand := range s.bySubject[name] {
		if cand == i || hasLast && cand == last {
			continue
		}
		if ok, err := signed(cand); ok || err != nil {
			return s.issuer[i], err
		}
	}
	return noIssuer, nil
}

// marshalPKCS12 writes the keystore as PKCS #12 the way JDK 17 keytool
// does: trusted and chain certificates in one PBES2-encrypted safe, each
// key shrouded with PBES2 in a plain safe (left out when there is no key),
// friendlyName and localKeyId attributes, Java's trusted-usage attribute
// on trusted entries, and an HMAC-SHA256 MAC. Every PBKDF2 and the MAC's
// KDF use iterations. It is the package's only PKCS #12 writer, for key
// stores and trust stores alike: go-pkcs12's encoders cannot name a key
// entry (Java would call it "1") nor put trusted entries beside it.
func (ks *KeyStore) marshalPKCS12(password []byte, rnd io.Reader, iterations int) ([]byte, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	var certBags, keyBags []safeBag
	for i, a := range ks.Aliases() {
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
		algo, ct, err := pbes2Encrypt(rnd, password, e.key, iterations)
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
	algo, ct, err := pbes2Encrypt(rnd, password, certSafe, iterations)
	if err != nil {
		return nil, err
	}
	encDER, err := asn1.Marshal(encryptedData{EncryptedContentInfo: encryptedContentInfo{
		ContentType: oidData, ContentEncryptionAlgorithm: algo, EncryptedContent: ct}})
	if err != nil {
		return nil, err
	}
	safes := []contentInfo{{ContentType: oidEncryptedData, Content: explicit(encDER)}}
	if len(keyBags) > 0 {
		keySafe, err := asn1.Marshal(keyBags)
		if err != nil {
			return nil, err
		}
		keyData, err := asn1.Marshal(keySafe)
		if err != nil {
			return nil, err
		}
		safes = append(safes, contentInfo{ContentType: oidData, Content: explicit(keyData)})
	}
	content, err := asn1.Marshal(safes)
	if err != nil {
		return nil, err
	}
	return marshalPFX(content, password, rnd, iterations)
}

// marshalPFX wraps the authenticated safe with an HMAC-SHA256 MAC.
func marshalPFX(content, password []byte, rnd io.Reader, iterations int) ([]byte, error) {
	salt := make([]byte, 16)
	if _, err := io.ReadFull(rnd, salt); err != nil {
		return nil, fmt.Errorf("keystore: reading random salt: %w", err)
	}
	k := newKDF(password)
	defer k.close()
	key, err := k.pkcs12(oidSHA256, sha256.New, 64, salt, iterations, 3, sha256.Size)
	if err != nil {
		return nil, err
	}
	mac := pkcs12MAC(sha256.New, key, content)
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
			Iterations: iterations,
		},
	})
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
