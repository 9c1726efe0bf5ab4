package migration

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error is a libvirt or QEMU migration failure that Classify recognised.
// It unwraps to one of the reason sentinels (ErrNameMismatch,
// ErrCredentialsUnreadable, ...) and, for ClassifyError, to the original
// error.
type Error struct {
	// Err is the reason: one of this package's sentinels.
	Err error
	// Name is, for ErrNameMismatch, the name the certificate did not
	// match.
	Name string
	// Path is, for ErrCredentialsUnreadable, the file or directory that
	// could not be read.
	Path string
	// Text is the classified message, cut to 64 KiB.
	Text string
	// Cause is the error ClassifyError classified, or nil.
	Cause error
}

func (e *Error) Error() string {
	// The shared certificate sentinels carry no package prefix.
	msg := "migration: " + strings.TrimPrefix(e.Err.Error(), "migration: ")
	switch {
	case e.Name != "":
		msg += " " + quote(e.Name)
	case e.Path != "":
		msg += " " + quote(e.Path)
	}
	return msg + ": " + oneLine(e.Text, 300)
}

// Unwrap returns the reason and, when set, the cause.
func (e *Error) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Err, e.Cause}
	}
	return []error{e.Err}
}

// rule recognises one message. The first rule whose marker occurs in the
// text wins, so the specific ones come first.
type rule struct {
	marker string
	reason error
	// extract returns the name or path after the marker, if any.
	extract func(after string) string
	path    bool // extract gives a Path, not a Name
}

var rules = []rule{
	{marker: "Attempt to migrate guest to the same host", reason: ErrSameHost},
	{marker: "allows migration only with VIR_MIGRATE_TLS", reason: ErrTLSRequired},
	{marker: "Distinguished Name is not on the list of allowed clients", reason: ErrDNNotAllowed},
	// QEMU (source, from GnuTLS): "Certificate does not match the hostname X".
	{marker: "Certificate does not match the hostname ", reason: ErrNameMismatch, extract: word},
	// libvirt's own client: "Certificate C owner does not match the hostname H".
	{marker: "owner does not match the hostname ", reason: ErrNameMismatch, extract: word},
	// QEMU: "Unable to access credentials /etc/pki/qemu/ca-cert.pem: No such file or directory".
	{marker: "Unable to access credentials ", reason: ErrCredentialsUnreadable, extract: untilColon, path: true},
	// libvirt: "migrate_tls_x509_cert_dir directory '/x' does not exist".
	{marker: "_tls_x509_cert_dir directory '", reason: ErrCredentialsUnreadable, extract: untilQuote, path: true},
	// libvirt: "Cannot read CA certificate '/etc/pki/CA/cacert.pem': ...".
	{marker: "Cannot read CA certificate '", reason: ErrCredentialsUnreadable, extract: untilQuote, path: true},
	{marker: "Cannot read certificate '", reason: ErrCredentialsUnreadable, extract: untilQuote, path: true},
	{marker: "has been revoked", reason: ErrRevoked},
	{marker: "certificate revoked", reason: ErrRevoked},
	{marker: "has expired", reason: ErrExpired},
	{marker: "is not yet activated", reason: ErrExpired},
	{marker: "issuer is unknown", reason: ErrUnknownAuthority},
	// QEMU 7.2 with GnuTLS 3.7, either end.
	{marker: "hasn't got a known issuer", reason: ErrUnknownAuthority},
	{marker: "signer not found", reason: ErrUnknownAuthority},
	{marker: "certificate is NOT trusted", reason: ErrUnknownAuthority},
	{marker: "No certificate was found", reason: ErrClientCertificateMissing},
	// The source's view of a destination that closed the TLS channel
	// after checking the client certificate.
	{marker: "Cannot write to TLS channel", reason: ErrClientRefused},
	{marker: "TLS connection was non-properly terminated", reason: ErrClientRefused},
	{marker: "Unable to read TLS confirmation", reason: ErrClientRefused},
	{marker: "Connection refused", reason: ErrPortClosed},
	{marker: "No route to host", reason: ErrUnreachable},
	{marker: "Network is unreachable", reason: ErrUnreachable},
	{marker: "Connection timed out", reason: ErrUnreachable},
}

// Classify recognises a libvirt or QEMU migration error message, such as
// virsh's "error: operation failed: job 'migration out' failed:
// Certificate does not match the hostname 127.0.0.2", and returns it as an
// *Error whose Err says why. It returns nil for a message it does not
// recognise. Only the first 64 KiB of text are read.
//
// Messages from the source and from the destination's logs are both
// recognised. Some are ambiguous by nature: a source that reads "Cannot
// write to TLS channel" only knows that the destination closed the
// connection (ErrClientRefused); the destination's log ("Verify failed:
// No certificate was found.") holds the reason.
func Classify(text string) *Error {
	if len(text) > maxErrorText {
		text = text[:maxErrorText]
	}
	for _, r := range rules {
		i := strings.Index(text, r.marker)
		if i < 0 {
			continue
		}
		e := &Error{Err: r.reason, Text: text}
		if r.extract != nil {
			v := r.extract(text[i+len(r.marker):])
			if r.path {
				e.Path = v
			} else {
				e.Name = v
			}
		}
		return e
	}
	return nil
}

// ClassifyError classifies err's message. It returns an *Error that
// unwraps to both the reason and err, or err itself when the message is
// not recognised (nil for nil).
func ClassifyError(err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	e := Classify(err.Error())
	if e == nil {
		return err
	}
	e.Cause = err
	return e
}

// word returns the text up to the first space or control character,
// without trailing punctuation.
func word(s string) string {
	end := strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f })
	if end >= 0 {
		s = s[:end]
	}
	return bounded(strings.TrimRight(s, ".,;:'\")"))
}

// untilColon returns the text up to ": ", or to the end of the line.
func untilColon(s string) string {
	if i := strings.Index(s, ": "); i >= 0 {
		s = s[:i]
	}
	return bounded(firstLine(s))
}

// untilQuote returns the text up to the closing "'".
func untilQuote(s string) string {
	if i := strings.IndexByte(s, '\''); i >= 0 {
		s = s[:i]
	}
	return bounded(firstLine(s))
}

func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

// bounded cuts an extracted value to maxExtracted bytes.
func bounded(s string) string {
	if len(s) > maxExtracted {
		return s[:maxExtracted]
	}
	return s
}

// oneLine returns s with runs of white space as one space, cut to about n
// bytes on a character boundary.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// quote quotes s for a message, escaping control characters.
func quote(s string) string { return strconv.Quote(s) }
