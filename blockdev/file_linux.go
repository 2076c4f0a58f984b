package blockdev

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Options select how Open opens a device (a plain value).
type Options struct {
	// Direct opens with O_DIRECT, bypassing the page cache. Writes must then
	// be aligned to File.Alignment (reads are bounced when they are not).
	// When the file system refuses O_DIRECT (tmpfs), the file is opened
	// without it, as drbdmeta does; File.Direct reports what was obtained.
	Direct bool
	// ReadOnly opens O_RDONLY; writes fail with ErrReadOnly.
	ReadOnly bool
	// Exclusive refuses a device somebody else holds: O_EXCL for block
	// devices (the kernel refuses when it is mounted, or exclusively opened
	// by DRBD, LVM, md or another gdrbd), and a non-blocking flock for
	// regular files (which only other gdrbd processes honour). Failure wraps
	// ErrBusy.
	Exclusive bool
}

// File is a Device over a regular file or a block device. Reads and writes
// are positional (pread/pwrite) with no lock of any kind, so a File is safe
// for concurrent use as the Device contract describes.
type File struct {
	f        *os.File
	fd       int
	path     string
	size     int64
	block    bool
	direct   bool
	readOnly bool
	align    int64 // direct I/O offset/length alignment
	closed   atomic.Bool
}

var (
	_ Device     = (*File)(nil)
	_ Discarder  = (*File)(nil)
	_ ZeroWriter = (*File)(nil)
)

// Open opens a regular file or a block device as a Device.
func Open(path string, opts Options) (*File, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("blockdev: open %s: %w", path, err)
	}
	block := st.Mode&unix.S_IFMT == unix.S_IFBLK
	if !block && st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("blockdev: open %s: neither a regular file nor a block device", path)
	}
	flags := unix.O_RDWR | unix.O_CLOEXEC
	if opts.ReadOnly {
		flags = unix.O_RDONLY | unix.O_CLOEXEC
	}
	if opts.Exclusive && block {
		flags |= unix.O_EXCL
	}
	direct := opts.Direct
	var fd int
	for {
		fl := flags
		if direct {
			fl |= unix.O_DIRECT
		}
		var err error
		fd, err = unix.Open(path, fl, 0)
		if err == nil {
			break
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EINVAL) && direct {
			direct = false // tmpfs and friends: no O_DIRECT
			continue
		}
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("blockdev: open %s exclusively: %w", path, ErrBusy)
		}
		return nil, fmt.Errorf("blockdev: open %s: %w", path, err)
	}
	d := &File{
		f:        os.NewFile(uintptr(fd), path),
		fd:       fd,
		path:     path,
		block:    block,
		direct:   direct,
		readOnly: opts.ReadOnly,
		align:    Alignment,
	}
	if err := d.init(opts); err != nil {
		d.f.Close()
		return nil, err
	}
	return d, nil
}

func (d *File) init(opts Options) error {
	if d.block {
		var size uint64
		if err := ioctlPtr(d.fd, unix.BLKGETSIZE64, unsafe.Pointer(&size)); err != nil {
			return fmt.Errorf("blockdev: BLKGETSIZE64 %s: %w", d.path, err)
		}
		d.size = int64(size)
		if lbs, err := unix.IoctlGetInt(d.fd, unix.BLKSSZGET); err == nil && lbs >= SectorSize {
			d.align = int64(lbs)
		}
	} else {
		var st unix.Stat_t
		if err := unix.Fstat(d.fd, &st); err != nil {
			return fmt.Errorf("blockdev: stat %s: %w", d.path, err)
		}
		d.size = st.Size
		if d.direct {
			var sx unix.Statx_t
			if err := unix.Statx(d.fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &sx); err == nil &&
				sx.Mask&unix.STATX_DIOALIGN != 0 && sx.Dio_offset_align >= SectorSize && sx.Dio_offset_align <= Alignment {
				d.align = int64(sx.Dio_offset_align)
			}
		}
		if opts.Exclusive {
			lk := unix.LOCK_EX
			if opts.ReadOnly {
				lk = unix.LOCK_SH
			}
			if err := unix.Flock(d.fd, lk|unix.LOCK_NB); err != nil {
				if errors.Is(err, unix.EWOULDBLOCK) {
					return fmt.Errorf("blockdev: lock %s: %w", d.path, ErrBusy)
				}
				return fmt.Errorf("blockdev: lock %s: %w", d.path, err)
			}
		}
	}
	return nil
}

