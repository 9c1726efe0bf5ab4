// Package redact keeps passwords of database URLs and DSNs out of the
// errors of rootca's SQL backends.
package redact

import "strings"

// minFragment is the shortest piece of a secret Leaks looks for. Pieces
// of three bytes occur in ordinary messages by chance (a random password
// holding "ead" matches "already"), which hid real errors behind a
// generic one; four bytes still catch the tail a URL parser takes for a
// host ("Secr3t@Tail/Rest" leaks "Tail").
const minFragment = 4

// Leaks reports whether msg holds secret or any piece of it at least
// minFragment bytes long, or all of a shorter secret.
func Leaks(msg, secret string) bool {
	if secret == "" {
		return false
	}
	n := min(minFragment, len(secret))
	for i := 0; i+n <= len(secret); i++ {
		if strings.Contains(msg, secret[i:i+n]) {
			return true
		}
	}
	return false
}
