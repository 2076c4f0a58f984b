package metadata

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"

	"github.com/gdrbd/gdrbd/bitmap"
	"github.com/gdrbd/gdrbd/blockdev"
)

// Metadata is one volume's v08 metadata on its metadata device: the
// superblock in memory plus I/O helpers for the activity log ring and the
// bitmap area. It is what the CLI verbs and (later) the daemon's attach
// path use; the pure parts (Superblock, ActivityLog, ReplayAL, bitmap)
// work without it.
//
// A Metadata is not safe for concurrent use.
type Metadata struct {
	dev blockdev.Device
	// Layout is the geometry, as the superblock describes it.
	Layout Layout
	// SB is the superblock; change it, then WriteSuperblock.
	SB Superblock
	// ClippedFrom is the on-disk la-size-sect when it exceeded what the
	// layout can hold and was truncated in SB (drbdmeta prints "#
	// la-size-sect was too big"); 0 otherwise.
	ClippedFrom uint64
}

// Device is the metadata device.
func (m *Metadata) Device() blockdev.Device { return m.dev }

func readAt(dev blockdev.Device, n int, off int64) ([]byte, error) {
	buf := blockdev.AlignedBuffer(n)
	if _, err := dev.ReadAt(buf, off); err != nil {
		return nil, fmt.Errorf("metadata: read %d bytes at %d: %w", n, off, err)
	}
	return buf, nil
}

func writeAt(dev blockdev.Device, p []byte, off int64) error {
	if !blockdev.IsAligned(p) {
		q := blockdev.AlignedBuffer(len(p))
		copy(q, p)
		p = q
	}
	if _, err := dev.WriteAt(p, off); err != nil {
		return fmt.Errorf("metadata: write %d bytes at %d: %w", len(p), off, err)
	}
	return nil
}

func flush(dev blockdev.Device) error {
	if err := dev.Flush(); err != nil {
		return fmt.Errorf("metadata: flush: %w", err)
	}
	return nil
}

// Open reads and validates the superblock of the metadata at loc on dev.
// Errors wrap ErrNoMetadata when there is none (or it does not fit the
// location, e.g. after the device was resized), ErrV09 for DRBD 9
// metadata, ErrTooSmall for devices too small to hold any.
func Open(dev blockdev.Device, loc Location) (*Metadata, error) {
	probe, err := ComputeLayout(loc, dev.Size(), DefaultALStripes, DefaultALStripeSize4k)
	if err != nil {
		return nil, err
	}
	buf, err := readAt(dev, SuperblockSize, probe.MDOffset)
	if err != nil {
		return nil, err
	}
	sb, err := DecodeSuperblock(buf)
	if err != nil {
		return nil, err
	}
	l, err := ComputeLayout(loc, dev.Size(), sb.ALStripes, sb.ALStripeSize4k)
	if err != nil {
		return nil, err
	}
	if err := l.check(&sb); err != nil {
		return nil, err
	}
	// The superblock is authoritative for the area size of external
	// metadata (the device may have grown since create-md).
	l.MDSizeSect, l.ALOffset, l.BMOffset = sb.MDSizeSect, sb.ALOffset, sb.BMOffset
	m := &Metadata{dev: dev, Layout: l, SB: sb}
	if max := l.MaxUsableSectors(); sb.LaSizeSect > max {
		m.ClippedFrom = sb.LaSizeSect
		m.SB.LaSizeSect = max
	}
	return m, nil
}

// CreateOptions are create-md's options (a plain value).
type CreateOptions struct {
	// ALStripes and ALStripeSize4k size the activity log (0: 1 x 8, 32 KiB).
	ALStripes, ALStripeSize4k uint32
	// PeerMaxBioSize seeds la-peer-max-bio-size (drbdmeta
	// --peer-max-bio-size).
	PeerMaxBioSize uint32
}

// NewSuperblock returns the superblock drbdmeta create-md writes for
// layout l: no agreed size yet, current UUID 4 ("just created"), AL clean,
// 257 al-extents recorded.
func NewSuperblock(l Layout, peerMaxBioSize uint32) Superblock {
	return Superblock{
		UUIDs:            GenerationUUIDs{Current: UUIDJustCreated},
		Flags:            FlagALClean,
		Magic:            MagicV08,
		MDSizeSect:       l.MDSizeSect,
		ALOffset:         l.ALOffset,
		ALNrExtents:      257,
		BMOffset:         l.BMOffset,
		BMBytesPerBit:    4096,
		LaPeerMaxBioSize: peerMaxBioSize,
		ALStripes:        l.ALStripes,
		ALStripeSize4k:   l.ALStripeSize4k,
	}
}

