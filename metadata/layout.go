package metadata

import (
	"errors"
	"fmt"
)

// Kind is where a volume keeps its metadata.
type Kind int

const (
	// KindInternal: at the end of the backing device itself
	// ("meta-disk internal"), flexible size: the bitmap grows with the
	// device.
	KindInternal Kind = 1 + iota
	// KindFlexExternal: a whole separate device ("meta-disk DEV" or
	// "flexible-meta-disk DEV"), superblock first.
	KindFlexExternal
	// KindIndexed: slot N of 128 MiB on a shared external device
	// ("meta-disk DEV[N]"), the pre-8.0 fixed-size layout.
	KindIndexed
)

func (k Kind) String() string {
	switch k {
	case KindInternal:
		return "internal"
	case KindFlexExternal:
		return "flex-external"
	case KindIndexed:
		return "indexed"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Location names the metadata of one volume: its kind and, for
// KindIndexed, the index. It is a plain value.
type Location struct {
	Kind  Kind
	Index int
}

// Internal is the location of internal metadata.
func Internal() Location { return Location{Kind: KindInternal} }

// FlexExternal is the location of flexible external metadata.
func FlexExternal() Location { return Location{Kind: KindFlexExternal} }

// Indexed is the location of fixed-size external metadata slot idx.
func Indexed(idx int) Location { return Location{Kind: KindIndexed, Index: idx} }

// DrbdmetaArg is how drbdmeta spells the location on its command line
// ("internal", "flex-external", or the index).
func (l Location) DrbdmetaArg() string {
	switch l.Kind {
	case KindInternal:
		return "internal"
	case KindFlexExternal:
		return "flex-external"
	}
	return fmt.Sprint(l.Index)
}

func (l Location) String() string { return l.DrbdmetaArg() }

func (l Location) validate() error {
	switch l.Kind {
	case KindInternal, KindFlexExternal:
		return nil
	case KindIndexed:
		if l.Index < 0 || l.Index > 255 {
			return fmt.Errorf("metadata: index %d out of range 0..255", l.Index)
		}
		return nil
	}
	return fmt.Errorf("metadata: invalid metadata kind %v", l.Kind)
}

// Geometry constants of the v08 format, in 512-byte sectors unless noted.
const (
	// SuperblockSize is the size of the superblock in bytes.
	SuperblockSize = 4096
	// SuperblockSectors is the superblock in sectors; external layouts put
	// the activity log right behind it (MD_AL_OFFSET_07).
	SuperblockSectors = 8
	// IndexedSectors is the size of one fixed external slot: 128 MiB.
	IndexedSectors = 128 << 11
	// DefaultALStripes and DefaultALStripeSize4k are the classic 32 KiB
	// activity log: one stripe of eight 4 KiB transactions.
	DefaultALStripes      = 1
	DefaultALStripeSize4k = 8
	// minDeviceBytes: drbdmeta refuses devices below 68 KiB (it wants to
	// read that much to look for existing file systems).
	minDeviceBytes = 68 << 10
	// maxFlexBitmapBytes caps the flexible bitmap (1 PiB of storage).
	maxFlexBitmapBytes = 1 << 35
)

// ErrTooSmall is wrapped when a device cannot hold the metadata.
var ErrTooSmall = errors.New("metadata: device too small")

// Layout is the geometry of one volume's metadata on its metadata device,
// computed the way drbdmeta and the kernel compute it. Sector offsets are
// relative to the superblock (negative below it, for internal metadata).
//
// Internal (the superblock is the last 4 KiB-aligned block):
//
//	|<----------- data ----------->|<- bitmap ->|<- AL ->|<- SB ->|pad|
//	0                     MDOffset+BMOffset*512 |        MDOffset  size
//	                                 MDOffset+ALOffset*512
//
// External (flexible: the whole device; indexed: 128 MiB at index*128 MiB):
//
//	|<- SB ->|<- AL ->|<------------ bitmap ------------>|
//	MDOffset  +8 sect  +8+AL sectors          MDOffset+MDSizeSect*512
//
// A Layout is a plain value, safe to share read-only.
type Layout struct {
	Location Location
	// DeviceBytes is the size of the metadata device the layout is for.
	DeviceBytes int64
	// MDOffset is the byte offset of the superblock.
	MDOffset int64
	// MDSizeSect is the whole metadata area in sectors (superblock, AL and
	// bitmap; for flexible external metadata, the whole device).
	MDSizeSect uint32
	// ALOffset and BMOffset are sector offsets from the superblock.
	ALOffset int32
	BMOffset int32
	// ALStripes and ALStripeSize4k describe the AL ring.
	ALStripes      uint32
	ALStripeSize4k uint32
}

// ComputeLayout returns the layout drbdmeta create-md would use on a
// metadata device of deviceBytes with the given AL striping.
func ComputeLayout(loc Location, deviceBytes int64, alStripes, alStripeSize4k uint32) (Layout, error) {
	if err := loc.validate(); err != nil {
		return Layout{}, err
	}
	if alStripes == 0 || alStripeSize4k == 0 || uint64(alStripes)*uint64(alStripeSize4k) < 8 ||
		uint64(alStripes)*uint64(alStripeSize4k) > 8192 {
		return Layout{}, fmt.Errorf("metadata: invalid activity log striping %d x %d (4 KiB blocks; 8..8192 in total)", alStripes, alStripeSize4k)
	}
	l := Layout{Location: loc, DeviceBytes: deviceBytes, ALStripes: alStripes, ALStripeSize4k: alStripeSize4k}
	if deviceBytes < minDeviceBytes {
		return l, fmt.Errorf("metadata: the device is only %d bytes, drbdmeta needs at least %d: %w", deviceBytes, minDeviceBytes, ErrTooSmall)
	}
	alSect := int64(alStripes) * int64(alStripeSize4k) * 8
	switch loc.Kind {
	case KindInternal:
		l.MDOffset = (deviceBytes - SuperblockSize) &^ (SuperblockSize - 1)
		l.ALOffset = int32(-alSect)
		bmSect := (BitmapBytes(uint64(deviceBytes)>>9) >> 9)
		bmSect = (bmSect + 7) &^ 7
		if bmSect > maxFlexBitmapBytes>>9 {
			return l, fmt.Errorf("metadata: the bitmap for %d bytes got too large", deviceBytes)
		}
		md := bmSect + SuperblockSectors + uint64(alSect)
		l.MDSizeSect = uint32(md)
		l.BMOffset = int32(-int64(md) + SuperblockSectors)
	case KindFlexExternal:
		l.MDOffset = 0
		l.MDSizeSect = uint32(min(uint64(deviceBytes)>>9, 1<<32-1))
		l.ALOffset = SuperblockSectors
		l.BMOffset = int32(SuperblockSectors + alSect)
	case KindIndexed:
		l.MDOffset = int64(loc.Index) * IndexedSectors * 512
		l.MDSizeSect = IndexedSectors
		l.ALOffset = SuperblockSectors
		l.BMOffset = int32(SuperblockSectors + alSect)
	}
	if l.MDOffset > deviceBytes-SuperblockSize {
		return l, fmt.Errorf("metadata: expecting the superblock at byte offset %d, but the device is only %d bytes: %w", l.MDOffset, deviceBytes, ErrTooSmall)
	}
	if l.BMOffset > 0 && int64(l.BMOffset) >= int64(l.MDSizeSect) {
		return l, fmt.Errorf("metadata: no room for a bitmap in %d sectors: %w", l.MDSizeSect, ErrTooSmall)
	}
	if loc.Kind == KindInternal && l.BMByteOffset() < 0 {
		// A large activity log on a small device: the metadata area would
		// begin before the device does.
		return l, fmt.Errorf("metadata: %d bytes of internal meta-data (activity log %d x %d KiB) do not fit a %d-byte device: %w",
			int64(l.MDSizeSect)*512, alStripes, alStripeSize4k*4, deviceBytes, ErrTooSmall)
	}
	if loc.Kind == KindIndexed && l.MDOffset+IndexedSectors*512 > deviceBytes {
		// The kernel refuses it too (ERR_MD_DISK_TOO_SMALL): slot idx
		// needs 128 MiB * (idx+1).
		return l, fmt.Errorf("metadata: meta-data index %d needs a meta-data device of %d bytes, this one has %d: %w",
			loc.Index, l.MDOffset+IndexedSectors*512, deviceBytes, ErrTooSmall)
	}
	return l, nil
}

// ALBytes is the size of the activity log ring in bytes.
func (l Layout) ALBytes() int64 { return int64(l.ALStripes) * int64(l.ALStripeSize4k) * 4096 }

// ALTransactions is the number of 4 KiB transaction blocks in the ring.
func (l Layout) ALTransactions() uint32 { return l.ALStripes * l.ALStripeSize4k }

// ALByteOffset is the byte offset of the activity log ring on the device.
func (l Layout) ALByteOffset() int64 { return l.MDOffset + int64(l.ALOffset)*512 }

// BMByteOffset is the byte offset of the bitmap area on the device.
func (l Layout) BMByteOffset() int64 { return l.MDOffset + int64(l.BMOffset)*512 }

// BitmapAreaBytes is the space the layout reserves for the bitmap.
func (l Layout) BitmapAreaBytes() int64 {
	if l.Location.Kind == KindInternal {
		return int64(l.ALOffset-l.BMOffset) * 512
	}
	return (int64(l.MDSizeSect) - int64(l.BMOffset)) * 512
}

// MaxUsableSectors is the largest data size the layout supports: for
// internal metadata everything below the bitmap, for external metadata
// what its bitmap area can describe (drbdmeta's max_usable_sectors).
func (l Layout) MaxUsableSectors() uint64 {
	if l.Location.Kind == KindInternal {
		return uint64(min(l.MDOffset, l.ALByteOffset(), l.BMByteOffset())) >> 9
	}
	return uint64(int64(l.MDSizeSect)-int64(l.BMOffset)) * 512 * 8 / 64 * 64 * 4096 / 512
}

// ALTransactionOffset is the byte offset of the ring block that holds
// transaction number tr: the ring wraps every ALTransactions() numbers,
// and consecutive numbers go to consecutive stripes.
func (l Layout) ALTransactionOffset(tr uint32) int64 {
	return l.ALByteOffset() + int64(ringBlock(tr, l.ALStripes, l.ALStripeSize4k))*4096
}

// ringBlock maps a transaction number to its 4 KiB block in the ring
// (al_tr_number_to_on_disk_sector): t = tr mod blocks, then striped.
func ringBlock(tr, stripes, stripeSize4k uint32) uint32 {
	t := tr % (stripes * stripeSize4k)
	return (t%stripes)*stripeSize4k + t/stripes
}

// BitmapBytes is the on-disk bitmap size for a device of the given
// sectors: one bit per 4 KiB, rounded up to whole 64-bit words, then to
// whole 4 KiB pages (drbdmeta's bm_bytes).
func BitmapBytes(sectors uint64) uint64 {
	bits := (sectors + 7) / 8
	bits = (bits + 63) &^ 63
	return (bits/8 + 4095) &^ 4095
}

// check compares a superblock's geometry with the layout it must have at
// this location (drbdmeta's is_valid_md and the kernel's
// check_offsets_and_sizes), naming the first mismatch.
func (l Layout) check(sb *Superblock) error {
	alSect := int32(sb.ALStripes * sb.ALStripeSize4k * 8)
	switch l.Location.Kind {
	case KindInternal:
		if sb.ALOffset != -alSect {
			return &InvalidError{Field: "al_offset", Got: int64(sb.ALOffset), Want: int64(-alSect)}
		}
		if sb.MDSizeSect != l.MDSizeSect {
			return &InvalidError{Field: "md_size_sect", Got: int64(sb.MDSizeSect), Want: int64(l.MDSizeSect),
				Hint: "was the backing device resized?"}
		}
		if sb.BMOffset != l.BMOffset {
			return &InvalidError{Field: "bm_offset", Got: int64(sb.BMOffset), Want: int64(l.BMOffset)}
		}
	default:
		if sb.ALOffset != SuperblockSectors {
			return &InvalidError{Field: "al_offset", Got: int64(sb.ALOffset), Want: SuperblockSectors}
		}
		if sb.BMOffset != SuperblockSectors+alSect {
			return &InvalidError{Field: "bm_offset", Got: int64(sb.BMOffset), Want: int64(SuperblockSectors + alSect)}
		}
	}
	return nil
}
