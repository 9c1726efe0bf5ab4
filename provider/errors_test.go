package provider_test

import (
	"errors"
	"io"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/internal/pkicore"
	"github.com/kvmpki/kvmpki/provider"
)

func TestRequestError(t *testing.T) {
	cause := io.ErrUnexpectedEOF
	tests := []struct {
		name string
		err  *provider.RequestError
		msg  string
	}{
		{name: "bare", err: &provider.RequestError{}, msg: "provider: invalid request"},
		{name: "field", err: &provider.RequestError{Field: "dns"}, msg: "provider: invalid request: dns"},
		{name: "field and reason", err: &provider.RequestError{Field: "validity", Reason: "outlives the CA"}, msg: "provider: invalid request: validity: outlives the CA"},
		{name: "with cause", err: &provider.RequestError{Field: "csr", Reason: "malformed", Err: cause}, msg: "provider: invalid request: csr: malformed: unexpected EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.msg, tc.err.Error())
			assert.ErrorIs(t, tc.err, provider.ErrInvalidRequest)
			assert.Equal(t, tc.err.Err != nil, errors.Is(tc.err, cause))
			assert.NotErrorIs(t, tc.err, provider.ErrNotFound)

			wrapped := errors.Join(errors.New("rootca: issue"), tc.err)
			var re *provider.RequestError
			require.ErrorAs(t, wrapped, &re)
			assert.Same(t, tc.err, re)
			assert.ErrorIs(t, wrapped, provider.ErrInvalidRequest)
		})
	}
}

func TestRevokedError(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.FixedZone("CEST", 2*3600))
	err := &provider.RevokedError{Serial: big.NewInt(0xabc), Reason: provider.ReasonKeyCompromise, RevokedAt: at}
	assert.Equal(t, "provider: certificate serial abc revoked at 2026-05-01T10:00:00Z (reason keyCompromise)", err.Error())

	// The way a PeerVerifier reports it: wrapped in a VerifyError.
	var chain error = &provider.VerifyError{Subject: "CN=h1", Serial: err.Serial, Err: err}
	assert.ErrorIs(t, chain, provider.ErrRevoked)
	assert.NotErrorIs(t, chain, provider.ErrExpired)
	var re *provider.RevokedError
	require.ErrorAs(t, chain, &re)
	assert.Equal(t, provider.ReasonKeyCompromise, re.Reason)
	var ve *provider.VerifyError
	require.ErrorAs(t, chain, &ve)
	assert.Equal(t, "CN=h1", ve.Subject)
}

func TestVerifyError(t *testing.T) {
	tests := []struct {
		name   string
		err    *provider.VerifyError
		target error
		msg    string
	}{
		{
			name:   "no certificate",
			err:    &provider.VerifyError{Err: provider.ErrNoCertificate},
			target: provider.ErrNoCertificate,
			msg:    "provider: peer refused: peer presented no certificate",
		},
		{
			name:   "expired",
			err:    &provider.VerifyError{Subject: "CN=h1", Serial: big.NewInt(255), Err: provider.ErrExpired},
			target: provider.ErrExpired,
			msg:    `provider: peer certificate "CN=h1" (serial ff) refused: certificate expired or not yet valid`,
		},
		{
			name:   "wrapped reason",
			err:    &provider.VerifyError{Subject: "CN=h1", Serial: big.NewInt(1), Err: errors.Join(provider.ErrUnknownAuthority, errors.New("x509: certificate signed by unknown authority"))},
			target: provider.ErrUnknownAuthority,
			msg:    "provider: peer certificate \"CN=h1\" (serial 1) refused: certificate not issued by a trusted CA\nx509: certificate signed by unknown authority",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.msg, tc.err.Error())
			assert.ErrorIs(t, tc.err, tc.target)
			assert.NotErrorIs(t, tc.err, provider.ErrRevoked)
			assert.Equal(t, tc.err.Err, errors.Unwrap(tc.err))
		})
	}
}

func TestVerifyErrorWithoutReason(t *testing.T) {
	err := &provider.VerifyError{Subject: "CN=h1", Serial: big.NewInt(1)}
	assert.NotPanics(t, func() { _ = err.Error() })
}