// Path is the path the device was opened with.
func (d *File) Path() string { return d.path }

// IsBlockDevice reports whether the device is a block device (rather than
// a regular file).
func (d *File) IsBlockDevice() bool { return d.block }

// Direct reports whether the device was opened with O_DIRECT.
func (d *File) Direct() bool { return d.direct }

// Alignment is the offset and length alignment direct writes need (the
// logical block size of a block device, the file system's direct I/O
// alignment of a file, 4096 when unknown).
func (d *File) Alignment() int64 { return d.align }

// Size implements Device.
func (d *File) Size() int64 { return d.size }

func (d *File) aligned(off, n int64) bool {
	return off%d.align == 0 && n%d.align == 0
}

// ReadAt implements Device.
func (d *File) ReadAt(p []byte, off int64) (int, error) {
	if d.closed.Load() {
		return 0, fmt.Errorf("blockdev: read %s: %w", d.path, ErrClosed)
	}
	if err := checkRange("read", off, int64(len(p)), d.size); err != nil {
		return 0, err
	}
	if !d.direct || (d.aligned(off, int64(len(p))) && IsAligned(p)) {
		return d.pread(p, off)
	}
	return d.bouncedRead(p, off)
}

// bouncedRead serves an unaligned O_DIRECT read through aligned buffers.
// Reading more than asked is harmless, unlike writing, so reads never fail
// for alignment.
func (d *File) bouncedRead(p []byte, off int64) (int, error) {
	const maxBounce = 1 << 20
	done := 0
	for done < len(p) {
		cur := off + int64(done)
		start := cur &^ (d.align - 1)
		want := min(int64(len(p)-done), maxBounce)
		end := (cur + want + d.align - 1) &^ (d.align - 1)
		end = min(end, (d.size+d.align-1)&^(d.align-1))
		buf := defaultPool.Get(int(end - start))
		_, err := d.pread(buf, start)
		if err != nil {
			defaultPool.Put(buf)
			return done, err
		}
		n := copy(p[done:], buf[cur-start:])
		defaultPool.Put(buf)
		done += n
	}
	return done, nil
}

func (d *File) pread(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Pread(d.fd, p[done:], off+int64(done))
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return done, fmt.Errorf("blockdev: read %s at %d: %w", d.path, off+int64(done), err)
		}
		if n == 0 {
			// A tail that is not a multiple of the alignment reads short
			// under O_DIRECT; the rest is past the end of the file.
			if off+int64(done) >= d.size {
				clear(p[done:])
				return len(p), nil
			}
			return done, fmt.Errorf("blockdev: read %s at %d: unexpected end of device", d.path, off+int64(done))
		}
		done += n
	}
	return done, nil
}

// WriteAt implements Device.
func (d *File) WriteAt(p []byte, off int64) (int, error) {
	if err := d.writable("write", off, int64(len(p))); err != nil {
		return 0, err
	}
	if d.direct && !IsAligned(p) {
		buf := defaultPool.Get(len(p))
		copy(buf, p)
		n, err := d.pwrite(buf, off)
		defaultPool.Put(buf)
		return n, err
	}
	return d.pwrite(p, off)
}

func (d *File) writable(op string, off, n int64) error {
	if d.closed.Load() {
		return fmt.Errorf("blockdev: %s %s: %w", op, d.path, ErrClosed)
	}
	if d.readOnly {
		return fmt.Errorf("blockdev: %s %s: %w", op, d.path, ErrReadOnly)
	}
	if err := checkRange(op, off, n, d.size); err != nil {
		return err
	}
	if d.direct && !d.aligned(off, n) {
		return fmt.Errorf("blockdev: %s %s [%d, +%d) with %d-byte alignment: %w", op, d.path, off, n, d.align, ErrUnaligned)
	}
	return nil
}

func (d *File) pwrite(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Pwrite(d.fd, p[done:], off+int64(done))
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return done, fmt.Errorf("blockdev: write %s at %d: %w", d.path, off+int64(done), err)
		}
		if n == 0 {
			return done, fmt.Errorf("blockdev: write %s at %d: no progress", d.path, off+int64(done))
		}
		done += n
	}
	return done, nil
}

