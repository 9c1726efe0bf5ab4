package libvirttls

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
)

// Diff returns the plan for a human: one line per directory, file and
// link, a unified diff per configuration file, and the service actions.
// Private keys are named, never shown. An empty plan gives "no changes\n".
func (p *Plan) Diff() string {
	if p.Empty() {
		return "no changes\n"
	}
	var b strings.Builder
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
			b.WriteString(unifiedDiff(ch.Path, ch.oldConfig, ch.after.data))
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

// diffContext is the number of unchanged lines shown around a change.
const diffContext = 2

// diffOp is one line of a line diff.
type diffOp struct {
	kind byte // ' ', '-', '+'
	text string
}

// unifiedDiff returns a unified diff of a and b (git style headers).
func unifiedDiff(name string, a, b []byte) string {
	ops := lineDiff(splitLines(a), splitLines(b))
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", name, name)
	// Walk the ops, emitting hunks around changed lines.
	aLine, bLine := make([]int, len(ops)+1), make([]int, len(ops)+1)
	for i, op := range ops {
		aLine[i+1], bLine[i+1] = aLine[i], bLine[i]
		if op.kind != '+' {
			aLine[i+1]++
		}
		if op.kind != '-' {
			bLine[i+1]++
		}
	}
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		start := max(0, i-diffContext)
		end := i
		for end < len(ops) {
			if ops[end].kind != ' ' {
				end++
				continue
			}
			// Extend through unchanged lines only if another change
			// follows within twice the context.
			j := end
			for j < len(ops) && ops[j].kind == ' ' && j-end < 2*diffContext {
				j++
			}
			if j < len(ops) && ops[j].kind != ' ' {
				end = j
				continue
			}
			end = min(len(ops), end+diffContext)
			break
		}
		fmt.Fprintf(&out, "@@ -%d,%d +%d,%d @@\n", aLine[start]+1, aLine[end]-aLine[start], bLine[start]+1, bLine[end]-bLine[start])
		for _, op := range ops[start:end] {
			out.WriteByte(op.kind)
			out.WriteString(op.text)
			out.WriteByte('\n')
		}
		i = end
	}
	return out.String()
}

func splitLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	s := strings.Split(string(bytes.TrimSuffix(b, []byte("\n"))), "\n")
	return s
}

// lineDiff returns a shortest edit script from a to b: common prefix and
// suffix, and a longest common subsequence of the middle (the middle of a
// configuration edit is small). Over maxLCSCells, the middle is shown as
// replaced wholesale.
func lineDiff(a, b []string) []diffOp {
	const maxLCSCells = 4 << 20
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	var ops []diffOp
	for _, l := range a[:pre] {
		ops = append(ops, diffOp{' ', l})
	}
	ma, mb := a[pre:len(a)-suf], b[pre:len(b)-suf]
	if (len(ma)+1)*(len(mb)+1) > maxLCSCells {
		for _, l := range ma {
			ops = append(ops, diffOp{'-', l})
		}
		for _, l := range mb {
			ops = append(ops, diffOp{'+', l})
		}
	} else {
		// lcs[i][j] is the LCS length of ma[i:] and mb[j:].
		w := len(mb) + 1
		lcs := make([]int32, (len(ma)+1)*w)
		for i := len(ma) - 1; i >= 0; i-- {
			for j := len(mb) - 1; j >= 0; j-- {
				if ma[i] == mb[j] {
					lcs[i*w+j] = lcs[(i+1)*w+j+1] + 1
				} else {
					lcs[i*w+j] = max(lcs[(i+1)*w+j], lcs[i*w+j+1])
				}
			}
		}
		i, j := 0, 0
		for i < len(ma) || j < len(mb) {
			switch {
			case i < len(ma) && j < len(mb) && ma[i] == mb[j]:
				ops = append(ops, diffOp{' ', ma[i]})
				i++
				j++
			case i < len(ma) && (j == len(mb) || lcs[(i+1)*w+j] >= lcs[i*w+j+1]):
				ops = append(ops, diffOp{'-', ma[i]})
				i++
			default:
				ops = append(ops, diffOp{'+', mb[j]})
				j++
			}
		}
	}
	for _, l := range a[len(a)-suf:] {
		ops = append(ops, diffOp{' ', l})
	}
	return ops
}
