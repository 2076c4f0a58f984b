package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/gdrbd/gdrbd/blockdev"
)

// ErrSetup is wrapped by failures to build a benchmark's fixtures (files,
// loop devices, daemons, servers).
var ErrSetup = errors.New("bench: setup")

// Disk is a backing file on a loop device, as the e2e tests and the demo
// use for both nodes. The file's blocks are allocated and written once
// (zeros), so that a benchmark never pays for block allocation or
// unwritten-extent conversion the way a fresh sparse file would, and the
// loop device does direct I/O to it (--direct-io=on) so that its writes
// reach the disk instead of the page cache, as a real partition's do.
//
// A Disk is safe for concurrent use; Close is idempotent.
type Disk struct {
	File     string
	Dev      string // /dev/loopN
	Size     int64
	DirectIO bool // the loop device does direct I/O to File

	once sync.Once
	err  error
}

// NewDisk creates dir/name of size bytes, writes it through once and
// attaches it to a free loop device.
func NewDisk(ctx context.Context, dir, name string, size int64) (*Disk, error) {
	d := &Disk{File: filepath.Join(dir, name), Size: size}
	if err := writeThrough(d.File, size); err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, "losetup", "-f", "--show", "--direct-io=on", d.File).CombinedOutput()
	d.DirectIO = err == nil
	if err != nil {
		// Some filesystems refuse direct I/O on the backing file; the
		// loop device then goes through the page cache (reported).
		out, err = exec.CommandContext(ctx, "losetup", "-f", "--show", d.File).CombinedOutput()
	}
	if err != nil {
		os.Remove(d.File)
		return nil, fmt.Errorf("%w: losetup %s: %w: %s", ErrSetup, d.File, err, strings.TrimSpace(string(out)))
	}
	d.Dev = strings.TrimSpace(string(out))
	return d, nil
}

// writeThrough allocates and zero-fills path with direct 1 MiB writes.
func writeThrough(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC|unix.O_DIRECT, 0o600)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSetup, err)
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		return fmt.Errorf("%w: fallocate %s: %w", ErrSetup, path, err)
	}
	buf := blockdev.AlignedBuffer(1 << 20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return fmt.Errorf("%w: writing %s: %w", ErrSetup, path, err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%w: %w", ErrSetup, err)
	}
	return nil
}

// Close detaches the loop device and removes the file.
func (d *Disk) Close() error {
	d.once.Do(func() {
		if d.Dev != "" {
			if out, err := exec.Command("losetup", "-d", d.Dev).CombinedOutput(); err != nil {
				d.err = fmt.Errorf("bench: losetup -d %s: %w: %s", d.Dev, err, strings.TrimSpace(string(out)))
			}
		}
		if err := os.Remove(d.File); err != nil && !errors.Is(err, os.ErrNotExist) && d.err == nil {
			d.err = err
		}
	})
	return d.err
}