// Flush implements Device with fdatasync.
func (d *File) Flush() error {
	if d.closed.Load() {
		return fmt.Errorf("blockdev: flush %s: %w", d.path, ErrClosed)
	}
	for {
		err := unix.Fdatasync(d.fd)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("blockdev: fdatasync %s: %w", d.path, err)
		}
		return nil
	}
}

// Close implements Device.
//
// NB: the close happens under syscall.ForkLock. A child forked by another
// goroutine holds a duplicate of every descriptor until it execs (then
// O_CLOEXEC drops it), and an exclusive open's flock lives until the last
// duplicate is gone: without the lock, a device could still look busy
// right after Close returned.
func (d *File) Close() error {
	if d.closed.Swap(true) {
		return nil
	}
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	if err := d.f.Close(); err != nil {
		return fmt.Errorf("blockdev: close %s: %w", d.path, err)
	}
	return nil
}

// Discard implements Discarder. Files get a punched hole (FALLOC_FL_PUNCH_HOLE
// | FALLOC_FL_KEEP_SIZE). Block devices get the same fallocate call, which
// the kernel turns into a write-zeroes request that may unmap: it frees
// space on thin devices AND guarantees zeroes. A bare BLKDISCARD is
// not used because it does not promise that the range reads back as
// zeroes (discard_zeroes_data is gone from Linux), which the Discarder
// contract and DRBD's trim/resync depend on. When neither is supported,
// Discard falls back to WriteZeroes.
func (d *File) Discard(off, length int64) error {
	if err := d.writable("discard", off, length); err != nil {
		return err
	}
	if length == 0 {
		return nil
	}
	if d.block {
		return d.blockRange(off, length, func(o, n int64) error {
			err := d.fallocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, o, n)
			if err == nil {
				return nil
			}
			if !unsupported(err) {
				return err
			}
			return d.zeroBlock(o, n)
		})
	}
	err := d.fallocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	if err == nil || !unsupported(err) {
		return err
	}
	return d.WriteZeroes(off, length)
}

// WriteZeroes implements ZeroWriter: FALLOC_FL_ZERO_RANGE on files,
// BLKZEROOUT on block devices, plain writes of zeroes when unsupported.
func (d *File) WriteZeroes(off, length int64) error {
	if err := d.writable("write zeroes", off, length); err != nil {
		return err
	}
	if length == 0 {
		return nil
	}
	if d.block {
		return d.blockRange(off, length, d.zeroBlock)
	}
	err := d.fallocate(unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, off, length)
	if err == nil || !unsupported(err) {
		return err
	}
	return writeZeroBuffers(d, off, length)
}

// zeroBlock zeroes a logical-block-aligned range of a block device.
func (d *File) zeroBlock(off, n int64) error {
	r := [2]uint64{uint64(off), uint64(n)}
	err := ioctlPtr(d.fd, unix.BLKZEROOUT, unsafe.Pointer(&r[0]))
	if err == nil {
		return nil
	}
	if !unsupported(err) {
		return fmt.Errorf("blockdev: BLKZEROOUT %s [%d, +%d): %w", d.path, off, n, err)
	}
	return writeZeroBuffers(d, off, n)
}

// blockRange applies fn to the logical-block-aligned middle of [off,
// off+n) and zeroes unaligned edges with plain writes (possible only
// without O_DIRECT, where writable already refused them).
func (d *File) blockRange(off, n int64, fn func(off, n int64) error) error {
	lbs := d.align
	end := off + n
	a0 := (off + lbs - 1) &^ (lbs - 1)
	a1 := end &^ (lbs - 1)
	if a0 >= a1 {
		return writeZeroBuffers(d, off, n)
	}
	if off < a0 {
		if err := writeZeroBuffers(d, off, a0-off); err != nil {
			return err
		}
	}
	if err := fn(a0, a1-a0); err != nil {
		return err
	}
	if a1 < end {
		return writeZeroBuffers(d, a1, end-a1)
	}
	return nil
}

func (d *File) fallocate(mode uint32, off, n int64) error {
	for {
		err := unix.Fallocate(d.fd, mode, off, n)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("blockdev: fallocate(%#x) %s [%d, +%d): %w", mode, d.path, off, n, err)
		}
		return nil
	}
}

// unsupported reports errors meaning "this device or file system cannot do
// that operation", after which a fallback is correct.
func unsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTTY) ||
		errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS)
}

func ioctlPtr(fd int, req uint, arg unsafe.Pointer) error {
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}
