package driver

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/gdrbd/gdrbd/bitmap"
	"github.com/gdrbd/gdrbd/blockdev"
	"github.com/gdrbd/gdrbd/metadata"
	"github.com/gdrbd/gdrbd/replication"
)

// diskWorkers is the size of the pool that carries out DiskOps: enough to
// keep several fdatasyncs and reads in flight while writes go on.
const diskWorkers = 16

// disk is an attached backing device and its metadata device with the
// goroutines that do their I/O: a pool for DiskOps and one metadata
// writer. The loop owns the pointer; the goroutines only use the devices
// and the queues. Closed exactly once, by shutdown.
type disk struct {
	data     blockdev.Device
	meta     blockdev.Device // == data for internal metadata
	layout   metadata.Layout
	flushMD  bool
	ops      *queue[diskJob]
	metas    *queue[replication.MetaWrite]
	wg       sync.WaitGroup
	closed   chan struct{} // closed when the devices are closed
	shutOnce sync.Once
	// hook, when set (tests only), runs before every DiskOp.
	hook func(replication.DiskOp)

	// Native AIO for aligned reads and writes (FUA too) and flushes of an
	// O_DIRECT data device (nil: everything goes through the pool).
	// Loop-owned: jobs, pending, nextTag.
	aio   *blockdev.AsyncIO
	subs  *queue[blockdev.AsyncOp] // to the submitter goroutine
	subWG sync.WaitGroup
	// handedOff counts batches given to the submitter; aioFlushes and
	// aioFUA the flushes and FUA writes that succeeded through native AIO
	// (tests).
	handedOff  atomic.Int64
	aioFlushes atomic.Int64
	aioFUA     atomic.Int64
	jobs       map[uint64]aioJob
	pending    []blockdev.AsyncOp
	nextTag    uint64
}

// aioJob is a DiskOp submitted to native AIO; buf is the pool buffer of
// a read the core gave no buffer for.
type aioJob struct {
	j   diskJob
	buf []byte
}

// aioDepth is the native AIO context size: more than the core keeps in
// flight in practice (NBD's in-flight limit plus max-buffers of peer
// writes in 4 KiB pieces would be the worst case; Submit hands what does
// not fit back to the worker pool).
const aioDepth = 1024

// diskJob is one DiskOp; recycle says its write buffer came from the
// driver's pool (a peer's P_DATA payload) and goes back after DiskDone.
type diskJob struct {
	op      replication.DiskOp
	recycle bool
}

// openDevice opens a backing or metadata device. O_DIRECT is used when
// the device takes 512-byte aligned writes (what DRBD's sectors need):
// the NBD kernel client must not recurse into the page cache of the
// server that serves it. Otherwise the page cache plus fdatasync.
func openDevice(path string, exclusive bool) (*blockdev.File, error) {
	f, err := blockdev.Open(path, blockdev.Options{Direct: true, Exclusive: exclusive})
	if err != nil {
		return nil, err
	}
	if f.Direct() && f.Alignment() > 512 {
		f.Close()
		return blockdev.Open(path, blockdev.Options{Exclusive: exclusive})
	}
	return f, nil
}

// loaded is what Attach read from disk, ready for Node.Attach.
type loaded struct {
	d      *disk
	params replication.AttachParams
	orig   metadata.Superblock // as found, restored if the core refuses
	md     *metadata.Metadata
}

