package main

import (
	"bufio"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// allParams is every parameter any command takes.
var allParams = map[string]bool{
	"csr": true, "domain": true, "ipaddress": true, "duration": true, "serial": true,
	"cn": true, "provider": true, "hostid": true, "name": true,
}

// TestParseParams: query and JSON body decode to the same parameters;
// lists and numbers are accepted only where CloudStack has them.
func TestParseParams(t *testing.T) {
	tests := []struct {
		name, method, query, body string
		want                      map[string]string
		status                    int
	}{
		{name: "query", method: "GET", query: "Domain=a,b&duration=3", want: map[string]string{"domain": "a,b", "duration": "3"}},
		{name: "JSON lists and number", method: "POST", body: `{"domain":["a","b"],"ipaddress":["192.0.2.1"],"duration":3}`,
			want: map[string]string{"domain": "a,b", "ipaddress": "192.0.2.1", "duration": "3"}},
		{name: "JSON strings", method: "POST", body: `{"DOMAIN":"a,b","duration":"3"}`, want: map[string]string{"domain": "a,b", "duration": "3"}},
		{name: "empty POST body", method: "POST", query: "hostid=h", want: map[string]string{"hostid": "h"}},
		{name: "GET ignores a body", method: "GET", body: `{"x":1}`, want: map[string]string{}},
		{name: "list element with a comma", method: "POST", body: `{"domain":["a,b"]}`, status: 400},
		{name: "list element null", method: "POST", body: `{"domain":[null]}`, status: 400},
		{name: "number for a string", method: "POST", body: `{"hostid":1}`, status: 400},
		{name: "object value", method: "POST", body: `{"duration":{}}`, status: 400},
		{name: "unknown", method: "GET", query: "apikey=x", status: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, e := parseParams(tc.method, tc.query, "application/json", []byte(tc.body), allParams)
			if tc.status != 0 {
				require.NotNil(t, e)
				assert.Equal(t, tc.status, e.Status)
				return
			}
			require.Nil(t, e)
			assert.Equal(t, tc.want, got)
		})
	}
}

// FuzzParseParams: no input panics; an accepted one yields only allowed,
// lower-case names; a refused one is a 4xx.
func FuzzParseParams(f *testing.F) {
	bodies, err := filepath.Glob(filepath.Join("testdata", "params", "*.json"))
	require.NoError(f, err)
	require.NotEmpty(f, bodies)
	for _, name := range bodies {
		b, err := os.ReadFile(name)
		require.NoError(f, err)
		f.Add("POST", "", "application/json", b)
	}
	qf, err := os.Open(filepath.Join("testdata", "queries.txt"))
	require.NoError(f, err)
	defer qf.Close()
	sc := bufio.NewScanner(qf)
	for sc.Scan() {
		f.Add("GET", sc.Text(), "", []byte(nil))
		f.Add("POST", sc.Text(), "text/plain", []byte(`{}`))
	}
	require.NoError(f, sc.Err())

	f.Fuzz(func(t *testing.T, method, query, contentType string, body []byte) {
		got, e := parseParams(method, query, contentType, body, allParams)
		if e != nil {
			if e.Status < 400 || e.Status > 499 {
				t.Fatalf("status %d for a client's input", e.Status)
			}
			if len(e.Text) > 512 {
				t.Fatalf("error text of %d bytes", len(e.Text))
			}
			return
		}
		for k := range got {
			if !allParams[k] || k != strings.ToLower(k) {
				t.Fatalf("parameter %q accepted", k)
			}
		}
		if method != http.MethodPost && len(got) > 0 && query == "" {
			t.Fatalf("parameters without a query: %v", got)
		}
	})
}
