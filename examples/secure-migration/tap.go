package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// freePort returns a TCP port free on addr a moment ago.
func freePort(addr string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tap listens on one loopback address and forwards each connection to
// the same port on another, keeping what the client sent.
type tap struct {
	ln   net.Listener
	port int
	mu   sync.Mutex
	buf  bytes.Buffer
	wg   sync.WaitGroup
}

// maxTapped bounds the bytes a tap keeps.
const maxTapped = 256 << 20

// newTap listens on listenAddr at a port also free on targetAddr.
func newTap(listenAddr, targetAddr string) (*tap, error) {
	for range 20 {
		port, err := freePort(targetAddr)
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(listenAddr, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		t := &tap{ln: ln, port: port}
		target := net.JoinHostPort(targetAddr, strconv.Itoa(port))
		go t.serve(target)
		return t, nil
	}
	return nil, fmt.Errorf("no port free on both %s and %s", listenAddr, targetAddr)
}

func (t *tap) serve(target string) {
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer c.Close()
			d, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer d.Close()
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(c, d)
				_ = c.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			_, _ = io.Copy(d, io.TeeReader(c, t))
			_ = d.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}

func (t *tap) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.buf.Len()+len(p) <= maxTapped {
		t.buf.Write(p)
	}
	return len(p), nil
}

// stream returns what clients sent so far, once the connections closed.
func (t *tap) stream() []byte {
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.buf.Bytes())
}

func (t *tap) close() { t.ln.Close() }

// tlsRecords walks b as TLS records (RFC 8446 section 5.1) to its very
// end and returns how many there are; it fails on the first byte outside
// a well-formed record, i.e. on anything sent outside TLS.
func tlsRecords(b []byte) (int, error) {
	records := 0
	for off := 0; off < len(b); records++ {
		if len(b)-off < 5 {
			return records, fmt.Errorf("%d trailing bytes at offset %d", len(b)-off, off)
		}
		typ, major, minor := b[off], b[off+1], b[off+2]
		length := int(b[off+3])<<8 | int(b[off+4])
		if typ < 20 || typ > 23 || major != 3 || minor < 1 || minor > 3 || length > 1<<14+256 || off+5+length > len(b) {
			return records, fmt.Errorf("no TLS record at offset %d", off)
		}
		off += 5 + length
	}
	return records, nil
}