// loadDisk opens the volume's devices and its metadata the way drbdadm
// attach does (drbdmeta apply-al, then the kernel's attach): an unclean
// superblock (the node crashed or was killed while attached) gets the
// activity log applied to the bitmap when the node was Primary, and the
// marks are written out BEFORE any new transaction can overwrite the
// ring. It returns with the superblock marked unclean (attached).
func loadDisk(s *settings, log *zap.Logger) (_ *loaded, err error) {
	v := s.vol
	if v.Disk == "" || v.Disk == "none" {
		return nil, fmt.Errorf("driver: attach %s: no backing disk configured (disk none)", s.core.Resource)
	}
	data, err := openDevice(v.Disk, true)
	if err != nil {
		return nil, fmt.Errorf("driver: attach %s: %w", s.core.Resource, err)
	}
	var meta blockdev.Device = data
	var metaFile *blockdev.File
	metaPath := v.Disk
	if s.metaLoc.Kind != metadata.KindInternal {
		metaPath = v.MetaDisk
		// Indexed external metadata may be shared with other volumes.
		metaFile, err = openDevice(v.MetaDisk, s.metaLoc.Kind == metadata.KindFlexExternal)
		if err != nil {
			data.Close()
			return nil, fmt.Errorf("driver: attach %s: meta-disk: %w", s.core.Resource, err)
		}
		meta = metaFile
	}
	defer func() {
		if err != nil {
			data.Close()
			if metaFile != nil {
				metaFile.Close()
			}
		}
	}()
	md, err := metadata.Open(meta, s.metaLoc)
	if err != nil {
		if errors.Is(err, metadata.ErrNoMetadata) {
			return nil, fmt.Errorf("driver: attach %s: no valid meta data found on %s (run create-md): %w", s.core.Resource, metaPath, err)
		}
		return nil, fmt.Errorf("driver: attach %s: %w", s.core.Resource, err)
	}
	l := md.Layout
	maxSect := l.MaxUsableSectors()
	if s.metaLoc.Kind != metadata.KindInternal {
		maxSect = min(maxSect, uint64(data.Size())/512)
	}
	user := uint64(v.DiskOptions.Size)
	size := attachSize(maxSect, user, md.SB.LaSizeSect)
	if size == 0 {
		return nil, fmt.Errorf("driver: attach %s: backing device %s has no room for data", s.core.Resource, v.Disk)
	}
	bm := bitmap.ForSectors(size)
	if n := int64(bm.Pages()) * bitmap.PageBytes; n > l.BitmapAreaBytes() {
		return nil, fmt.Errorf("driver: attach %s: a bitmap of %d bytes does not fit the %d-byte bitmap area", s.core.Resource, n, l.BitmapAreaBytes())
	}
	raw := blockdev.AlignedBuffer(bm.Pages() * bitmap.PageBytes)
	if _, err := meta.ReadAt(raw, l.BMByteOffset()); err != nil {
		return nil, fmt.Errorf("driver: attach %s: read bitmap: %w", s.core.Resource, err)
	}
	if err := bm.UnmarshalBinary(raw); err != nil {
		return nil, fmt.Errorf("driver: attach %s: bitmap: %w", s.core.Resource, err)
	}

	// The ring tells where transaction numbers continue, clean or not:
	// new transactions must sort after everything still in it.
	next := uint32(0)
	rep, repErr := md.ReplayAL()
	if repErr == nil {
		next = rep.NextNumber()
	}
	if md.CheckAttachable() != nil && md.SB.Flags&metadata.FlagPrimaryInd != 0 {
		if repErr != nil {
			return nil, fmt.Errorf("driver: attach %s: unclean meta data and the activity log cannot be applied: %w", s.core.Resource, repErr)
		}
		hot := rep.HotExtents()
		added := metadata.MarkHotExtents(bm, hot)
		log.Info("applied activity log of an unclean shutdown",
			zap.Int("extents", len(hot)), zap.Uint64("marked_kib", added*4), zap.Uint32("next_transaction", next))
		if err := md.WriteDirtyBitmap(bm); err != nil {
			return nil, fmt.Errorf("driver: attach %s: write applied bitmap: %w", s.core.Resource, err)
		}
	} else if md.CheckAttachable() != nil {
		log.Info("unclean meta data of a Secondary: no activity log to apply")
	}
	bm.ClearDirty()

	extents := metadata.ClampALExtents(s.core.ALExtents, l)
	al, err := metadata.NewActivityLog(metadata.ALConfig{Extents: extents, Layout: l, NextNumber: next})
	if err != nil {
		return nil, fmt.Errorf("driver: attach %s: %w", s.core.Resource, err)
	}
	orig := md.SB
	md.SB.ALNrExtents = uint32(extents)
	// Attached from here on: a crash must make the next attach apply the
	// activity log, so the unclean mark is durable BEFORE the core can
	// write its first transaction.
	if err := md.MarkUnclean(); err != nil {
		return nil, fmt.Errorf("driver: attach %s: %w", s.core.Resource, err)
	}
	d := &disk{
		data: data, meta: meta, layout: l, flushMD: s.core.MDFlushes,
		ops: newQueue[diskJob](), metas: newQueue[replication.MetaWrite](),
		closed: make(chan struct{}),
	}
	return &loaded{
		d:  d,
		md: md,
		params: replication.AttachParams{
			MaxSectors: maxSect, UserSectors: user,
			Super: md.SB, Layout: l, Bitmap: bm, AL: al,
		},
		orig: orig,
	}, nil
}

