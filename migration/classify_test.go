package migration_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kvmpki/kvmpki/migration"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		text   string
		reason error
		host   string
		path   string
	}{
		{"QEMU name mismatch", "error: operation failed: job 'migration out' failed: Certificate does not match the hostname 127.0.0.4",
			migration.ErrNameMismatch, "127.0.0.4", ""},
		{"NBD name mismatch", "unable to execute QEMU command 'blockdev-add': Certificate does not match the hostname kvm2.example.org.",
			migration.ErrNameMismatch, "kvm2.example.org", ""},
		{"libvirt client name mismatch", "error: Certificate [session] owner does not match the hostname 127.0.0.1",
			migration.ErrNameMismatch, "127.0.0.1", ""},
		{"no client certificate, destination's log", "qemu-system-x86_64: Verify failed: No certificate was found.",
			migration.ErrClientCertificateMissing, "", ""},
		{"destination closed the TLS channel", "job 'migration out' failed: Cannot write to TLS channel: Input/output error",
			migration.ErrClientRefused, "", ""},
		{"non-properly terminated", "Cannot read from TLS channel: The TLS connection was non-properly terminated.",
			migration.ErrClientRefused, "", ""},
		{"libvirt confirmation", "error: Unable to read TLS confirmation: Input/output error", migration.ErrClientRefused, "", ""},
		{"credentials", "unable to execute QEMU command 'object-add': Unable to access credentials /etc/pki/qemu/ca-cert.pem: No such file or directory",
			migration.ErrCredentialsUnreadable, "", "/etc/pki/qemu/ca-cert.pem"},
		{"cert dir missing", "migrate_tls_x509_cert_dir directory '/etc/pki/libvirt-migrate' does not exist",
			migration.ErrCredentialsUnreadable, "", "/etc/pki/libvirt-migrate"},
		{"libvirt CA file", "Cannot read CA certificate '/etc/pki/CA/cacert.pem': No such file or directory",
			migration.ErrCredentialsUnreadable, "", "/etc/pki/CA/cacert.pem"},
		{"DN list", "authentication failed: Client's Distinguished Name is not on the list of allowed clients (tls_allowed_dn_list).",
			migration.ErrDNNotAllowed, "", ""},
		{"TLS forced", "this libvirtd instance allows migration only with VIR_MIGRATE_TLS flag", migration.ErrTLSRequired, "", ""},
		{"same host", "internal error: Attempt to migrate guest to the same host 8c3a0f6e", migration.ErrSameHost, "", ""},
		{"revoked", "Verify failed: The certificate has been revoked.", migration.ErrRevoked, "", ""},
		{"expired", "The certificate has expired", migration.ErrExpired, "", ""},
		{"unknown CA", "Verify failed: The certificate issuer is unknown", migration.ErrUnknownAuthority, "", ""},
		{"refused", "unable to connect to server at '10.0.0.2:16514': Connection refused", migration.ErrPortClosed, "", ""},
		{"no route", "drive-mirror: Failed to connect socket: No route to host", migration.ErrUnreachable, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := migration.Classify(tc.text)
			require.NotNil(t, e)
			assert.ErrorIs(t, e, tc.reason)
			assert.Equal(t, tc.host, e.Name)
			assert.Equal(t, tc.path, e.Path)
			assert.Equal(t, tc.text, e.Text)
			assert.True(t, strings.HasPrefix(e.Error(), "migration: "), e.Error())
		})
	}
	assert.Nil(t, migration.Classify("error: operation failed: domain is no longer running"))
	assert.Nil(t, migration.Classify(""))
}

func TestClassifyError(t *testing.T) {
	assert.NoError(t, migration.ClassifyError(nil))
	plain := errors.New("something else")
	assert.Same(t, plain, migration.ClassifyError(plain))

	cause := fmt.Errorf("virsh: exit status 1: %w", errors.New("error: Certificate does not match the hostname 10.0.0.2"))
	err := migration.ClassifyError(cause)
	assert.ErrorIs(t, err, migration.ErrNameMismatch)
	assert.ErrorIs(t, err, cause)
	var e *migration.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "10.0.0.2", e.Name)
	assert.Same(t, err, migration.ClassifyError(err), "classifying twice changes nothing")
}

func TestClassifyBoundsInput(t *testing.T) {
	long := strings.Repeat("x", 100<<10) + "Certificate does not match the hostname h"
	assert.Nil(t, migration.Classify(long), "text past 64 KiB is not read")
	name := strings.Repeat("a", 5000)
	e := migration.Classify("Certificate does not match the hostname " + name)
	require.NotNil(t, e)
	assert.Len(t, e.Name, 1024)
	assert.Less(t, len(e.Error()), 1500)
}

// FuzzClassify: no panic; a recognised text unwraps to a sentinel, and
// what it extracts comes from the text, bounded.
func FuzzClassify(f *testing.F) {
	for _, s := range readLines(f, "testdata/errors.txt") {
		f.Add(s)
	}
	sentinels := []error{migration.ErrNameMismatch, migration.ErrUnknownAuthority, migration.ErrRevoked, migration.ErrExpired,
		migration.ErrClientCertificateMissing, migration.ErrClientRefused, migration.ErrCredentialsUnreadable,
		migration.ErrDNNotAllowed, migration.ErrTLSRequired, migration.ErrSameHost, migration.ErrPortClosed, migration.ErrUnreachable}
	f.Fuzz(func(t *testing.T, s string) {
		e := migration.Classify(s)
		if e == nil {
			return
		}
		found := false
		for _, sentinel := range sentinels {
			found = found || errors.Is(e, sentinel)
		}
		if !found {
			t.Fatalf("%q classified as %v, not a sentinel", s, e.Err)
		}
		for _, v := range []string{e.Name, e.Path} {
			if len(v) > 1024 || !strings.Contains(s, v) {
				t.Fatalf("extracted %q from %q", v, s)
			}
		}
		if !strings.HasPrefix(e.Error(), "migration: ") {
			t.Fatalf("message %q", e.Error())
		}
	})
}
