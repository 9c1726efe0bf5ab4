package rootca

// SetKeyIterations sets the PBKDF2 iteration count of the CA keys written
// from now on, for tests that make many encrypted keys (600,000 rounds
// take seconds under the race detector), and returns the function that
// restores it. Call it from a test that is not parallel.
func SetKeyIterations(n int) (restore func()) {
	old := newKeyIterations
	newKeyIterations = n
	return func() { newKeyIterations = old }
}
