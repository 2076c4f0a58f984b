package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gdrbd/gdrbd/blockdev"
	"github.com/gdrbd/gdrbd/nbd"
	"github.com/gdrbd/gdrbd/replication"
)

// The NBD front end: a Primary serves its volume on a unix socket (and on
// /dev/nbdX when asked); the Resource itself is the nbd.Backend, turning
// each NBD request into core requests of at most MaxRequestSize.

var _ nbd.Backend = (*Resource)(nil)

// kernelSockets is how many sockets /dev/nbdX gets (the kernel spreads
// its queues over them; they do not count as users of the device).
const kernelSockets = 2

// export is a running NBD export. Immutable after startExport published
// it; the server is safe for concurrent use.
type export struct {
	srv       *nbd.Server
	sock      string
	kdev      *nbd.KernelDevice
	kconns    int
	links     bool
	kernelWhy string
	serveDone chan struct{}
}

// closingGrace is how long Secondary waits for NBD clients that are
// already leaving: a client that sent NBD_CMD_DISC and exited is counted
// until the server finished its connection, a few milliseconds later
// (DRBD's open count drops at close(); `nbdcopy ...; drbdadm secondary`
// must work).
const closingGrace = time.Second

// socketClients counts the NBD connections besides the kernel's own.
func (e *export) socketClients() int { return max(e.srv.Connections()-e.kconns, 0) }

// users counts who holds the device besides the kernel's own sockets:
// NBD socket clients (waiting up to closingGrace for leaving ones), and
// whoever has /dev/nbdX open or mounted.
func (e *export) users(ctx context.Context) (int, string) {
	n := e.socketClients()
	if n > 0 {
		t := time.NewTicker(5 * time.Millisecond)
		deadline := time.Now().Add(closingGrace)
		for n > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			n = e.socketClients()
		}
		t.Stop()
	}
	var why []string
	if n > 0 {
		why = append(why, fmt.Sprintf("%d NBD client(s) on %s", n, e.sock))
	}
	if e.kdev != nil {
		if u, err := nbd.DeviceUsage(e.kdev.Path()); err == nil && u.InUse() {
			n++
			why = append(why, e.kdev.Path()+" "+u.String())
		}
	}
	return n, strings.Join(why, "; ")
}

func (e *export) fill(s *NBDStatus) {
	s.Socket = e.sock
	if e.kdev != nil {
		s.Device = e.kdev.Path()
	}
	s.KernelUnavailable = e.kernelWhy
	st := e.srv.Stats()
	s.Clients = max(st.Connections-e.kconns, 0)
	s.Reads, s.Writes, s.Flushes = uint64(st.Reads), uint64(st.Writes), uint64(st.Flushes)
	s.Trims, s.Zeroes, s.FUA = uint64(st.Trims), uint64(st.Zeroes), uint64(st.FUA)
}

// socketPath is `# gdrbd: nbd-socket` or RunDir/<res>.nbd.
func (r *Resource) socketPath() string {
	if p := r.opts.Config.Ext.NBDSocket; p != "" {
		return p
	}
	dir := r.opts.RunDir
	if dir == "" {
		dir = "/run/gdrbd"
	}
	return filepath.Join(dir, r.set.core.Resource+".nbd")
}

// kernelIndex is the N of `# gdrbd: nbd-device /dev/nbdN`, or -1 (any).
func (r *Resource) kernelIndex() int {
	p := r.opts.Config.Ext.NBDDevice
	if n, err := strconv.Atoi(strings.TrimPrefix(p, "/dev/nbd")); err == nil && strings.HasPrefix(p, "/dev/nbd") {
		return n
	}
	return -1
}

