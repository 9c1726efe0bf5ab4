package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A console token is what the platform hands a user's browser to open one
// VM's console: "v1." followed by the base64url (unpadded) encoding of a
// 12-byte nonce and the AES-256-GCM sealing of a JSON payload (target
// host, port and TLS server name, VNC password, issue and expiry times, a
// random identifier). The AES key is HMAC-SHA256(token secret, tokenKDF):
// the secret never keys anything directly, and GCM authenticates the
// whole token, so a changed byte is refused like a token minted with
// another secret. The payload is sealed rather than only signed because
// it carries the VM's VNC password, which the browser must not learn.
// CloudStack encrypts its console tokens with AES-CBC, which has no
// integrity check; tokens here are also short-lived and single-use.
const (
	tokenPrefix = "v1."
	tokenKDF    = "kvmpki consoleproxy token v1"
	// maxTokenLen bounds what Open decodes: a token holds a host name,
	// a server name (each at most 253 bytes) and a password, far less.
	maxTokenLen = 2048
	// minSecretLen is the least number of bytes of the token key file.
	minSecretLen = 32
	// maxTokenTTL is the longest lifetime a token may claim, and
	// clockSkew how far in the future its issue time may lie.
	maxTokenTTL = 10 * time.Minute
	clockSkew   = 30 * time.Second
	// maxUsedTokens bounds the single-use record; tokens expire within
	// maxTokenTTL, so it holds at most that window's tokens.
	maxUsedTokens = 1 << 16
)

var (
	// errTokenInvalid is a token that is malformed, was minted with
	// another secret or was altered.
	errTokenInvalid = errors.New("consoleproxy: invalid console token")
	// errTokenExpired is an authentic token past its expiry, or one
	// claiming a lifetime beyond maxTokenTTL or an issue time in the
	// future.
	errTokenExpired = errors.New("consoleproxy: console token expired")
	// errTokenUsed is an authentic token presented a second time.
	errTokenUsed = errors.New("consoleproxy: console token already used")
)

// Target is the VNC server one token opens: the hypervisor's address and
// the name its certificate must carry.
type Target struct {
	Host       string `json:"h"`
	Port       int    `json:"p"`
	ServerName string `json:"sn"`
	// Password is the VM's VNC password (QEMU's X509Vnc inner
	// authentication); empty for a server that asks for none.
	Password string `json:"pw,omitempty"`
}

// Addr returns host:port.
func (t Target) Addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

func (t Target) validate() error {
	switch {
	case t.Host == "" || len(t.Host) > 253:
		return errors.New("host must be 1 to 253 bytes")
	case t.Port < 1 || t.Port > 65535:
		return fmt.Errorf("port %d out of range", t.Port)
	case t.ServerName == "" || len(t.ServerName) > 253:
		return errors.New("server name must be 1 to 253 bytes")
	case len(t.Password) > 64:
		return errors.New("password longer than 64 bytes")
	}
	return nil
}

// tokenPayload is the sealed content of a token.
type tokenPayload struct {
	Target
	IssuedAt  int64  `json:"iat"`
	ExpiresAt int64  `json:"exp"`
	ID        string `json:"id"`
}

// Tokens mints and opens console tokens with one secret, and remembers
// the tokens already used until they expire.
type Tokens struct {
	aead cipher.AEAD

	mu   sync.Mutex
	used map[string]int64 // token ID -> expiry (Unix seconds)
}

// NewTokens derives the token key from secret, which must hold at least
// 32 bytes.
func NewTokens(secret []byte) (*Tokens, error) {
	if len(secret) < minSecretLen {
		return nil, fmt.Errorf("consoleproxy: token secret has %d bytes, want at least %d", len(secret), minSecretLen)
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(tokenKDF))
	key := mac.Sum(nil)
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("consoleproxy: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("consoleproxy: %w", err)
	}
	return &Tokens{aead: aead, used: make(map[string]int64)}, nil
}

// LoadTokens reads the token secret from path, a file that only its
// owner may read (mode 0600 or stricter), and calls NewTokens.
func LoadTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("consoleproxy: token key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("consoleproxy: token key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("consoleproxy: token key %s has mode %v: others may read it (want 0600)", path, fi.Mode().Perm())
	}
	if fi.Size() > 4096 {
		return nil, fmt.Errorf("consoleproxy: token key %s is larger than 4096 bytes", path)
	}
	secret := make([]byte, fi.Size())
	defer clear(secret)
	if _, err := f.ReadAt(secret, 0); err != nil {
		return nil, fmt.Errorf("consoleproxy: token key: %w", err)
	}
	return NewTokens(secret)
}

