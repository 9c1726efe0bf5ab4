package keystore

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPropertiesLookup(t *testing.T) {
	data := readFile(t, filepath.Join("testdata", PropertiesFile))
	p, err := ParseProperties(data)
	require.NoError(t, err)
	assert.Equal(t, data, p.Bytes(), "unchanged file must round-trip byte for byte")
	for _, tc := range []struct {
		key, want string
		ok        bool
	}{
		{"host", "192.0.2.1", true},
		{"port", "8250", true},
		{"cluster", "1", true},
		{"long.value", "first part second part", true},
		{"escaped key", "tab\there é", true},
		{"pod", "1", true},
		{"# CloudStack agent configuration", "", false},
		{"a", "", false},
		{"keystore.passphrase", "", false},
	} {
		t.Run(tc.key, func(t *testing.T) {
			v, ok := p.Lookup(tc.key)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, string(v))
		})
	}
}

func TestPropertiesSet(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"append", "a=1\n# c\n", "a=1\n# c\nkeystore.passphrase=NEW\n"},
		{"append without final newline", "a=1", "a=1\nkeystore.passphrase=NEW\n"},
		{"empty file", "", "keystore.passphrase=NEW\n"},
		{"replace empty value keeps CRLF", "a=1\r\nkeystore.passphrase=\r\nb=2\r\n", "a=1\r\nkeystore.passphrase=NEW\r\nb=2\r\n"},
		{"replace last occurrence", "keystore.passphrase=x\nkeystore.passphrase = y\n", "keystore.passphrase=x\nkeystore.passphrase=NEW\n"},
		{"replace continued line", "keystore.passphrase=a\\\n  b\nz=1", "keystore.passphrase=NEW\nz=1"},
		{"commented key is not the key", "#keystore.passphrase=old\n", "#keystore.passphrase=old\nkeystore.passphrase=NEW\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseProperties([]byte(tc.in))
			require.NoError(t, err)
			require.NoError(t, p.Set(PassphraseProperty, []byte("NEW")))
			assert.Equal(t, tc.want, string(p.Bytes()))
			again, err := ParseProperties(p.Bytes())
			require.NoError(t, err)
			v, ok := again.Lookup(PassphraseProperty)
			assert.True(t, ok)
			assert.Equal(t, "NEW", string(v))
		})
	}
}

func TestPropertiesEscapesOnSet(t *testing.T) {
	p, err := ParseProperties(nil)
	require.NoError(t, err)
	require.NoError(t, p.Set("k", []byte(`#a\b=c`)))
	again, err := ParseProperties(p.Bytes())
	require.NoError(t, err)
	v, _ := again.Lookup("k")
	assert.Equal(t, `#a\b=c`, string(v))
	assert.Error(t, p.Set("k", []byte("new\nline")))
}

func TestPropertiesErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want error
	}{
		{"bad unicode escape", "a=\\u12zz\n", ErrMalformedProperties},
		{"short unicode escape", "a=\\u12", ErrMalformedProperties},
		{"too large", string(make([]byte, MaxPropertiesSize+1)), ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseProperties([]byte(tc.in))
			assert.ErrorIs(t, err, tc.want)
		})
	}
}