// startExport serves the volume after a promotion.
func (r *Resource) startExport(ctx context.Context) error {
	var size int64
	if err := r.call(ctx, func() { size = r.node.Size() }); err != nil {
		return err
	}
	r.exportSize.Store(size)
	name := r.set.core.Resource
	srv, err := nbd.NewServer(nbd.Config{Backend: r, Name: name, Description: "gdrbd resource " + name, Logger: r.log.Named("nbd")})
	if err != nil {
		return fmt.Errorf("driver: export %s: %w", name, err)
	}
	path := r.socketPath()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("driver: export %s: %w", name, err)
	}
	ln, err := nbd.ListenUnix(path)
	if err != nil {
		return fmt.Errorf("driver: export %s: %w", name, err)
	}
	exp := &export{srv: srv, sock: path, serveDone: make(chan struct{})}
	go func() {
		defer close(exp.serveDone)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, nbd.ErrServerClosed) {
			r.log.Error("nbd server stopped", zap.Error(err))
		}
	}()
	if r.opts.KernelNBD {
		// 512-byte logical blocks, as DRBD's own device has on ordinary
		// disks: a file system made on a kernel DRBD device (ext4 with
		// 1 KiB blocks on small volumes) must mount on gdrbd's after a
		// failover, and 4096 would refuse it ("bad block size 1024").
		bs := uint32(512)
		kd, err := nbd.Attach(ctx, srv, nbd.AttachOptions{Index: r.kernelIndex(), Connections: kernelSockets, BlockSize: bs, Logger: r.log.Named("nbd")})
		switch {
		case errors.Is(err, nbd.ErrNoKernelNBD):
			exp.kernelWhy = "kernel NBD unavailable: " + err.Error()
			r.log.Warn("serving the NBD socket only", zap.String("why", exp.kernelWhy))
		case err != nil:
			exp.kernelWhy = "kernel NBD attach failed: " + err.Error()
			r.log.Warn("serving the NBD socket only", zap.String("why", exp.kernelWhy))
		default:
			exp.kdev, exp.kconns = kd, kernelSockets
			if r.set.vol.Device != "" {
				if err := nbd.LinkDRBD(r.devDir, kd.Path(), r.set.vol.Minor, name, r.set.vol.Number); err != nil {
					r.log.Warn("cannot link the DRBD device names", zap.Error(err))
				} else {
					exp.links = true
				}
			}
		}
	}
	r.kernelConns.Store(int32(exp.kconns))
	r.mu.Lock()
	r.export = exp
	r.mu.Unlock()
	r.srv.Store(srv)
	r.log.Info("exporting the device", zap.String("socket", path), zap.Int64("size", srv.Size()),
		zap.String("kernel_device", func() string {
			if exp.kdev != nil {
				return exp.kdev.Path()
			}
			return ""
		}()))
	return nil
}

// stopExport fences the export (new requests fail with reason), waits for
// requests at the backend, and closes it.
func (r *Resource) stopExport(ctx context.Context, exp *export, reason error) error {
	exp.srv.Refuse(reason)
	if err := exp.srv.Drain(ctx); err != nil {
		exp.srv.Refuse(nil)
		return fmt.Errorf("driver: %s: %w", r.set.core.Resource, err)
	}
	r.closeExport(exp)
	return nil
}

// closeExport detaches the kernel device, removes the links and closes
// the server and its socket.
func (r *Resource) closeExport(exp *export) {
	if exp.kdev != nil {
		if exp.links {
			if err := nbd.UnlinkDRBD(r.devDir, exp.kdev.Path(), r.set.vol.Minor, r.set.core.Resource, r.set.vol.Number); err != nil {
				r.log.Warn("cannot remove the DRBD device names", zap.Error(err))
			}
		}
		if err := exp.kdev.Detach(); err != nil {
			r.log.Warn("kernel NBD detach failed", zap.Error(err))
		}
	}
	_ = exp.srv.Close()
	<-exp.serveDone
	r.srv.Store(nil)
	r.kernelConns.Store(0)
	r.mu.Lock()
	if r.export == exp {
		r.export = nil
	}
	r.mu.Unlock()
	r.log.Info("export closed", zap.String("socket", exp.sock))
}

// autoTeardown closes the export after the core demoted on its own
// (split-brain recovery gave up the Primary role): requests already fail
// as read-only; clients are told to go.
func (r *Resource) autoTeardown() {
	r.admin.Lock()
	defer r.admin.Unlock()
	defer r.post(func() { r.autoTearing = false })
	var role replication.Role
	if err := r.call(context.Background(), func() { role = r.node.State().Role }); err != nil || role == replication.RolePrimary {
		return
	}
	r.mu.Lock()
	exp := r.export
	r.mu.Unlock()
	if exp == nil {
		return
	}
	r.log.Warn("no longer Primary: closing the NBD export")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	exp.srv.Refuse(nbd.ErrReadOnly)
	_ = exp.srv.Drain(ctx)
	r.closeExport(exp)
}

// ---- nbd.Backend ----

