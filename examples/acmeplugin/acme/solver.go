package acme

import (
	"context"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/crypto/acme"
)

// Solver proves control of an identifier by answering one kind of ACME
// challenge (RFC 8555 section 8).
type Solver interface {
	// ChallengeType is the challenge type it answers, such as "http-01".
	ChallengeType() string
	// Present makes the answer to chal, for the account of client,
	// available to the CA and returns a function that withdraws it.
	Present(ctx context.Context, client *acme.Client, id acme.AuthzID, chal *acme.Challenge) (withdraw func(), err error)
}

// HTTP01Solver answers http-01 challenges: it is an http.Handler to serve
// on port 80 of every name the provider issues for, at
// /.well-known/acme-challenge/. The zero value is ready to use.
type HTTP01Solver struct {
	mu     sync.Mutex
	tokens map[string]string // token -> key authorization
}

var _ Solver = (*HTTP01Solver)(nil)

// ChallengeType returns "http-01".
func (s *HTTP01Solver) ChallengeType() string { return "http-01" }

// Present serves the key authorization of chal until withdraw is called.
func (s *HTTP01Solver) Present(_ context.Context, client *acme.Client, _ acme.AuthzID, chal *acme.Challenge) (func(), error) {
	body, err := client.HTTP01ChallengeResponse(chal.Token)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.tokens == nil {
		s.tokens = make(map[string]string)
	}
	s.tokens[chal.Token] = body
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.tokens, chal.Token)
		s.mu.Unlock()
	}, nil
}

// ServeHTTP answers GET /.well-known/acme-challenge/TOKEN for the tokens
// presented now, and 404 otherwise.
func (s *HTTP01Solver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.URL.Path, http01Prefix)
	if !ok || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	body, ok := s.tokens[token]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(body))
}
