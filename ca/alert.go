package ca

import (
	"fmt"
	"time"
)

// AlertKind says what an [Alert] is about.
type AlertKind int

// The kinds of alerts the background task ([Background]) raises.
const (
	// AlertExpiring: a host certificate is in its alert window and is not
	// renewed, because automatic renewal is off, the platform knows no
	// host for it, or its CA ends too soon for a renewal to help
	// (CloudStack's "Certificate expiring soon"). Raised at most once a
	// day per host.
	AlertExpiring AlertKind = iota + 1
	// AlertRenewalFailed: a renewal attempt failed (Err says why); it is
	// retried with backoff. Also raised when the new certificate was
	// installed but the host's services could not be reloaded.
	AlertRenewalFailed
	// AlertCAExpiring: a CA certificate nears its end (less than
	// BackgroundOptions.CAAlertPeriod left): start a CA rotation. Raised
	// at most once a day per CA certificate.
	AlertCAExpiring
	// AlertManagementRenewalFailed: renewing the management server's own
	// certificate failed; it is retried at every wake.
	AlertManagementRenewalFailed
	// AlertScanFailed: reading the provider's inventory failed; the scan
	// is retried at the next wake.
	AlertScanFailed
)

func (k AlertKind) String() string {
	switch k {
	case AlertExpiring:
		return "certificate expiring"
	case AlertRenewalFailed:
		return "renewal failed"
	case AlertCAExpiring:
		return "CA expiring"
	case AlertManagementRenewalFailed:
		return "management certificate renewal failed"
	case AlertScanFailed:
		return "inventory scan failed"
	}
	return fmt.Sprintf("AlertKind(%d)", int(k))
}

// Alert is raised by the background task to BackgroundOptions.Alert and
// logged.
type Alert struct {
	Kind AlertKind
	// Host names the host (ProvisionRequest.Name, or the certificate's
	// first DNS name, address or subject when the platform knows no
	// host); empty for CA, management and scan alerts.
	Host string
	// Serial is the certificate's serial in hexadecimal, as
	// provider.FormatSerial writes it; empty for a scan alert.
	Serial string
	// Subject is the certificate's subject (RFC 4514).
	Subject string
	// NotAfter is the certificate's end.
	NotAfter time.Time
	// Err is the cause: why a renewal or scan failed, or why a
	// certificate is only alerted. Nil for an expiring certificate with
	// automatic renewal off.
	Err error
}

func (a *Alert) String() string {
	s := "ca: " + a.Kind.String()
	if a.Host != "" {
		s += " for " + a.Host
	}
	if a.Serial != "" {
		s += fmt.Sprintf(" (serial %s, not after %s)", a.Serial, a.NotAfter.UTC().Format(time.RFC3339))
	}
	if a.Err != nil {
		s += ": " + a.Err.Error()
	}
	return s
}
