//go:build unix && !linux

package safefs

const searchFlags = 0

// openat2Beneath reports that openat2 is unavailable: it is Linux's.
func openat2Beneath(int, string, int, uint32) (int, error, bool) { return -1, nil, false }
