package rfb

import (
	"fmt"
)

// Security is one way to secure an RFB connection: an RFB security type
// (None, VNC Authentication) or a VeNCrypt 0.2 subtype. The two numbering
// spaces do not overlap: security types are 1 to 255, which VeNCrypt also
// reserves inside its subtype list for them, and subtypes start at 256.
type Security uint32

// Security types (RFC 6143 §7.1.2).
const (
	// SecurityNone is no authentication and no encryption.
	SecurityNone Security = 1
	// SecurityVNCAuth is the VNC password DES challenge-response, without
	// encryption of the session.
	SecurityVNCAuth Security = 2
)

// securityTypeVeNCrypt is the RFB security type carrying the VeNCrypt
// subtypes; callers name the subtypes, never the type itself.
const securityTypeVeNCrypt = 19

// VeNCrypt 0.2 subtypes (rfbproto numbering).
const (
	// SecurityPlain sends a user name and password in clear, without TLS.
	// It needs Config.InsecureAllowPlainPassword.
	SecurityPlain Security = 256
	// SecurityTLSNone, SecurityTLSVnc and SecurityTLSPlain are anonymous
	// TLS, which this package refuses (ErrAnonymousTLS).
	SecurityTLSNone  Security = 257
	SecurityTLSVnc   Security = 258
	SecurityTLSPlain Security = 259
	// SecurityX509None is TLS with a verified server certificate and no
	// further authentication.
	SecurityX509None Security = 260
	// SecurityX509Vnc is TLS with a verified server certificate, then the
	// VNC password challenge-response inside TLS: what QEMU offers with
	// tls-creds-x509 and a password.
	SecurityX509Vnc Security = 261
	// SecurityX509Plain is TLS with a verified server certificate, then a
	// user name and password inside TLS.
	SecurityX509Plain Security = 262
)

// Subtypes this package recognises only to refuse them, with the SASL
// pair in QEMU's numbering (263 X509SASL, 264 TLSSASL; rfbproto swaps
// them, so both are named for what they are in either numbering).
const (
	subtypeSASL263   Security = 263
	subtypeSASL264   Security = 264
	subtypeIdent     Security = 265
	subtypeTLSIdent  Security = 266
	subtypeX509Ident Security = 267
)

var securityNames = map[Security]string{
	SecurityNone:         "None",
	SecurityVNCAuth:      "VNCAuth",
	SecurityPlain:        "VeNCrypt Plain",
	SecurityTLSNone:      "VeNCrypt TLSNone",
	SecurityTLSVnc:       "VeNCrypt TLSVnc",
	SecurityTLSPlain:     "VeNCrypt TLSPlain",
	SecurityX509None:     "VeNCrypt X509None",
	SecurityX509Vnc:      "VeNCrypt X509Vnc",
	SecurityX509Plain:    "VeNCrypt X509Plain",
	subtypeSASL263:       "VeNCrypt SASL (263)",
	subtypeSASL264:       "VeNCrypt SASL (264)",
	subtypeIdent:         "VeNCrypt Ident",
	subtypeTLSIdent:      "VeNCrypt TLSIdent",
	subtypeX509Ident:     "VeNCrypt X509Ident",
	5:                    "RA2",
	6:                    "RA2ne",
	16:                   "Tight",
	17:                   "Ultra",
	18:                   "TLS (Vino)",
	securityTypeVeNCrypt: "VeNCrypt",
	20:                   "SASL",
	22:                   "xvp",
	30:                   "Apple ARD",
	113:                  "MSLogonII",
}

// String returns the method's name and number, e.g. "VeNCrypt X509Vnc
// (261)".
func (s Security) String() string {
	if name, ok := securityNames[s]; ok {
		if s == subtypeSASL263 || s == subtypeSASL264 {
			return name
		}
		return fmt.Sprintf("%s (%d)", name, uint32(s))
	}
	return fmt.Sprintf("unknown (%d)", uint32(s))
}

// IsVeNCrypt reports whether s is a VeNCrypt subtype rather than a plain
// RFB security type.
func (s Security) IsVeNCrypt() bool { return s >= 256 }

// Encrypted reports whether s runs the session inside TLS.
func (s Security) Encrypted() bool {
	return s == SecurityX509None || s == SecurityX509Vnc || s == SecurityX509Plain ||
		s.anonymousTLS()
}

// supported reports whether this package can carry out s.
func (s Security) supported() bool {
	switch s {
	case SecurityNone, SecurityVNCAuth, SecurityPlain, SecurityX509None, SecurityX509Vnc, SecurityX509Plain:
		return true
	}
	return false
}

// anonymousTLS reports whether s is a TLS subtype without a server
// certificate.
func (s Security) anonymousTLS() bool {
	switch s {
	case SecurityTLSNone, SecurityTLSVnc, SecurityTLSPlain, subtypeSASL264, subtypeTLSIdent:
		return true
	}
	return false
}

// x509 reports whether s is a VeNCrypt subtype with a verified server
// certificate: the ones the server acknowledges with a U8 before TLS.
func (s Security) x509() bool {
	return s == SecurityX509None || s == SecurityX509Vnc || s == SecurityX509Plain
}

// cleartextPassword reports whether s sends a password readable by anyone
// on the path.
func (s Security) cleartextPassword() bool { return s == SecurityPlain }

// checkAccepted validates the caller's list of accepted methods.
func checkAccepted(list []Security, allowPlain bool) error {
	for _, s := range list {
		switch {
		case s.anonymousTLS():
			return fmt.Errorf("rfb: Config.Security lists %v: %w", s, ErrAnonymousTLS)
		case !s.supported():
			return fmt.Errorf("rfb: Config.Security lists %v, which this package does not implement", s)
		case s.cleartextPassword() && !allowPlain:
			return fmt.Errorf("%w: Config.Security lists %v, which sends the password in clear; set Config.InsecureAllowPlainPassword to allow it", ErrInsecureConfig, s)
		}
	}
	return nil
}

// choose returns the first of the caller's accepted methods that the
// server offers. The whole offer has been read before, so the stream stays
// in step whatever is chosen.
func choose(accepted, offered []Security) (Security, bool) {
	for _, a := range accepted {
		if containsSecurity(offered, a) {
			return a, true
		}
	}
	return 0, false
}
