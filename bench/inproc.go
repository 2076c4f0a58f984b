package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/gdrbd/gdrbd/blockdev"
	"github.com/gdrbd/gdrbd/config"
	"github.com/gdrbd/gdrbd/metadata"
	"github.com/gdrbd/gdrbd/replication"
	"github.com/gdrbd/gdrbd/replication/driver"
)

// defaultDown bounds taking an in-process resource down.
const defaultDown = 30 * time.Second

// InProcOptions vary an InProcPair. A plain value.
type InProcOptions struct {
	Size       int64  // backing file size (default 256 MiB)
	Protocol   string // A, B, C ("" = C)
	MaxBuffers int    // 0 = 2048
	Disk       string // extra disk {} options ("disk-flushes no;")
	StandAlone bool   // a alone, never connected (b is not started)
	Logger     *zap.Logger
}

// InProcPair is a gdrbd pair inside this process: two driver.Resources on
// preallocated backing files (no root needed), replicating over
// 127.0.0.1, a Primary and exported on its NBD socket. It is the write
// path of two daemons without the processes, for go test's -cpuprofile,
// -memprofile and -benchmem. Safe for concurrent use; Close is idempotent.
type InProcPair struct {
	A, B   *driver.Resource
	Socket string // a's NBD socket
	Files  [2]string
}

// StartInProc builds the pair in dir: fresh metadata, both attached and
// connected, the initial sync skipped (new-current-uuid --clear-bitmap),
// a promoted.
func StartInProc(ctx context.Context, dir string, o InProcOptions) (p *InProcPair, err error) {
	if o.Size == 0 {
		o.Size = 256 << 20
	}
	p = &InProcPair{}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	for i, n := range []string{"a", "b"} {
		p.Files[i] = filepath.Join(dir, n+".img")
		if err := newBackingFile(p.Files[i], o.Size); err != nil {
			return p, err
		}
	}
	ports, err := freePorts(2)
	if err != nil {
		return p, err
	}
	src := PairConfig{Protocol: o.Protocol, MaxBuffers: o.MaxBuffers, Disk: o.Disk}.ConfigText(p.Files[0], p.Files[1], ports[0], ports[1])
	res := [2]**driver.Resource{&p.A, &p.B}
	for i, n := range []string{"a", "b"} {
		cfg, err := config.Parse("drbd.conf", []byte(src), config.Options{Node: n})
		if err != nil {
			return p, fmt.Errorf("%w: %w", ErrSetup, err)
		}
		rc, err := cfg.Resource("r0")
		if err != nil {
			return p, fmt.Errorf("%w: %w", ErrSetup, err)
		}
		run := filepath.Join(dir, "run-"+n)
		if err := os.MkdirAll(run, 0o700); err != nil {
			return p, err
		}
		lg := o.Logger
		if lg != nil {
			lg = lg.Named(n)
		}
		r, err := driver.New(driver.Options{Config: rc, Logger: lg, RunDir: run})
		if err != nil {
			return p, fmt.Errorf("%w: %w", ErrSetup, err)
		}
		*res[i] = r
		if err := r.Attach(ctx); err != nil {
			return p, fmt.Errorf("%w: attach %s: %w", ErrSetup, n, err)
		}
		if o.StandAlone {
			break
		}
	}
	if o.StandAlone {
		if err := p.A.Primary(ctx, true); err != nil {
			return p, fmt.Errorf("%w: primary: %w", ErrSetup, err)
		}
	} else {
		for _, r := range []*driver.Resource{p.A, p.B} {
			if err := r.Connect(ctx, false); err != nil {
				return p, fmt.Errorf("%w: connect: %w", ErrSetup, err)
			}
		}
		if err := p.A.Wait(ctx, func(s driver.Status) bool { return s.State.Conn == replication.Connected }); err != nil {
			return p, fmt.Errorf("%w: connecting: %w", ErrSetup, err)
		}
		if err := p.A.NewCurrentUUID(ctx, true); err != nil {
			return p, fmt.Errorf("%w: new-current-uuid: %w", ErrSetup, err)
		}
		for _, r := range []*driver.Resource{p.A, p.B} {
			if err := r.Wait(ctx, func(s driver.Status) bool {
				return s.State.Conn == replication.Connected && s.State.Disk == replication.UpToDate && s.State.PDsk == replication.UpToDate
			}); err != nil {
				return p, fmt.Errorf("%w: waiting for UpToDate/UpToDate: %w", ErrSetup, err)
			}
		}
		if err := p.A.Primary(ctx, false); err != nil {
			return p, fmt.Errorf("%w: primary: %w", ErrSetup, err)
		}
	}
	p.Socket = p.A.Status().NBD.Socket
	if p.Socket == "" {
		return p, fmt.Errorf("%w: the Primary exports no NBD socket", ErrSetup)
	}
	return p, nil
}

// newBackingFile creates a file with its blocks written (as NewDisk's)
// and fresh internal metadata (create-md).
func newBackingFile(path string, size int64) error {
	if err := writeThrough(path, size); err != nil {
		return err
	}
	dev, err := blockdev.Open(path, blockdev.Options{})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSetup, err)
	}
	_, err = metadata.Create(dev, metadata.Internal(), metadata.CreateOptions{})
	return errors.Join(err, dev.Close())
}

// Close takes both resources down.
func (p *InProcPair) Close() error {
	var errs []error
	for _, r := range []*driver.Resource{p.A, p.B} {
		if r != nil {
			ctx, cancel := context.WithTimeout(context.Background(), defaultDown)
			if err := r.Down(ctx); err != nil && !errors.Is(err, driver.ErrDown) {
				errs = append(errs, err)
			}
			cancel()
		}
	}
	return errors.Join(errs...)
}
