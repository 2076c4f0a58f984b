package nbd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// ErrNoKernelNBD is wrapped by every error that means "this machine has no
// usable kernel NBD driver" (no module, no /dev/nbd*). Callers then serve
// the socket only; they never pretend a /dev path exists.
var ErrNoKernelNBD = errors.New("nbd: kernel NBD driver not available")

// KernelError explains why the kernel driver is unavailable; it wraps
// ErrNoKernelNBD.
type KernelError struct {
	Reason string
	Err    error // the underlying failure, if any
}

func (e *KernelError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%v: %s: %v", ErrNoKernelNBD, e.Reason, e.Err)
	}
	return fmt.Sprintf("%v: %s", ErrNoKernelNBD, e.Reason)
}

func (e *KernelError) Is(target error) bool { return target == ErrNoKernelNBD }
func (e *KernelError) Unwrap() error        { return e.Err }

// Generic netlink family "nbd" (include/uapi/linux/nbd-netlink.h).
const (
	nlFamily = "nbd"

	nlCmdConnect     = 1
	nlCmdDisconnect  = 2
	nlCmdReconfigure = 3
	nlCmdStatus      = 5

	nlAttrIndex           = 1
	nlAttrSizeBytes       = 2
	nlAttrBlockSizeBytes  = 3
	nlAttrTimeout         = 4
	nlAttrServerFlags     = 5
	nlAttrClientFlags     = 6
	nlAttrSockets         = 7
	nlAttrDeadConnTimeout = 8
	nlAttrDeviceList      = 9

	nlSockItem = 1
	nlSockFD   = 1

	nlDeviceItem      = 1
	nlDeviceIndex     = 1
	nlDeviceConnected = 2
)

// ioctls on /dev/nbdX (include/uapi/linux/nbd.h, _IO(0xab, n)).
const (
	ioctlSetSock       = 0xab00
	ioctlSetBlksize    = 0xab01
	ioctlDoIt          = 0xab03
	ioctlClearSock     = 0xab04
	ioctlSetSizeBlocks = 0xab07
	ioctlDisconnect    = 0xab08
	ioctlSetTimeout    = 0xab09
	ioctlSetFlags      = 0xab0a
)

// AttachOptions tune a kernel attach.
type AttachOptions struct {
	// Index is the nbd device number, or -1 for any free device.
	Index int
	// BlockSize is the logical block size (default 4096; a power of two
	// from 512 to the page size, at least the server's MinBlockSize). The
	// kernel default of 1024 breaks XFS, so it is always set.
	BlockSize uint32
	// Connections is the number of sockets (default 2). The kernel spreads
	// its hardware queues over them; the server advertises CAN_MULTI_CONN.
	Connections int
	// Timeout fails a request the server has not answered in time; 0
	// (default) waits forever, because under protocol C a slow peer is
	// not a reason to hand EIO to the file system.
	Timeout time.Duration
	// DeadConnTimeout is how long I/O waits for RECONFIGURE to bring new
	// sockets after the old ones died (a daemon restart) before failing
	// with EIO. Default 30 s. Netlink only.
	DeadConnTimeout time.Duration
	// ForceIoctl skips netlink (to test the fallback, or for kernels
	// without the nbd netlink family).
	ForceIoctl bool
	// Logger gets one line per attach and detach; nil logs nothing.
	Logger *zap.Logger
}