// ioCall is one backend call split into core requests; the loop owns it.
type ioCall struct {
	left int // pieces not completed (+1 while the call is being split)
	err  error
	done chan error // buffered: the loop never blocks on it
	// fn, for a call started through nbd.AsyncBackend, is called instead
	// of sending on done: exactly once (ended), by the loop or, for calls
	// the loop never finished, by stop.
	fn    func(error)
	ended atomic.Bool
}

// piece is one core request of an ioCall.
type piece struct {
	c   *ioCall
	req replication.Request
}

func isWrite(op replication.Op) bool {
	return op == replication.OpWrite || op == replication.OpTrim || op == replication.OpWriteZeroes
}

func overlap(a, b replication.Request) bool {
	return a.Offset < b.Offset+b.Length && b.Offset < a.Offset+a.Length
}

// finishPiece records the end of one piece (on the loop).
func (r *Resource) finishPiece(c *ioCall, err error) {
	if err != nil && c.err == nil {
		c.err = backendErr(err)
	}
	c.left--
	if c.left == 0 {
		if c.fn != nil {
			r.endAsync(c, c.err)
			return
		}
		c.done <- c.err
		r.wokeWaiter.Store(true)
	}
}

// endAsync reports the end of an asynchronous call, once.
func (r *Resource) endAsync(c *ioCall, err error) {
	if !c.ended.CompareAndSwap(false, true) {
		return
	}
	r.asyncMu.Lock()
	delete(r.async, c)
	r.asyncMu.Unlock()
	c.fn(err)
}

// abortAsync fails every asynchronous call still open with ErrShutdown
// and refuses new ones (stop, once the loop is gone and the disks and
// sockets no longer use any request's buffer).
func (r *Resource) abortAsync() {
	r.asyncMu.Lock()
	r.asyncClosed = true
	open := make([]*ioCall, 0, len(r.async))
	for c := range r.async {
		open = append(open, c)
	}
	r.asyncMu.Unlock()
	for _, c := range open {
		r.endAsync(c, fmt.Errorf("%w: %w", nbd.ErrShutdown, ErrDown))
	}
}

// propose hands a piece to the core, unless it is a write overlapping a
// write still in flight (or one already waiting): then it waits for that
// one to complete. As DRBD's complete_conflicting_writes, this keeps both
// disks applying overlapping writes in the same order; the core issues
// concurrent overlapping writes in parallel locally and on the peer,
// where they could land in different orders.
func (r *Resource) propose(p piece) {
	if isWrite(p.req.Op) && r.conflicting(p.req, len(r.deferred)) {
		r.deferred = append(r.deferred, p)
		return
	}
	r.submitPiece(p)
}

// conflicting reports whether req overlaps an in-flight write or one of
// the first n deferred ones.
func (r *Resource) conflicting(req replication.Request, n int) bool {
	for _, w := range r.writes {
		if overlap(w, req) {
			return true
		}
	}
	for _, d := range r.deferred[:n] {
		if overlap(d.req, req) {
			return true
		}
	}
	return false
}

func (r *Resource) submitPiece(p piece) {
	if err := r.node.Propose(p.req); err != nil {
		r.finishPiece(p.c, err)
		return
	}
	r.calls[p.req.ID] = p.c
	if isWrite(p.req.Op) {
		r.writes[p.req.ID] = p.req
	}
}

// complete records a core Completion (on the loop).
func (r *Resource) complete(cp replication.Completion) {
	c := r.calls[cp.ID]
	if c == nil {
		return
	}
	delete(r.calls, cp.ID)
	_, wasWrite := r.writes[cp.ID]
	delete(r.writes, cp.ID)
	r.finishPiece(c, cp.Err)
	if wasWrite && len(r.deferred) > 0 {
		waiting := r.deferred
		r.deferred = nil
		for _, p := range waiting {
			// FIFO among overlapping writes: one still waiting holds back
			// every later one that overlaps it.
			if r.conflicting(p.req, len(r.deferred)) {
				r.deferred = append(r.deferred, p)
				continue
			}
			r.submitPiece(p)
		}
	}
}

// backendErr maps core errors onto the errors the NBD server translates.
func backendErr(err error) error {
	switch {
	case errors.Is(err, replication.ErrNotPrimary):
		return fmt.Errorf("%w: %w", nbd.ErrReadOnly, err)
	case errors.Is(err, replication.ErrOutOfRange):
		return fmt.Errorf("%w: %w", blockdev.ErrOutOfRange, err)
	}
	return err
}