// The certificate sentinels are shared with every kvmpki package, so their
// text carries no package prefix; the provider's own one does.
func TestSentinelsShared(t *testing.T) {
	assert.Same(t, pkicore.ErrRevoked, provider.ErrRevoked)
	assert.Same(t, pkicore.ErrNoPeerCertificate, provider.ErrNoCertificate)
	assert.NotContains(t, provider.ErrRevoked.Error(), ":")
	assert.True(t, strings.HasPrefix(provider.ErrUnknownProvider.Error(), "provider: "))
}

func TestSentinelsDistinct(t *testing.T) {
	sentinels := []error{
		provider.ErrRevoked, provider.ErrExpired, provider.ErrUnknownAuthority,
		provider.ErrNoCertificate, provider.ErrIncompatibleUsage, provider.ErrNameMismatch,
		provider.ErrNotFound, provider.ErrAlreadyRevoked, provider.ErrInvalidRequest,
		provider.ErrUnknownProvider,
	}
	for i, a := range sentinels {
		for j, b := range sentinels {
			assert.Equal(t, i == j, errors.Is(a, b), "%v vs %v", a, b)
		}
	}
}

func TestFormatSerial(t *testing.T) {
	tests := []struct {
		name   string
		serial *big.Int
		want   string
	}{
		{name: "nil", serial: nil, want: "<nil>"},
		{name: "one", serial: big.NewInt(1), want: "1"},
		{name: "lower case", serial: big.NewInt(0xDEADBEEF), want: "deadbeef"},
		{name: "20 octets", serial: new(big.Int).SetBytes([]byte{0x7f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}), want: "7f0102030405060708090a0b0c0d0e0f10111213"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, provider.FormatSerial(tc.serial))
		})
	}
}

func TestParseSerial(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string // hexadecimal; empty when an error is expected
		// knownBug, if set, skips the case: it describes a defect of
		// ParseSerial reported to the package owner.
		knownBug string
	}{
		{name: "plain", input: "deadbeef", want: "deadbeef"},
		{name: "upper case", input: "DEADBEEF", want: "deadbeef"},
		{name: "openssl colons", input: "de:ad:be:ef", want: "deadbeef"},
		{name: "0x prefix", input: "0xdeadbeef", want: "deadbeef"},
		{name: "0X prefix", input: "0XDEADBEEF", want: "deadbeef"},
		{name: "0x and colons", input: "0x01:00", want: "100"},
		{name: "leading zeros", input: "0001", want: "1"},
		{name: "40 digits", input: strings.Repeat("7f", 20), want: strings.Repeat("7f", 20)},
		{name: "40 digits with colons", input: strings.TrimSuffix(strings.Repeat("7f:", 20), ":"), want: strings.Repeat("7f", 20)},
		{name: "empty", input: ""},
		{name: "only colons", input: ":::"},
		{name: "only prefix", input: "0x"},
		{name: "prefix and colon", input: "0x:"},
		{name: "41 digits", input: "1" + strings.Repeat("00", 20)},
		{name: "non-hex", input: "xyz"},
		{name: "non-hex tail", input: "12g"},
		{name: "space", input: "12 34"},
		{name: "zero", input: "0"},
		{name: "zeros", input: "00:00"},
		{name: "negative", input: "-1"},
		{name: "double prefix", input: "0x0x1"},
		{name: "decimal looking", input: "1_000"},
		{name: "plus sign", input: "+1"},
		{name: "plus sign after prefix", input: "0x+1"},
		{name: "21 octets", input: "80" + strings.Repeat("00", 19)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.knownBug != "" {
				t.Skip("known bug: " + tc.knownBug)
			}
			got, err := provider.ParseSerial(tc.input)
			if tc.want == "" {
				require.Error(t, err)
				assert.Nil(t, got)
				assert.True(t, strings.HasPrefix(err.Error(), "provider: serial "), err.Error())
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got.Text(16))
		})
	}
}

func TestSerialRoundTrip(t *testing.T) {
	max20 := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 159), big.NewInt(1))
	serials := []*big.Int{big.NewInt(1), big.NewInt(0xff), big.NewInt(0x100), max20}
	for range 20 {
		serials = append(serials, randomSerial(t))
	}
	for _, s := range serials {
		got, err := provider.ParseSerial(provider.FormatSerial(s))
		require.NoError(t, err, s)
		assert.Zero(t, s.Cmp(got), "%s round trips to %s", s, got)
	}
}