func (o *AttachOptions) defaults(s *Server) error {
	if o.BlockSize == 0 {
		o.BlockSize = 4096
	}
	bs := o.BlockSize
	if bs < 512 || bs > uint32(os.Getpagesize()) || bs&(bs-1) != 0 {
		return fmt.Errorf("nbd: block size %d: want a power of two from 512 to %d", bs, os.Getpagesize())
	}
	if bs < s.cfg.MinBlockSize {
		return fmt.Errorf("nbd: block size %d below the export's minimum %d", bs, s.cfg.MinBlockSize)
	}
	if s.Size()%int64(bs) != 0 {
		return fmt.Errorf("nbd: export size %d is not a multiple of the block size %d", s.Size(), bs)
	}
	if o.Connections <= 0 {
		o.Connections = 2
	}
	if o.DeadConnTimeout == 0 {
		o.DeadConnTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return nil
}

// KernelDevice is a /dev/nbdX served by a Server through socketpairs.
//
// KernelDevice is safe for concurrent use; Detach may be called once
// from any goroutine.
type KernelDevice struct {
	srv     *Server
	index   int
	netlink bool
	log     *zap.Logger

	serveWG sync.WaitGroup

	// ioctl path
	dev   *os.File
	doIt  chan error
	once  sync.Once
	dErr  error
	ready bool
}

// Index is the device number N of /dev/nbdN.
func (d *KernelDevice) Index() int { return d.index }

// Path is /dev/nbdN.
func (d *KernelDevice) Path() string { return devPath(d.index) }

// Netlink reports whether the device was configured through netlink (as
// opposed to the ioctl fallback).
func (d *KernelDevice) Netlink() bool { return d.netlink }

func devPath(index int) string { return "/dev/nbd" + strconv.Itoa(index) }

// CheckKernelNBD reports whether the kernel NBD driver is usable, loading
// the module when it is not (modprobe nbd). The error wraps
// ErrNoKernelNBD.
func CheckKernelNBD() error {
	if present() {
		return nil
	}
	var modErr error
	if p, err := exec.LookPath("modprobe"); err == nil {
		if out, err := exec.Command(p, "nbd").CombinedOutput(); err != nil {
			modErr = fmt.Errorf("modprobe nbd: %v: %s", err, strings.TrimSpace(string(out)))
		}
	} else {
		modErr = errors.New("modprobe not found")
	}
	if present() {
		return nil
	}
	return &KernelError{Reason: "no nbd module (/sys/module/nbd) and no /dev/nbd0", Err: modErr}
}

func present() bool {
	if _, err := os.Stat("/sys/module/nbd"); err == nil {
		return true
	}
	_, err := os.Stat("/dev/nbd0")
	return err == nil
}

// Attach connects a kernel /dev/nbdX to s: it creates opts.Connections
// socketpairs, serves one end of each in-process (ServeKernelConn) and
// hands the other ends to the kernel with the generic netlink CONNECT
// command, falling back to the ioctl sequence when netlink is missing.
// See "Kernel attach" in the package documentation.
func Attach(ctx context.Context, s *Server, opts AttachOptions) (*KernelDevice, error) {
	if err := opts.defaults(s); err != nil {
		return nil, err
	}
	if err := CheckKernelNBD(); err != nil {
		return nil, err
	}
	d := &KernelDevice{srv: s, index: opts.Index, log: opts.Logger}
	ours, theirs, err := socketpairs(opts.Connections)
	if err != nil {
		return nil, err
	}
	defer closeFDs(theirs)
	if !opts.ForceIoctl {
		idx, err := nlConnect(s, opts, theirs)
		switch {
		case err == nil:
			d.index, d.netlink = idx, true
			d.serve(ours)
			d.log.Info("nbd kernel device attached", zap.String("device", d.Path()), zap.String("via", "netlink"),
				zap.Int("connections", len(ours)))
			return d, nil
		case !errors.Is(err, errNoFamily):
			closeConns(ours)
			return nil, err
		}
		d.log.Info("nbd netlink family missing; using ioctls")
	}
	if err := d.ioctlConnect(ctx, s, opts, theirs, ours); err != nil {
		closeConns(ours)
		return nil, err
	}
	d.log.Info("nbd kernel device attached", zap.String("device", d.Path()), zap.String("via", "ioctl"),
		zap.Int("connections", len(ours)))
	return d, nil
}

// Reconnect hands fresh sockets to a live, netlink-configured /dev/nbdN
// whose previous server died (RECONFIGURE): the kernel replaces its dead
// sockets and I/O held back for up to DeadConnTimeout continues. This is
// how a restarted daemon takes over a device without unmounting.
func Reconnect(s *Server, index int, opts AttachOptions) (*KernelDevice, error) {
	if err := opts.defaults(s); err != nil {
		return nil, err
	}
	if err := CheckKernelNBD(); err != nil {
		return nil, err
	}
	ours, theirs, err := socketpairs(opts.Connections)
	if err != nil {
		return nil, err
	}
	defer closeFDs(theirs)
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(nlAttrIndex, uint32(index))
	ae.Uint64(nlAttrDeadConnTimeout, uint64(opts.DeadConnTimeout/time.Second))
	ae.Nested(nlAttrSockets, encodeSockets(theirs))
	if _, err := nlExecute(nlCmdReconfigure, ae); err != nil {
		closeConns(ours)
		return nil, fmt.Errorf("nbd: reconfigure %s: %w", devPath(index), err)
	}
	d := &KernelDevice{srv: s, index: index, netlink: true, log: opts.Logger}
	d.serve(ours)
	d.log.Info("nbd kernel device reconnected", zap.String("device", d.Path()))
	return d, nil
}

func (d *KernelDevice) serve(conns []net.Conn) {
	for _, c := range conns {
		d.serveWG.Add(1)
		go func() {
			defer d.serveWG.Done()
			if err := d.srv.ServeKernelConn(c); err != nil && !errors.Is(err, ErrServerClosed) {
				d.log.Warn("nbd kernel socket ended", zap.String("device", d.Path()), zap.Error(err))
			}
		}()
	}
}

// Detach disconnects the kernel device: the kernel sends NBD_CMD_DISC on
// every socket after its in-flight requests, the server finishes them,
// and Detach returns when all sockets are closed. Unmount first: I/O
// after Detach fails.
func (d *KernelDevice) Detach() error {
	d.once.Do(func() {
		if d.netlink {
			ae := netlink.NewAttributeEncoder()
			ae.Uint32(nlAttrIndex, uint32(d.index))
			if _, err := nlExecute(nlCmdDisconnect, ae); err != nil {
				d.dErr = fmt.Errorf("nbd: disconnect %s: %w", d.Path(), err)
			}
		} else {
			d.dErr = d.ioctlDisconnect()
		}
		d.serveWG.Wait()
		d.log.Info("nbd kernel device detached", zap.String("device", d.Path()))
	})
	return d.dErr
}

// Status asks the kernel whether /dev/nbdN is connected (netlink STATUS).
func Status(index int) (connected bool, err error) {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(nlAttrIndex, uint32(index))
	msgs, err := nlExecute(nlCmdStatus, ae)
	if err != nil {
		return false, fmt.Errorf("nbd: status %s: %w", devPath(index), err)
	}
	found := false
	for _, m := range msgs {
		ad, err := netlink.NewAttributeDecoder(m.Data)
		if err != nil {
			return false, fmt.Errorf("nbd: status: %w", err)
		}
		for ad.Next() {
			if ad.Type() != nlAttrDeviceList {
				continue
			}
			ad.Nested(func(list *netlink.AttributeDecoder) error {
				for list.Next() {
					if list.Type() != nlDeviceItem {
						continue
					}
					list.Nested(func(item *netlink.AttributeDecoder) error {
						idx, conn := -1, false
						for item.Next() {
							switch item.Type() {
							case nlDeviceIndex:
								idx = int(item.Uint32())
							case nlDeviceConnected:
								conn = item.Uint8() != 0
							}
						}
						if idx == index {
							found, connected = true, conn
						}
						return nil
					})
				}
				return nil
			})
		}
		if err := ad.Err(); err != nil {
			return false, fmt.Errorf("nbd: status: %w", err)
		}
	}
	if !found {
		return false, fmt.Errorf("nbd: status: no device %s", devPath(index))
	}
	return connected, nil
}

var errNoFamily = errors.New("nbd: no generic netlink family \"nbd\"")

// connectAttrs encodes the CONNECT request:
//
//	INDEX u32 (absent: any free device) | SIZE_BYTES u64 | BLOCK_SIZE_BYTES u64
//	TIMEOUT u64 s | DEAD_CONN_TIMEOUT u64 s | SERVER_FLAGS u64
//	SOCKETS { SOCK_ITEM { SOCK_FD u32 } ... }
func connectAttrs(size int64, flags uint64, opts AttachOptions, fds []int) *netlink.AttributeEncoder {
	ae := netlink.NewAttributeEncoder()
	if opts.Index >= 0 {
		ae.Uint32(nlAttrIndex, uint32(opts.Index))
	}
	ae.Uint64(nlAttrSizeBytes, uint64(size))
	ae.Uint64(nlAttrBlockSizeBytes, uint64(opts.BlockSize))
	ae.Uint64(nlAttrTimeout, uint64(opts.Timeout/time.Second))
	ae.Uint64(nlAttrDeadConnTimeout, uint64(opts.DeadConnTimeout/time.Second))
	ae.Uint64(nlAttrServerFlags, flags)
	ae.Nested(nlAttrSockets, encodeSockets(fds))
	return ae
}

func encodeSockets(fds []int) func(*netlink.AttributeEncoder) error {
	return func(ae *netlink.AttributeEncoder) error {
		for _, fd := range fds {
			ae.Nested(nlSockItem, func(item *netlink.AttributeEncoder) error {
				item.Uint32(nlSockFD, uint32(fd))
				return nil
			})
		}
		return nil
	}
}

func nlConnect(s *Server, opts AttachOptions, fds []int) (int, error) {
	msgs, err := nlExecute(nlCmdConnect, connectAttrs(s.Size(), s.KernelFlags(), opts, fds))
	if err != nil {
		if errors.Is(err, errNoFamily) {
			return 0, err
		}
		return 0, fmt.Errorf("nbd: netlink connect: %w", err)
	}
	for _, m := range msgs {
		ad, err := netlink.NewAttributeDecoder(m.Data)
		if err != nil {
			return 0, fmt.Errorf("nbd: netlink connect reply: %w", err)
		}
		for ad.Next() {
			if ad.Type() == nlAttrIndex {
				return int(ad.Uint32()), nil
			}
		}
	}
	return 0, errors.New("nbd: netlink connect: reply without an index")
}

// nlExecute sends one command to the "nbd" family on a fresh socket (a
// leftover ACK can then never be mistaken for the next reply).
func nlExecute(cmd uint8, ae *netlink.AttributeEncoder) ([]genetlink.Message, error) {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("generic netlink: %w", err)
	}
	defer c.Close()
	fam, err := c.GetFamily(nlFamily)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errNoFamily
		}
		return nil, fmt.Errorf("generic netlink family %q: %w", nlFamily, err)
	}
	data, err := ae.Encode()
	if err != nil {
		return nil, err
	}
	return c.Execute(genetlink.Message{
		Header: genetlink.Header{Command: cmd, Version: fam.Version},
		Data:   data,
	}, fam.ID, netlink.Request|netlink.Acknowledge)
}