// Create writes fresh metadata at loc, as drbdmeta create-md does: the
// activity log ring filled with "initialized" transactions, the bitmap
// area zeroed, then the superblock, each flushed before the next. It does
// not ask questions: callers check for existing metadata and file systems
// first (see Open and DetectSignature).
func Create(dev blockdev.Device, loc Location, opts CreateOptions) (*Metadata, error) {
	st, sz := opts.ALStripes, opts.ALStripeSize4k
	if st == 0 && sz == 0 {
		st, sz = DefaultALStripes, DefaultALStripeSize4k
	}
	l, err := ComputeLayout(loc, dev.Size(), st, sz)
	if err != nil {
		return nil, err
	}
	m := &Metadata{dev: dev, Layout: l, SB: NewSuperblock(l, opts.PeerMaxBioSize)}
	if err := m.InitializeAL(); err != nil {
		return nil, err
	}
	if err := m.zeroBitmapArea(); err != nil {
		return nil, err
	}
	if err := m.WriteSuperblock(); err != nil {
		return nil, err
	}
	return m, nil
}

// InitialBitmapBytes is how much of the bitmap area create-md zeroes: the
// bitmap for the whole metadata device.
func (m *Metadata) InitialBitmapBytes() int64 {
	return int64(BitmapBytes(uint64(m.dev.Size()) >> 9))
}

func (m *Metadata) zeroBitmapArea() error {
	n := min(m.InitialBitmapBytes(), m.Layout.BitmapAreaBytes())
	if err := blockdev.WriteZeroes(m.dev, m.Layout.BMByteOffset(), n); err != nil {
		return fmt.Errorf("metadata: initialize bitmap: %w", err)
	}
	return flush(m.dev)
}

// InitializeAL overwrites the whole ring with drbdmeta's "initialized"
// transactions and flushes.
func (m *Metadata) InitializeAL() error {
	blk := InitializedBlock()
	ring := blockdev.AlignedBuffer(int(m.Layout.ALBytes()))
	for off := 0; off < len(ring); off += ALTransactionSize {
		copy(ring[off:], blk)
	}
	if err := writeAt(m.dev, ring, m.Layout.ALByteOffset()); err != nil {
		return fmt.Errorf("metadata: initialize activity log: %w", err)
	}
	return flush(m.dev)
}

// WriteSuperblock checks SB against the layout, writes it and flushes.
func (m *Metadata) WriteSuperblock() error {
	if err := m.SB.Validate(); err != nil {
		return err
	}
	if err := m.Layout.check(&m.SB); err != nil {
		return err
	}
	buf := blockdev.AlignedBuffer(SuperblockSize)
	m.SB.Encode(buf)
	if err := writeAt(m.dev, buf, m.Layout.MDOffset); err != nil {
		return err
	}
	return flush(m.dev)
}

// MarkUnclean records that the volume is attached: the 84-unclean magic
// and AL-clean cleared, written and flushed BEFORE the first activity log
// transaction, so a crash from now on leaves metadata that demands
// apply-al.
func (m *Metadata) MarkUnclean() error {
	m.SB.Magic = MagicV08Unclean
	m.SB.Flags &^= FlagALClean
	return m.WriteSuperblock()
}

// CheckAttachable refuses metadata whose activity log was not applied,
// with the kernel's message.
func (m *Metadata) CheckAttachable() error {
	if !m.SB.Clean() {
		return ErrUnclean
	}
	return nil
}

// Wipe destroys the superblock (wipe-md): 4 KiB of zeroes at its offset.
func (m *Metadata) Wipe() error {
	if err := writeAt(m.dev, blockdev.AlignedBuffer(SuperblockSize), m.Layout.MDOffset); err != nil {
		return err
	}
	return flush(m.dev)
}

// BitmapBytes is the on-disk size of the bitmap for the last agreed size
// (drbdmeta's bm-bytes).
func (m *Metadata) BitmapBytes() int64 { return int64(BitmapBytes(m.SB.LaSizeSect)) }

// ReadBitmapRaw reads the bitmap for the last agreed size exactly as
// stored, surplus bits included.
func (m *Metadata) ReadBitmapRaw() ([]byte, error) {
	n := m.BitmapBytes()
	if n > m.Layout.BitmapAreaBytes() {
		return nil, fmt.Errorf("metadata: bitmap of %d bytes does not fit the %d-byte bitmap area", n, m.Layout.BitmapAreaBytes())
	}
	return readAt(m.dev, int(n), m.Layout.BMByteOffset())
}

// ReadBitmap loads the bitmap for the last agreed size. Its dirty set is
// empty: memory matches the disk.
func (m *Metadata) ReadBitmap() (*bitmap.Bitmap, error) {
	raw, err := m.ReadBitmapRaw()
	if err != nil {
		return nil, err
	}
	bm := bitmap.ForSectors(m.SB.LaSizeSect)
	if err := bm.UnmarshalBinary(raw); err != nil {
		return nil, err
	}
	return bm, nil
}