// attachSize is the size the core settles on at attach (Node.Attach):
// the usable size, limited by the disk option size, and the last agreed
// size when that is not larger. The bitmap is read for exactly that.
func attachSize(maxSect, user, la uint64) uint64 {
	size := maxSect
	if user != 0 && user < size {
		size = user
	}
	if la != 0 && la <= size {
		size = la
	}
	return size
}

// abandon restores the superblock as it was found and closes the devices
// (Node.Attach refused the disk).
func (ld *loaded) abandon() {
	ld.md.SB = ld.orig
	_ = ld.md.WriteSuperblock()
	ld.d.closeDevices()
}

func (d *disk) closeDevices() {
	d.data.Close()
	if d.meta != d.data {
		d.meta.Close()
	}
}

// start launches the I/O goroutines; done posts a completion to the loop.
// Native AIO is set up for an O_DIRECT data device unless the options or
// a test hook say otherwise; where the kernel refuses it, the pool does
// everything.
func (d *disk) start(r *Resource) {
	if f, ok := d.data.(*blockdev.File); ok && f.Direct() && d.hook == nil && !r.opts.SyncIO {
		a, err := blockdev.NewAsyncIO(f, aioDepth, func(rs []blockdev.AsyncResult) bool {
			if r.runInline(func() { r.reaperPump = true; r.aioDone(d, rs) }) {
				// Yield to a caller that waits for a flush or other
				// synchronous request this completed, if one was woken.
				return r.wokeWaiter.Swap(false)
			}
			done := append([]blockdev.AsyncResult(nil), rs...)
			r.post(func() { r.aioDone(d, done) })
			return true // to the loop
		})
		if err != nil {
			r.log.Info("disk I/O through a thread pool", zap.String("why", err.Error()))
		} else {
			d.aio = a
			d.jobs = make(map[uint64]aioJob)
			d.subs = newQueue[blockdev.AsyncOp]()
			d.subWG.Add(1)
			go func() {
				defer d.subWG.Done()
				d.submit(r)
			}()
		}
	}
	for range diskWorkers {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.work(r)
		}()
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.writeMeta(r)
	}()
}

// shutdown stops the goroutines once their queues are empty and closes
// the devices. The core has no I/O in flight when it is called (detach
// finished), or the node is going down hard (crash).
func (d *disk) shutdown() {
	d.shutOnce.Do(func() {
		if d.aio != nil {
			d.subs.close()
			d.subWG.Wait()
			d.aio.Close() // every submitted request delivered first
		}
		d.ops.close()
		d.metas.close()
		d.wg.Wait()
		d.closeDevices()
		close(d.closed)
	})
}

// work carries out DiskOps. Each completion goes back to the loop on its
// own: they are independent and may complete in any order.
func (d *disk) work(r *Resource) {
	for {
		j, ok := d.ops.pop()
		if !ok {
			return
		}
		data, err := d.do(r, j.op)
		r.post(func() { r.diskDone(d, j, err, data) })
	}
}

// queueAsync takes j for native AIO when it qualifies (on the loop): a
// read or a write (with FUA where the kernel takes RWF_DSYNC) with
// aligned buffer, offset and length, or a flush (where the kernel has AIO
// fsync).
// Submitted by submitAsync, at the end of the pump.
func (d *disk) queueAsync(r *Resource, j diskJob) bool {
	if d.aio == nil {
		return false
	}
	op := j.op
	a := aioJob{j: j}
	switch {
	case op.Op == replication.OpWrite:
		if !d.aio.Accepts(op.Data, op.Offset) || op.FUA && !d.aio.AcceptsFUA() {
			return false
		}
		d.pending = append(d.pending, blockdev.AsyncOp{Write: true, FUA: op.FUA, P: op.Data, Off: op.Offset})
	case op.Op == replication.OpFlush:
		// Started by this io_submit, on the loop: a flush through the pool
		// waits for a worker goroutine to be woken and scheduled first (on
		// a busy 2-CPU machine, often longer than the flush itself), and
		// the Secondary holds the next epoch's writes until it completes.
		if !d.aio.AcceptsFlush() {
			return false
		}
		d.pending = append(d.pending, blockdev.AsyncOp{Flush: true})
	case op.Op == replication.OpRead:
		p := op.Data
		if p == nil {
			if op.Length <= 0 || op.Length > replication.MaxRequestSize {
				return false
			}
			a.buf = r.pool.Get(int(op.Length))
			p = a.buf
		}
		if !d.aio.Accepts(p, op.Offset) {
			if a.buf != nil {
				r.pool.Put(a.buf)
			}
			return false
		}
		d.pending = append(d.pending, blockdev.AsyncOp{P: p, Off: op.Offset})
	default:
		return false
	}
	d.nextTag++
	d.pending[len(d.pending)-1].Tag = d.nextTag
	d.jobs[d.nextTag] = a
	return true
}

