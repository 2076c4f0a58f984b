package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// Do sends one request to the daemon listening at path and returns its
// response. A daemon that is not running (no socket, or nobody behind it)
// is ErrNoDaemon. ctx bounds the whole exchange; cancelling it closes the
// connection, which also cancels the request in the daemon.
func Do(ctx context.Context, path string, req *Request) (*Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, ErrNoDaemon
		}
		return nil, fmt.Errorf("control: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if err := writeMsg(c, req); err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("control: send %s: %w", req.Op, err))
	}
	var resp Response
	if err := readMsg(c, &resp); err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("control: %s: no reply from the daemon: %w", req.Op, err))
	}
	return &resp, nil
}

// ctxErr prefers the context's error when it ended the exchange.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return err
}

// Alive reports whether a daemon answers at path within timeout.
func Alive(path string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r, err := Do(ctx, path, &Request{Op: OpPing})
	return err == nil && r.Kind == 0
}