// WriteBitmapPages writes the given pages of bm into the bitmap area,
// flushes, and then clears their dirty marks.
func (m *Metadata) WriteBitmapPages(bm *bitmap.Bitmap, pages []int) error {
	if len(pages) == 0 {
		return nil
	}
	buf := blockdev.AlignedBuffer(bitmap.PageBytes)
	for _, p := range pages {
		off := int64(p) * bitmap.PageBytes
		if off+bitmap.PageBytes > m.Layout.BitmapAreaBytes() {
			return fmt.Errorf("metadata: bitmap page %d lies past the %d-byte bitmap area", p, m.Layout.BitmapAreaBytes())
		}
		bm.EncodePage(p, buf)
		if err := writeAt(m.dev, buf, m.Layout.BMByteOffset()+off); err != nil {
			return err
		}
	}
	if err := flush(m.dev); err != nil {
		return err
	}
	for _, p := range pages {
		bm.ClearPageDirty(p)
	}
	return nil
}

// WriteDirtyBitmap writes out every dirty page of bm (then flushes and
// clears the marks).
func (m *Metadata) WriteDirtyBitmap(bm *bitmap.Bitmap) error {
	return m.WriteBitmapPages(bm, slices.Collect(bm.DirtyPages()))
}

// CommitTransaction does the I/O for a sealed activity log transaction in
// the required order: the dirty bitmap pages of the extents it evicts,
// flushed, THEN the transaction block, flushed. After it returns the
// caller calls ActivityLog.Committed and may issue the waiting data
// writes.
func (m *Metadata) CommitTransaction(tx *SealedTransaction, bm *bitmap.Bitmap) error {
	var pages []int
	for _, p := range tx.EvictedPages() {
		if bm.IsDirty(p) {
			pages = append(pages, p)
		}
	}
	if err := m.WriteBitmapPages(bm, pages); err != nil {
		return err
	}
	if err := writeAt(m.dev, tx.Data, tx.Offset); err != nil {
		return err
	}
	return flush(m.dev)
}

// ReadALRing reads the raw activity log ring.
func (m *Metadata) ReadALRing() ([]byte, error) {
	return readAt(m.dev, int(m.Layout.ALBytes()), m.Layout.ALByteOffset())
}

// ReplayAL reads and replays the activity log ring.
func (m *Metadata) ReplayAL() (*Replay, error) {
	ring, err := m.ReadALRing()
	if err != nil {
		return nil, err
	}
	return ReplayAL(ring, m.SB.ALStripes, m.SB.ALStripeSize4k)
}

// NewActivityLog returns an empty activity log for this metadata with
// al-extents extents (see ClampALExtents); the metadata must be clean
// (applied). It records the extents in SB.ALNrExtents, as the kernel does
// in every superblock it writes, for the next WriteSuperblock (typically
// MarkUnclean).
func (m *Metadata) NewActivityLog(extents int) (*ActivityLog, error) {
	if err := m.CheckAttachable(); err != nil {
		return nil, err
	}
	next := uint32(0)
	if r, err := m.ReplayAL(); err == nil {
		next = r.NextNumber()
	}
	al, err := NewActivityLog(ALConfig{Extents: extents, Layout: m.Layout, NextNumber: next})
	if err != nil {
		return nil, err
	}
	m.SB.ALNrExtents = uint32(extents)
	return al, nil
}

// ApplyError is apply-al's failure when the log cannot be read although
// the node was Primary, with drbdmeta's exit code (1: no usable log,
// 2: no valid update). A plain value.
type ApplyError struct {
	Code int
	Err  error
}

func (e *ApplyError) Error() string { return e.Err.Error() }
func (e *ApplyError) Unwrap() error { return e.Err }

// ApplyResult reports what ApplyAL did, for drbdmeta's messages (a plain
// value).
type ApplyResult struct {
	// Replay is the reconstructed log (nil when the ring is not in the
	// 8.4 format).
	Replay *Replay
	// ReplayErr is a replay failure that was ignored because the node was
	// not Primary (nothing to apply anyway).
	ReplayErr error
	// Applied: hot extents were folded into the bitmap (the node was
	// Primary). Extents lists them; BeyondBitmap the ones skipped.
	Applied      bool
	Extents      []uint32
	BeyondBitmap []uint32
	// BitsAdded counts bits that were clear and are now set.
	BitsAdded uint64
	// Reinitialized: the ring was rewritten with "initialized" blocks.
	Reinitialized bool
	// SuperblockWritten: the superblock was rewritten clean.
	SuperblockWritten bool
	// Warnings are drbdmeta's diagnostics, worded as it prints them.
	Warnings []string
}