// inlineAIO is how many native AIO requests may be in flight (counting
// the batch) for the loop to call io_submit itself. io_submit sleeps only
// for a free request tag of the device (32 on a SATA disk, 64-1023
// elsewhere) or a file system allocation; below this it does not wait for
// tags, and the loop saves the hand-off to the submitter (tens of us per
// batch on this VM). Above it the submitter goroutine submits, so a slow
// or stuck device stalls that goroutine, never the loop.
const inlineAIO = 32

// submitAsync submits what queueAsync took, in one io_submit (on the
// loop): itself while few requests are in flight, else through the
// submitter goroutine.
func (d *disk) submitAsync(r *Resource) {
	if len(d.pending) == 0 {
		return
	}
	if len(d.jobs) <= inlineAIO {
		flushOK, fuaOK := d.aio.AcceptsFlush(), d.aio.AcceptsFUA()
		var n int
		var err error
		if r.reaperPump {
			n, err = d.aio.SubmitFromDone(d.pending)
		} else {
			n, err = d.aio.Submit(d.pending)
		}
		if n < len(d.pending) {
			r.log.Debug("native AIO refused requests, they go to the pool", zap.Int("submitted", n), zap.Int("left", len(d.pending)-n), zap.Error(err))
			d.logDowngrade(r, flushOK, fuaOK, err)
			d.spill(r, d.pending[n:])
		}
	} else if d.subs.pushAll(d.pending) {
		d.handedOff.Add(1)
	} else {
		d.spill(r, d.pending)
	}
	clear(d.pending)
	d.pending = d.pending[:0]
}

// submit is the submitter goroutine: one io_submit per batch the loop
// handed over; what the kernel does not take (its context full) goes
// back to the loop for the worker pool.
func (d *disk) submit(r *Resource) {
	var batch []blockdev.AsyncOp
	for {
		var ok bool
		batch, ok = d.subs.popAll(batch[:0])
		if !ok {
			return
		}
		flushOK, fuaOK := d.aio.AcceptsFlush(), d.aio.AcceptsFUA()
		n, err := d.aio.Submit(batch)
		if n < len(batch) {
			left := append([]blockdev.AsyncOp(nil), batch[n:]...)
			r.log.Debug("native AIO refused requests, they go to the pool", zap.Int("submitted", n), zap.Int("left", len(left)), zap.Error(err))
			d.logDowngrade(r, flushOK, fuaOK, err)
			r.post(func() {
				if r.disk == d {
					d.spill(r, left)
				}
			})
		}
		clear(batch)
	}
}

// logDowngrade says once, when a Submit turned AIO flushes or FUA writes
// off (the kernel refused them), that they go through the pool from now
// on: slower (a goroutine wake-up, and for FUA write + fdatasync), not
// less safe.
func (d *disk) logDowngrade(r *Resource, flushOK, fuaOK bool, err error) {
	if flushOK && !d.aio.AcceptsFlush() {
		r.log.Info("native AIO: the kernel refused an fsync request; flushes go through the disk worker pool", zap.Error(err))
	}
	if fuaOK && !d.aio.AcceptsFUA() {
		r.log.Info("native AIO: the kernel refused RWF_DSYNC; FUA writes go through the disk worker pool (write, then fdatasync)", zap.Error(err))
	}
}

// spill sends AIO jobs that were not submitted to the worker pool (on the
// loop).
func (d *disk) spill(r *Resource, ops []blockdev.AsyncOp) {
	for _, op := range ops {
		if a, ok := d.jobs[op.Tag]; ok {
			delete(d.jobs, op.Tag)
			d.toPool(r, a)
		}
	}
}

