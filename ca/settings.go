package ca

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/kvmpki/kvmpki/provider"
)

// Settings configures a [Manager]. Each field maps one of CloudStack's
// ca.framework.* keys; the zero value of every field is the documented
// default, and [New] refuses a bad value with a *[SettingError] naming the
// setting.
//
// Settings must not be modified after it is passed to New.
type Settings struct {
	// Provider is the name of the provider to open from the registry
	// (ca.framework.provider.plugin). If empty, "root". It can be changed
	// later with [Manager.SetProvider], without a restart.
	Provider string

	// KeyAlgorithm and KeySize choose the key generated for an issue
	// request without a CSR, and for the management server's own
	// certificate (ca.framework.cert.keysize; CloudStack generates RSA
	// only). Zero values let the provider choose (rootca: RSA-2048) and,
	// for the management certificate, mean ECDSA P-256. RSA sizes must
	// be 2048 to 8192 bits, ECDSA sizes 256, 384 or 521.
	KeyAlgorithm provider.KeyAlgorithm
	KeySize      int

	// Validity is the leaf validity when a request names none
	// (ca.framework.cert.validity.period). If zero, 365 days. It must
	// be longer than ExpiryAlertPeriod and at most MaxValidity.
	Validity time.Duration

	// MaxValidity caps the validity an issue request may ask for: longer
	// requests are refused (CloudStack's issueCertificate has no upper
	// bound). If zero, Validity. At most ten years.
	MaxValidity time.Duration

	// DisableAutomaticRenewal turns automatic renewal off
	// (ca.framework.cert.automatic.renewal=false): certificates that
	// enter the alert window are alerted, not renewed. The zero value
	// renews, as CloudStack does by default. The management server's own
	// certificate is always renewed.
	DisableAutomaticRenewal bool

	// BackgroundInterval is how often the background task wakes
	// (ca.framework.background.task.delay). If zero, one hour. At least
	// one minute.
	BackgroundInterval time.Duration

	// ExpiryAlertPeriod is the renew-or-alert window before a
	// certificate's NotAfter (ca.framework.cert.expiry.alert.period). If
	// zero, 15 days.
	ExpiryAlertPeriod time.Duration

	// ManagementSAN is the DNS name that marks a management server's
	// certificate (ca.framework.cert.management.custom.san). If empty,
	// "cloudstack.internal". Issue requests from agents that ask for it
	// are refused, and the cluster port accepts only certificates that
	// carry it.
	ManagementSAN string

	// Logger receives issuance, revocation, refusal and waiver records.
	// If nil, nothing is logged. Keys are never logged.
	Logger *slog.Logger

	// Time returns the current time. If nil, time.Now.
	Time func() time.Time
}

// SettingError reports a refused setting. Key is CloudStack's name for
// it, Field the Settings field.
type SettingError struct {
	Key    string
	Field  string
	Reason string
}

func (e *SettingError) Error() string {
	return fmt.Sprintf("ca: setting %s (Settings.%s): %s", e.Key, e.Field, e.Reason)
}

