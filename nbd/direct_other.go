//go:build !linux

package nbd

import "net"

// directWriter is Linux-only; elsewhere every reply goes through the
// connection's writer goroutine.
type directWriter struct{}

func newDirectWriter(net.Conn) *directWriter { return nil }

func (*directWriter) writeOnce(net.Buffers) (int, error) { return 0, nil }