// toPool gives an AIO job to the worker pool to do whole (its read
// buffer, if any, back to the pool first).
func (d *disk) toPool(r *Resource, a aioJob) {
	if a.buf != nil {
		r.pool.Put(a.buf)
	}
	if !d.ops.push(a.j) {
		r.node.DiskDone(a.j.op.ID, replication.ErrNotAttached, nil)
	}
}

// aioDone reports native AIO completions to the core (on the loop). A
// short transfer is redone by the pool, whole.
func (r *Resource) aioDone(d *disk, rs []blockdev.AsyncResult) {
	for _, res := range rs {
		a, ok := d.jobs[res.Tag]
		if !ok {
			continue
		}
		delete(d.jobs, res.Tag)
		if r.disk != d {
			// Detached meanwhile: nobody waits for it.
			if a.buf != nil {
				r.pool.Put(a.buf)
			}
			continue
		}
		op := a.j.op
		err := res.Err
		if err == nil && op.Op != replication.OpFlush && int64(res.N) != op.Length {
			d.toPool(r, a)
			continue
		}
		switch {
		case err != nil:
		case op.Op == replication.OpFlush:
			d.aioFlushes.Add(1)
		case op.FUA:
			d.aioFUA.Add(1)
		}
		if err != nil {
			if op.Op == replication.OpFlush {
				err = fmt.Errorf("driver: flush: %w", err)
			} else {
				err = fmt.Errorf("driver: %v at %d: %w", op.Op, op.Offset, err)
			}
			if a.buf != nil {
				r.pool.Put(a.buf)
				a.buf = nil
			}
		}
		r.diskDone(d, a.j, err, a.buf)
	}
}

// do runs one DiskOp. FUA is the write (or zeroing) followed by
// fdatasync: the Device contract has nothing finer.
func (d *disk) do(r *Resource, op replication.DiskOp) ([]byte, error) {
	if d.hook != nil {
		d.hook(op)
	}
	switch op.Op {
	case replication.OpRead:
		if op.Data != nil {
			_, err := d.data.ReadAt(op.Data, op.Offset)
			return nil, err
		}
		buf := r.pool.Get(int(op.Length))
		if _, err := d.data.ReadAt(buf, op.Offset); err != nil {
			return nil, err
		}
		return buf, nil
	case replication.OpWrite:
		if _, err := d.data.WriteAt(op.Data, op.Offset); err != nil {
			return nil, err
		}
	case replication.OpTrim:
		if err := blockdev.Discard(d.data, op.Offset, op.Length); err != nil {
			return nil, err
		}
	case replication.OpWriteZeroes:
		if err := blockdev.WriteZeroes(d.data, op.Offset, op.Length); err != nil {
			return nil, err
		}
	case replication.OpFlush:
		return nil, d.data.Flush()
	default:
		return nil, fmt.Errorf("driver: unknown disk op %v", op.Op)
	}
	if op.FUA {
		return nil, d.data.Flush()
	}
	return nil, nil
}

// writeMeta is the metadata writer: it writes whatever MetaWrites are
// queued, makes them durable with one fdatasync (unless md-flushes is
// off), and only THEN reports MetaDone for each: the core orders the
// activity log BEFORE the data writes it covers on that promise.
func (d *disk) writeMeta(r *Resource) {
	var batch []replication.MetaWrite
	for {
		var ok bool
		batch, ok = d.metas.popAll(batch[:0])
		if !ok {
			return
		}
		errs := make([]error, len(batch))
		for i, m := range batch {
			p := m.Data
			if !blockdev.IsAligned(p) {
				p = blockdev.AlignedBuffer(len(m.Data))
				copy(p, m.Data)
			}
			if _, err := d.meta.WriteAt(p, m.Offset); err != nil {
				errs[i] = fmt.Errorf("driver: write %s at %d: %w", m.What, m.Offset, err)
			}
		}
		if d.flushMD {
			if err := d.meta.Flush(); err != nil {
				for i := range errs {
					if errs[i] == nil {
						errs[i] = fmt.Errorf("driver: flush metadata: %w", err)
					}
				}
			}
		}
		done := append([]replication.MetaWrite(nil), batch...)
		r.post(func() {
			for i, m := range done {
				if r.disk == d {
					r.node.MetaDone(m.ID, errs[i])
				}
			}
		})
	}
}