// ---- ioctl fallback ----

func (d *KernelDevice) ioctlConnect(ctx context.Context, s *Server, opts AttachOptions, fds []int, ours []net.Conn) error {
	if d.index < 0 {
		idx, err := freeDevice()
		if err != nil {
			return err
		}
		d.index = idx
	}
	f, err := os.OpenFile(d.Path(), os.O_RDWR, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return &KernelError{Reason: "no " + d.Path(), Err: err}
		}
		return fmt.Errorf("nbd: open %s: %w", d.Path(), err)
	}
	fd := int(f.Fd())
	steps := []struct {
		name string
		req  uint
		arg  uintptr
	}{
		{"NBD_SET_BLKSIZE", ioctlSetBlksize, uintptr(opts.BlockSize)},
		{"NBD_SET_SIZE_BLOCKS", ioctlSetSizeBlocks, uintptr(s.Size() / int64(opts.BlockSize))},
		{"NBD_CLEAR_SOCK", ioctlClearSock, 0},
		// Without SET_FLAGS the kernel never sends FLUSH or FUA.
		{"NBD_SET_FLAGS", ioctlSetFlags, uintptr(s.KernelFlags())},
		{"NBD_SET_TIMEOUT", ioctlSetTimeout, uintptr(opts.Timeout / time.Second)},
	}
	for _, fd2 := range fds {
		steps = append(steps, struct {
			name string
			req  uint
			arg  uintptr
		}{"NBD_SET_SOCK", ioctlSetSock, uintptr(fd2)})
	}
	for _, st := range steps {
		if err := ioctl(fd, st.req, st.arg); err != nil {
			_ = ioctl(fd, ioctlClearSock, 0)
			f.Close()
			return fmt.Errorf("nbd: %s %s: %w", st.name, d.Path(), err)
		}
	}
	d.dev = f
	d.doIt = make(chan error, 1)
	// The connections must be served before DO_IT: the kernel may probe
	// the partition table as soon as the device starts.
	d.serve(ours)
	go func() {
		// DO_IT blocks in the kernel for the device's lifetime, in an
		// interruptible wait: any signal delivered to this thread (Go's
		// preemption SIGURG, a SIGUSR1 for the process) makes the kernel
		// shut the sockets down. So the thread blocks every signal, and
		// stays locked so the runtime discards it afterwards instead of
		// reusing a thread with a foreign signal mask.
		runtime.LockOSThread()
		var all unix.Sigset_t
		for i := range all.Val {
			all.Val[i] = ^uint64(0)
		}
		if err := unix.PthreadSigmask(unix.SIG_BLOCK, &all, nil); err != nil {
			d.doIt <- fmt.Errorf("blocking signals: %w", err)
			return
		}
		d.doIt <- ioctl(fd, ioctlDoIt, 0)
	}()
	// Ready when the kernel created /sys/block/nbdN/pid (nbd_start_device).
	pidFile := fmt.Sprintf("/sys/block/nbd%d/pid", d.index)
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	deadline := time.After(10 * time.Second)
	for {
		if _, err := os.Stat(pidFile); err == nil {
			d.ready = true
			return nil
		}
		select {
		case err := <-d.doIt:
			d.doIt <- err
			_ = d.ioctlDisconnect()
			return fmt.Errorf("nbd: NBD_DO_IT %s: %w", d.Path(), err)
		case <-ctx.Done():
			_ = d.ioctlDisconnect()
			return fmt.Errorf("nbd: waiting for %s: %w", d.Path(), ctx.Err())
		case <-deadline:
			_ = d.ioctlDisconnect()
			return fmt.Errorf("nbd: %s did not start", d.Path())
		case <-t.C:
		}
	}
}

