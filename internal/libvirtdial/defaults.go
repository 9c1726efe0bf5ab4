package libvirtdial

import "time"

// defaultTimeout bounds a Dial whose context has no deadline and whose
// Options.Timeout is zero: TCP connect, handshake and confirmation byte.
const defaultTimeout = 10 * time.Second

// confirmOK is the byte libvirtd sends after the handshake once it has
// accepted the client's certificate.
const confirmOK = 1
