package pemx

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// MaxFileSize is the most bytes ReadFile reads: far more than a CA
// bundle, a key or a CRL of a KVM cloud holds.
const MaxFileSize = 1 << 20

// ErrTooLarge: a file exceeds MaxFileSize.
var ErrTooLarge = errors.New("file too large")

// ReadFile reads a PKI file of at most MaxFileSize bytes. A missing file
// gives an error wrapping os.ErrNotExist; errors name the path.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("%w: %s exceeds %d bytes", ErrTooLarge, path, MaxFileSize)
	}
	return b, nil
}