func (d *KernelDevice) ioctlDisconnect() error {
	fd := int(d.dev.Fd())
	err := ioctl(fd, ioctlDisconnect, 0)
	if err != nil {
		err = fmt.Errorf("nbd: NBD_DISCONNECT %s: %w", d.Path(), err)
	}
	if doErr := <-d.doIt; doErr != nil && err == nil && !d.ready {
		err = fmt.Errorf("nbd: NBD_DO_IT %s: %w", d.Path(), doErr)
	}
	_ = ioctl(fd, ioctlClearSock, 0)
	d.dev.Close()
	return err
}

func ioctl(fd int, req uint, arg uintptr) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), arg)
	if e != 0 {
		return e
	}
	return nil
}

// freeDevice finds an unconnected /dev/nbdN: one without a pid file (no
// DO_IT running) and with size 0.
func freeDevice() (int, error) {
	ents, err := filepath.Glob("/sys/block/nbd*")
	if err != nil || len(ents) == 0 {
		return 0, &KernelError{Reason: "no /sys/block/nbd* devices", Err: err}
	}
	best := -1
	for _, e := range ents {
		n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(e), "nbd"))
		if err != nil {
			continue
		}
		if _, err := os.Stat(e + "/pid"); err == nil {
			continue
		}
		if b, err := os.ReadFile(e + "/size"); err == nil && strings.TrimSpace(string(b)) != "0" {
			continue
		}
		if best < 0 || n < best {
			best = n
		}
	}
	if best < 0 {
		return 0, errors.New("nbd: every /dev/nbd* device is in use")
	}
	return best, nil
}

// ---- socketpairs ----

func socketpairs(n int) (ours []net.Conn, theirs []int, err error) {
	for range n {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			closeConns(ours)
			closeFDs(theirs)
			return nil, nil, fmt.Errorf("nbd: socketpair: %w", err)
		}
		f := os.NewFile(uintptr(fds[0]), "nbd-server")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			unix.Close(fds[1])
			closeConns(ours)
			closeFDs(theirs)
			return nil, nil, fmt.Errorf("nbd: socketpair: %w", err)
		}
		ours = append(ours, c)
		theirs = append(theirs, fds[1])
	}
	return ours, theirs, nil
}

func closeConns(cs []net.Conn) {
	for _, c := range cs {
		c.Close()
	}
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