// io proposes [off, off+length) in pieces of at most limit bytes and
// waits for all of them; the first error wins. data (reads and writes)
// is used in place, never copied: the core is done with it when the last
// piece completed, before io returns.
func (r *Resource) io(op replication.Op, off, length int64, data []byte, fua bool) error {
	c := &ioCall{done: make(chan error, 1), left: 1}
	r.ensureLoop()
	if !r.post(func() { r.split(c, op, off, length, data, fua) }) {
		return fmt.Errorf("%w: %w", nbd.ErrShutdown, ErrDown)
	}
	select {
	case err := <-c.done:
		return err
	case <-r.done:
		return fmt.Errorf("%w: %w", nbd.ErrShutdown, ErrDown)
	}
}

// split proposes the pieces of a call (on the loop).
func (r *Resource) split(c *ioCall, op replication.Op, off, length int64, data []byte, fua bool) {
	limit := int64(replication.MaxRequestSize)
	if op == replication.OpTrim || op == replication.OpWriteZeroes {
		limit = replication.MaxDiscardSize
	}
	for pos := int64(0); pos < length || (op == replication.OpFlush && pos == 0); {
		n := min(length-pos, limit)
		req := replication.Request{ID: r.nextReq, Op: op, Offset: off + pos, Length: n, FUA: fua}
		r.nextReq++
		if data != nil {
			req.Data = data[pos : pos+n]
		}
		c.left++
		r.propose(piece{c: c, req: req})
		if op == replication.OpFlush {
			break
		}
		pos += n
	}
	r.finishPiece(c, nil) // the splitting is done
}

// start is io for nbd.AsyncBackend: fn gets the result, called from the
// loop (or from stop, with ErrShutdown, for a call the loop never ended).
func (r *Resource) start(op replication.Op, off int64, data []byte, fua bool, fn func(error)) {
	c := &ioCall{left: 1, fn: fn}
	r.asyncMu.Lock()
	if r.asyncClosed {
		r.asyncMu.Unlock()
		fn(fmt.Errorf("%w: %w", nbd.ErrShutdown, ErrDown))
		return
	}
	r.async[c] = struct{}{}
	r.asyncMu.Unlock()
	r.ensureLoop()
	if !r.post(func() { r.split(c, op, off, int64(len(data)), data, fua) }) {
		r.endAsync(c, fmt.Errorf("%w: %w", nbd.ErrShutdown, ErrDown))
	}
}

// StartRead is ReadAt for nbd.AsyncBackend: no goroutine waits for it.
func (r *Resource) StartRead(p []byte, off int64, done func(error)) {
	r.start(replication.OpRead, off, p, false, done)
}

// StartWrite is WriteAt for nbd.AsyncBackend.
func (r *Resource) StartWrite(p []byte, off int64, fua bool, done func(error)) {
	r.start(replication.OpWrite, off, p, fua, done)
}

// Size is the size exported (fixed at promotion).
func (r *Resource) Size() int64 { return r.exportSize.Load() }

// ReadAt reads p at off through the core (from the local disk, or from
// the peer when the local copy is not UpToDate).
func (r *Resource) ReadAt(_ context.Context, p []byte, off int64) error {
	return r.io(replication.OpRead, off, int64(len(p)), p, false)
}

// WriteAt replicates p to off; with fua it returns once the write is
// durable on every disk.
func (r *Resource) WriteAt(_ context.Context, p []byte, off int64, fua bool) error {
	return r.io(replication.OpWrite, off, int64(len(p)), p, fua)
}

// Flush makes every completed write durable on both disks.
func (r *Resource) Flush(context.Context) error {
	return r.io(replication.OpFlush, 0, 0, nil, false)
}

// Trim discards the range locally and on the peer.
func (r *Resource) Trim(ctx context.Context, off, length int64, fua bool) error {
	if err := r.io(replication.OpTrim, off, length, nil, false); err != nil {
		return err
	}
	if fua {
		return r.Flush(ctx)
	}
	return nil
}

// WriteZeroes zeroes the range on both disks. A FAST_ZERO request is
// refused: the peer may have to write the zeroes.
func (r *Resource) WriteZeroes(ctx context.Context, off, length int64, opt nbd.ZeroOptions) error {
	if opt.Fast {
		return fmt.Errorf("%w: replicated zeroing", nbd.ErrNotFast)
	}
	if err := r.io(replication.OpWriteZeroes, off, length, nil, false); err != nil {
		return err
	}
	if opt.FUA {
		return r.Flush(ctx)
	}
	return nil
}