// ApplyAL does what drbdmeta apply-al does: if the node was Primary, every
// extent the activity log says was hot gets all its bitmap bits set on
// disk (whole 128-byte extents, as drbdmeta writes them), then the ring is
// re-initialized and the superblock marked clean (v08 magic, AL-clean);
// the "was Primary" flag is kept. Writes are flushed step by step: bitmap,
// then ring, then superblock.
func (m *Metadata) ApplyAL() (*ApplyResult, error) {
	res := &ApplyResult{}
	ring, err := m.ReadALRing()
	if err != nil {
		return nil, err
	}
	needApply := m.SB.Flags&FlagPrimaryInd != 0
	format84 := m.SB.Magic == MagicV08Unclean ||
		binary.BigEndian.Uint32(ring[0:]) == ALMagic ||
		binary.BigEndian.Uint32(ring[ALTransactionSize:]) == ALMagic ||
		m.SB.ALStripes != DefaultALStripes || m.SB.ALStripeSize4k != DefaultALStripeSize4k
	reinit := false
	if format84 {
		res.Replay, err = ReplayAL(ring, m.SB.ALStripes, m.SB.ALStripeSize4k)
		if res.Replay != nil {
			res.Warnings = append(res.Warnings, res.Replay.Warnings...)
		}
		if err != nil {
			code := 2
			if errors.Is(err, ErrNoUsableAL) {
				code = 1
				res.Warnings = append(res.Warnings, "No usable activity log found. Do you need to create-md?")
			} else {
				res.Warnings = append(res.Warnings, "No valid AL update transaction found.")
			}
			if needApply {
				return res, &ApplyError{Code: code, Err: err}
			}
			res.Warnings = append(res.Warnings, "Error ignored, no need to apply the AL")
			res.ReplayErr = err
			reinit = true
		}
	} else {
		// A pre-8.4 (v07, 512-byte) log: gdrbd does not replay it. drbdmeta
		// would; its data can only come from DRBD 8.3, which gdrbd does
		// not pair with.
		res.Warnings = append(res.Warnings, "No usable activity log found.")
		reinit = true
	}
	updates := res.Replay != nil && res.ReplayErr == nil && res.Replay.Updates > 0
	updateSB := false
	if updates && needApply {
		if err := m.applyExtents(res, res.Replay.HotExtents()); err != nil {
			return res, err
		}
		updateSB = true
	}
	if reinit || updates {
		if err := m.InitializeAL(); err != nil {
			return res, err
		}
		res.Reinitialized = true
	}
	if m.SB.Flags&FlagALClean == 0 || m.SB.Magic != MagicV08 {
		updateSB = true
	}
	if updateSB {
		m.SB.Flags |= FlagALClean
		m.SB.Magic = MagicV08
		if err := m.WriteSuperblock(); err != nil {
			return res, err
		}
		res.SuperblockWritten = true
	}
	return res, nil
}

// applyExtents sets whole extents in the on-disk bitmap (drbdmeta's
// apply_al: 128 bytes of 0xff per extent, counting the bits that were
// clear). drbdmeta walks all slots sorted, duplicates included; distinct
// extents write the same bytes and count the same bits.
func (m *Metadata) applyExtents(res *ApplyResult, hot []uint32) error {
	res.Applied = true
	bmBytes := m.BitmapBytes()
	raw, err := m.ReadBitmapRaw()
	if err != nil {
		return err
	}
	const extBytes = BitsPerALExtent / 8
	dirty := map[int]bool{}
	for _, e := range hot {
		res.Extents = append(res.Extents, e)
		pos := int64(e) * extBytes
		if pos >= bmBytes {
			res.BeyondBitmap = append(res.BeyondBitmap, e)
			res.Warnings = append(res.Warnings, fmt.Sprintf("extent %d beyond end of bitmap! (%d >= %d)", e, pos, bmBytes))
			continue
		}
		end := min(pos+extBytes, bmBytes)
		for i := pos; i < end; i += 8 {
			w := binary.LittleEndian.Uint64(raw[i:])
			res.BitsAdded += uint64(64 - bits.OnesCount64(w))
			binary.LittleEndian.PutUint64(raw[i:], ^uint64(0))
		}
		dirty[int(pos/bitmap.PageBytes)] = true
	}
	pages := make([]int, 0, len(dirty))
	for p := range dirty {
		pages = append(pages, p)
	}
	slices.Sort(pages)
	for _, p := range pages {
		off := int64(p) * bitmap.PageBytes
		if err := writeAt(m.dev, raw[off:off+bitmap.PageBytes], m.Layout.BMByteOffset()+off); err != nil {
			return err
		}
	}
	return flush(m.dev)
}
