package main

import (
	"encoding/base64"
	"testing"
	"time"
)

// FuzzParseToken feeds arbitrary strings to the token parser, seeded from
// testdata/fuzz/FuzzParseToken: tokens minted with fuzzSecret at fuzzNow
// (current, expired, for a target with an IPv6 host) and broken ones. A
// token the parser accepts must be current and name a valid target.
func FuzzParseToken(f *testing.F) {
	k := newTestTokens(f)
	f.Fuzz(func(t *testing.T, token string) {
		p, err := k.parse(token, fuzzNow)
		if err != nil {
			if p != (tokenPayload{}) {
				t.Fatalf("payload %+v returned with error %v", p, err)
			}
			return
		}
		if err := p.Target.validate(); err != nil {
			t.Fatalf("accepted a token with an invalid target: %v", err)
		}
		if !fuzzNow.Before(time.Unix(p.ExpiresAt, 0)) || p.ExpiresAt-p.IssuedAt > int64(maxTokenTTL/time.Second) {
			t.Fatalf("accepted a token that is not current: %+v", p)
		}
	})
}

// FuzzTokenPayload seals arbitrary payloads with the token key, so that
// the JSON decoding and checks behind the authentication are fuzzed too
// (FuzzParseToken's mutations almost never pass AES-GCM). Seeds are in
// testdata/fuzz/FuzzTokenPayload.
func FuzzTokenPayload(f *testing.F) {
	k := newTestTokens(f)
	f.Fuzz(func(t *testing.T, plain []byte) {
		sealed := make([]byte, k.aead.NonceSize())
		sealed = k.aead.Seal(sealed, sealed, plain, []byte(tokenPrefix))
		p, err := k.parse(tokenPrefix+base64.RawURLEncoding.EncodeToString(sealed), fuzzNow)
		if err != nil {
			return
		}
		if err := p.Target.validate(); err != nil {
			t.Fatalf("accepted a payload with an invalid target: %v", err)
		}
		if !fuzzNow.Before(time.Unix(p.ExpiresAt, 0)) || p.ExpiresAt-p.IssuedAt > int64(maxTokenTTL/time.Second) ||
			time.Unix(p.IssuedAt, 0).After(fuzzNow.Add(clockSkew)) {
			t.Fatalf("accepted a payload that is not current: %+v", p)
		}
	})
}
