package sqlstore

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"time"

	"github.com/kvmpki/kvmpki/provider"
	"github.com/kvmpki/kvmpki/rootca"
	"github.com/kvmpki/kvmpki/rootca/internal/storecheck"
)

// This file holds how Store encodes values in columns and decodes them,
// the same for every dialect.

// rowScanner is a *sql.Row or *sql.Rows.
type rowScanner interface {
	Scan(dest ...any) error
}

// storedRecord is one row of certificateColumns as stored.
type storedRecord struct {
	serial, subject, dns, ips, notBefore, notAfter string
	role, status                                   int64
	revokedAt                                      sql.NullString
	reason                                         sql.NullInt64
	der                                            []byte
}

// scanRecord reads the certificateColumns of one row.
func scanRecord(row rowScanner) (*storedRecord, error) {
	var r storedRecord
	if err := row.Scan(&r.serial, &r.subject, &r.dns, &r.ips, &r.notBefore, &r.notAfter,
		&r.role, &r.status, &r.revokedAt, &r.reason, &r.der); err != nil {
		return nil, err
	}
	return &r, nil
}

// decode turns the row into a record, or reports the first column that
// does not decode.
func (r *storedRecord) decode() (*provider.CertificateRecord, error) {
	serial, err := provider.ParseSerial(r.serial)
	if err != nil {
		return nil, fmt.Errorf("stored serial: %w", err)
	}
	rec := &provider.CertificateRecord{
		Serial:  serial,
		Subject: r.subject,
		Role:    provider.Role(r.role),
		Status:  provider.CertificateStatus(r.status),
		Raw:     r.der,
	}
	if rec.DNSNames, err = decodeNames(r.dns); err != nil {
		return nil, fmt.Errorf("stored dns_names: %w", err)
	}
	ipText, err := decodeNames(r.ips)
	if err != nil {
		return nil, fmt.Errorf("stored ip_addresses: %w", err)
	}
	for _, s := range ipText {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("stored ip_addresses: invalid IP address %q", s)
		}
		rec.IPAddresses = append(rec.IPAddresses, storecheck.NormalizeIP(ip))
	}
	if rec.NotBefore, err = parseTime(r.notBefore); err != nil {
		return nil, fmt.Errorf("stored not_before: %w", err)
	}
	if rec.NotAfter, err = parseTime(r.notAfter); err != nil {
		return nil, fmt.Errorf("stored not_after: %w", err)
	}
	if r.revokedAt.Valid {
		if rec.RevokedAt, err = parseTime(r.revokedAt.String); err != nil {
			return nil, fmt.Errorf("stored revoked_at: %w", err)
		}
	}
	if r.reason.Valid {
		rec.Reason = provider.RevocationReason(r.reason.Int64)
	}
	return rec, nil
}

func decodeRevocation(hex, revokedAt string, reason int64, notAfter string) (rootca.Revocation, error) {
	serial, err := provider.ParseSerial(hex)
	if err != nil {
		return rootca.Revocation{}, fmt.Errorf("stored serial: %w", err)
	}
	rev := rootca.Revocation{Serial: serial, Reason: provider.RevocationReason(reason)}
	if rev.RevokedAt, err = parseTime(revokedAt); err != nil {
		return rootca.Revocation{}, fmt.Errorf("stored revoked_at: %w", err)
	}
	if rev.NotAfter, err = parseTime(notAfter); err != nil {
		return rootca.Revocation{}, fmt.Errorf("stored not_after: %w", err)
	}
	return rev, nil
}

// timeLayout is how times are stored: UTC, fixed width, nanoseconds, so
// that text order is time order (for years 0 to 9999, which
// validateTime enforces).
const timeLayout = "2006-01-02T15:04:05.000000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(s string) (time.Time, error) { return time.Parse(timeLayout, s) }

// encodeNames encodes a list of strings as a JSON array; nil and empty
// lists both become "[]".
func encodeNames(names []string) (string, error) {
	if len(names) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(names)
	return string(b), err
}

// decodeNames decodes a JSON array of strings; "[]" yields nil.
func decodeNames(s string) ([]string, error) {
	var names []string
	if err := json.Unmarshal([]byte(s), &names); err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, nil
	}
	return names, nil
}
