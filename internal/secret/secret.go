// Package secret reads the secrets kvmpki's programs take (a CA key
// password, a VNC password) the one way they all should: from a file, from
// standard input or from the environment, never from a command line
// argument, which every user of the machine can read in the process list.
// What it reads is bounded, so that a path naming a device or an endless
// FIFO cannot exhaust memory.
package secret

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// MaxSize is the most a secret may hold, in bytes.
const MaxSize = 64 << 10

// ErrEmpty means the secret read was empty.
var ErrEmpty = errors.New("secret: empty")

// Read reads a secret from the file at path, or from stdin when path is
// "-". One trailing line ending (LF or CRLF) is not part of it. A secret
// over MaxSize bytes, or an empty one (ErrEmpty), is an error.
func Read(path string, stdin io.Reader) ([]byte, error) {
	r, name := stdin, "standard input"
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("secret: %w", err)
		}
		defer f.Close()
		r, name = f, path
	}
	if r == nil {
		return nil, errors.New("secret: no standard input")
	}
	b, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		clear(b)
		return nil, fmt.Errorf("secret: reading %s: %w", name, err)
	}
	if len(b) > MaxSize {
		clear(b)
		return nil, fmt.Errorf("secret: %s holds more than %d bytes", name, MaxSize)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrEmpty, name)
	}
	return b, nil
}

// Password returns the password a program takes with -password-file FILE
// or in the environment variable env: the file's (read with Read) when
// file is set, otherwise env's value as getenv reports it. With neither,
// the error names both; what says whose password it is ("CA key").
func Password(file, env string, getenv func(string) string, what string) ([]byte, error) {
	if file != "" {
		b, err := Read(file, nil)
		if err != nil {
			return nil, fmt.Errorf("password file: %w", err)
		}
		return b, nil
	}
	if pw := getenv(env); pw != "" {
		return []byte(pw), nil
	}
	return nil, fmt.Errorf("no %s password: set $%s or use -password-file", what, env)
}