// Mint returns a token for target, valid from now for ttl (at most 10
// minutes).
func (k *Tokens) Mint(target Target, now time.Time, ttl time.Duration) (string, error) {
	if err := target.validate(); err != nil {
		return "", fmt.Errorf("consoleproxy: minting a token: %w", err)
	}
	if ttl <= 0 || ttl > maxTokenTTL {
		return "", fmt.Errorf("consoleproxy: minting a token: lifetime %v not in (0, %v]", ttl, maxTokenTTL)
	}
	var id [16]byte
	rand.Read(id[:])
	p := tokenPayload{Target: target, IssuedAt: now.Unix(), ExpiresAt: now.Add(ttl).Unix(), ID: hex.EncodeToString(id[:])}
	plain, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("consoleproxy: minting a token: %w", err)
	}
	defer clear(plain)
	sealed := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plain)+k.aead.Overhead())
	rand.Read(sealed)
	sealed = k.aead.Seal(sealed, sealed, plain, []byte(tokenPrefix))
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// parse authenticates token and checks its times against now, without
// recording its use.
func (k *Tokens) parse(token string, now time.Time) (tokenPayload, error) {
	var p tokenPayload
	if len(token) > maxTokenLen {
		return p, fmt.Errorf("%w: longer than %d bytes", errTokenInvalid, maxTokenLen)
	}
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return p, fmt.Errorf("%w: no %q prefix", errTokenInvalid, tokenPrefix)
	}
	sealed, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return p, fmt.Errorf("%w: not base64url", errTokenInvalid)
	}
	ns := k.aead.NonceSize()
	if len(sealed) < ns+k.aead.Overhead() {
		return p, fmt.Errorf("%w: too short", errTokenInvalid)
	}
	plain, err := k.aead.Open(nil, sealed[:ns], sealed[ns:], []byte(tokenPrefix))
	if err != nil {
		return p, fmt.Errorf("%w: not minted with this proxy's key, or altered", errTokenInvalid)
	}
	defer clear(plain)
	if err := json.Unmarshal(plain, &p); err != nil {
		return tokenPayload{}, fmt.Errorf("%w: payload: %v", errTokenInvalid, err)
	}
	if err := p.Target.validate(); err != nil {
		return tokenPayload{}, fmt.Errorf("%w: %v", errTokenInvalid, err)
	}
	if len(p.ID) != 32 {
		return tokenPayload{}, fmt.Errorf("%w: bad identifier", errTokenInvalid)
	}
	switch {
	case p.ExpiresAt-p.IssuedAt > int64(maxTokenTTL/time.Second) || p.ExpiresAt < p.IssuedAt:
		return tokenPayload{}, fmt.Errorf("%w: lifetime beyond %v", errTokenExpired, maxTokenTTL)
	case time.Unix(p.IssuedAt, 0).After(now.Add(clockSkew)):
		return tokenPayload{}, fmt.Errorf("%w: issued in the future", errTokenExpired)
	case !now.Before(time.Unix(p.ExpiresAt, 0)):
		return tokenPayload{}, fmt.Errorf("%w at %s", errTokenExpired, time.Unix(p.ExpiresAt, 0).UTC().Format(time.RFC3339))
	}
	return p, nil
}

// Open authenticates token, checks that it is current at now and has not
// been used, records its use, and returns its target. Nothing is
// contacted: the caller dials the target only after Open succeeded.
func (k *Tokens) Open(token string, now time.Time) (Target, error) {
	p, err := k.parse(token, now)
	if err != nil {
		return Target{}, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.used[p.ID]; ok {
		return Target{}, errTokenUsed
	}
	if len(k.used) >= maxUsedTokens {
		for id, exp := range k.used {
			if exp <= now.Unix() {
				delete(k.used, id)
			}
		}
		if len(k.used) >= maxUsedTokens {
			return Target{}, errors.New("consoleproxy: too many console tokens in use; retry later")
		}
	}
	k.used[p.ID] = p.ExpiresAt
	return p.Target, nil
}
