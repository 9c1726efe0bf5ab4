package libvirttls

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/kvmpki/kvmpki/libvirtconf"
)

// Diff returns the plan for a human: one line per directory, file and
// link, a unified diff per configuration file, and the service actions.
// Private keys are named, never shown. An empty plan gives "no changes\n".
func (p *Plan) Diff() string {
	if p.Empty() {
		return "no changes\n"
	}
	var b strings.Builder
	if p.groupErr != nil {
		fmt.Fprintf(&b, "# %v\n# Apply refuses this plan until the group exists.\n", p.groupErr)
	}
	for _, ch := range p.Changes {
		verb := "create"
		if ch.before.exists {
			verb = "update"
		}
		switch ch.Kind {
		case ChangeMkdir:
			fmt.Fprintf(&b, "mkdir   %s (%04o %s)", ch.Path, ch.Mode, ch.Owner)
			if ch.before.exists {
				fmt.Fprintf(&b, " [was %04o]", ch.before.mode)
			}
			b.WriteByte('\n')
		case ChangeLink:
			fmt.Fprintf(&b, "symlink %s -> %s", ch.Path, ch.LinkTarget)
			if ch.before.exists {
				b.WriteString(" [replaces the existing file]")
			}
			b.WriteByte('\n')
		case ChangeFile:
			fmt.Fprintf(&b, "%-7s %s (%04o %s): %s\n", verb, ch.Path, ch.Mode, ch.Owner, describe(ch.after.data, ch.Secret))
		case ChangeConfig:
			fmt.Fprintf(&b, "%-7s %s (%04o %s)\n", verb, ch.Path, ch.Mode, ch.Owner)
			b.WriteString(libvirtconf.UnifiedDiff(ch.Path, ch.oldConfig, ch.after.data))
		}
	}
	for _, a := range p.Actions {
		fmt.Fprintf(&b, "run     %s  # %s\n", strings.Join(a.Command, " "), a.Why)
	}
	return b.String()
}

// describe summarises PEM content without revealing key material.
func describe(data []byte, secret bool) string {
	if secret {
		return "private key (not shown)"
	}
	var parts []string
	rest := data
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		sum := sha256.Sum256(blk.Bytes)
		fp := hex.EncodeToString(sum[:8])
		switch blk.Type {
		case "CERTIFICATE":
			if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
				parts = append(parts, fmt.Sprintf("certificate %q sha256:%s", c.Subject.String(), fp))
				continue
			}
		case "X509 CRL":
			if crl, err := x509.ParseRevocationList(blk.Bytes); err == nil {
				parts = append(parts, fmt.Sprintf("CRL number %v, %d revoked, sha256:%s", crl.Number, len(crl.RevokedCertificateEntries), fp))
				continue
			}
		}
		parts = append(parts, blk.Type+" sha256:"+fp)
	}
	if len(parts) == 0 {
		return fmt.Sprintf("%d bytes", len(data))
	}
	return strings.Join(parts, ", ")
}