// settings is a checked Settings with defaults filled in.
type settings struct {
	provider      string
	keyAlg        provider.KeyAlgorithm
	keySize       int
	validity      time.Duration
	maxValidity   time.Duration
	autoRenew     bool
	interval      time.Duration
	alert         time.Duration
	managementSAN string
	logger        *slog.Logger
	now           func() time.Time
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func checkSettings(s *Settings) (*settings, error) {
	if s == nil {
		s = &Settings{}
	}
	out := &settings{
		provider:      orDefault(s.Provider, defaultProvider),
		keyAlg:        s.KeyAlgorithm,
		keySize:       s.KeySize,
		validity:      orDefault(s.Validity, defaultValidity),
		autoRenew:     !s.DisableAutomaticRenewal,
		interval:      orDefault(s.BackgroundInterval, defaultBackgroundInterval),
		alert:         orDefault(s.ExpiryAlertPeriod, defaultExpiryAlertPeriod),
		managementSAN: orDefault(s.ManagementSAN, defaultManagementSAN),
		logger:        s.Logger,
		now:           s.Time,
	}
	out.maxValidity = orDefault(s.MaxValidity, out.validity)
	if out.logger == nil {
		out.logger = slog.New(slog.DiscardHandler)
	}
	if out.now == nil {
		out.now = time.Now
	}
	bad := func(key, field, format string, args ...any) error {
		return &SettingError{Key: key, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if strings.TrimSpace(out.provider) != out.provider {
		return nil, bad("ca.framework.provider.plugin", "Provider", "%q has surrounding spaces", out.provider)
	}
	switch out.keyAlg {
	case provider.KeyAlgorithmDefault:
		if out.keySize != 0 {
			return nil, bad("ca.framework.cert.keysize", "KeySize", "%d set without a key algorithm", out.keySize)
		}
	case provider.KeyAlgorithmRSA:
		if out.keySize == 0 {
			out.keySize = 2048
		}
		if out.keySize < 2048 || out.keySize > 8192 {
			return nil, bad("ca.framework.cert.keysize", "KeySize", "RSA key of %d bits: want 2048 to 8192", out.keySize)
		}
	case provider.KeyAlgorithmECDSA:
		if out.keySize == 0 {
			out.keySize = 256
		}
		if out.keySize != 256 && out.keySize != 384 && out.keySize != 521 {
			return nil, bad("ca.framework.cert.keysize", "KeySize", "ECDSA key of %d bits: want 256, 384 or 521", out.keySize)
		}
	default:
		return nil, bad("ca.framework.cert.keysize", "KeyAlgorithm", "unknown key algorithm %v", out.keyAlg)
	}
	switch {
	case out.validity < 0:
		return nil, bad("ca.framework.cert.validity.period", "Validity", "negative (%v)", out.validity)
	case out.maxValidity < 0 || out.maxValidity > maxValidityLimit:
		return nil, bad("ca.framework.cert.validity.period", "MaxValidity", "%v is not between 0 and %v", out.maxValidity, maxValidityLimit)
	case out.validity > out.maxValidity:
		return nil, bad("ca.framework.cert.validity.period", "Validity", "%v exceeds MaxValidity %v", out.validity, out.maxValidity)
	case out.alert < 0:
		return nil, bad("ca.framework.cert.expiry.alert.period", "ExpiryAlertPeriod", "negative (%v)", out.alert)
	case out.alert >= out.validity:
		return nil, bad("ca.framework.cert.expiry.alert.period", "ExpiryAlertPeriod", "%v is not shorter than the validity %v: every certificate would be renewed as soon as issued", out.alert, out.validity)
	case out.interval < minBackgroundInterval:
		return nil, bad("ca.framework.background.task.delay", "BackgroundInterval", "%v is shorter than %v", out.interval, minBackgroundInterval)
	case out.interval > out.alert:
		return nil, bad("ca.framework.background.task.delay", "BackgroundInterval", "%v is longer than the alert period %v: certificates could expire between two runs", out.interval, out.alert)
	}
	san, err := provider.CheckDNSName(out.managementSAN)
	if err != nil {
		return nil, bad("ca.framework.cert.management.custom.san", "ManagementSAN", "%v", err)
	}
	if strings.Count(san, ".") == 0 {
		return nil, bad("ca.framework.cert.management.custom.san", "ManagementSAN", "%q is a single label, which a host name could equal", san)
	}
	out.managementSAN = san
	return out, nil
}

// isMarker reports whether name is the management marker or a name below
// it (case-insensitive).
func (s *settings) isMarker(name string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	return name == s.managementSAN || strings.HasSuffix(name, "."+s.managementSAN)
}

var errNilRegistry = errors.New("ca: nil provider registry")
