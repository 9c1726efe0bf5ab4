package rootca

// Subscribers returns the number of live revocation subscriptions of ca.
func Subscribers(ca *CA) int { return ca.revoked.notify.subscribers() }
