package replication

// The attached disk's metadata, as the core needs it. The core does no
// I/O: the driver loads the metadata (package metadata), gives the core
// these pure in-memory views in Attach, and carries out the MetaWrites the
// core emits through them.

// BlockSize is the unit of the out-of-sync bitmap: one bit per 4 KiB.
const BlockSize = 4096

// sectorsPerBlock is BlockSize in 512-byte sectors.
const sectorsPerBlock = BlockSize / 512

// ExtentSize is the activity log's unit: 4 MiB (1024 bitmap bits).
const ExtentSize = 4 << 20

// Bitmap is the out-of-sync bitmap of the attached disk: bit b covers
// bytes [b*4096, (b+1)*4096). Ranges are inclusive block numbers.
// Implementations track which on-disk pages changed since WritePage.
type Bitmap interface {
	Bits() uint64
	Count() uint64
	Test(b uint64) bool
	// SetRange / ClearRange return how many bits changed.
	SetRange(first, last uint64) uint64
	ClearRange(first, last uint64) uint64
	SetAll()
	ClearAll()
	// NextSet returns the first set bit >= from, or Bits() if none.
	NextSet(from uint64) uint64
	// NextClear returns the first clear bit >= from, or Bits() if none.
	NextClear(from uint64) uint64
	// Words copies up to len(dst) 64-bit words starting at word index w
	// (bit 0 of word 0 is block 0) and returns how many were copied.
	Words(w uint64, dst []uint64) int
	// OrWords merges words into the bitmap starting at word index w.
	OrWords(w uint64, words []uint64)
}

// MetaFormat encodes the on-disk metadata blocks. Offsets are absolute
// byte offsets on the metadata device.
type MetaFormat interface {
	// Superblock encodes the 4 KiB superblock.
	Superblock(s Superblock) (off int64, block []byte)
	// DirtyBitmapPages returns the on-disk bitmap pages changed since they
	// were last encoded, and ClearDirty forgets them.
	DirtyBitmapPages(bm Bitmap) []int
	// BitmapPage encodes on-disk bitmap page p (4 KiB) from bm and marks
	// it clean.
	BitmapPage(bm Bitmap, p int) (off int64, block []byte)
	// BitmapPages is the number of on-disk bitmap pages.
	BitmapPages() int
	// PagesOfExtent returns the bitmap pages covering AL extent e.
	PagesOfExtent(e uint64) []int
}

// Superblock is what the core persists in the superblock.
type Superblock struct {
	LaSizeSect uint64 // last agreed size
	UUIDs      [4]uint64
	Flags      uint32 // MDF* flags
	Clean      bool   // write the clean magic (detach/down); else "unclean"
}

// Metadata flags in the superblock (MDF_*).
const (
	MDFConsistent     uint32 = 0x01
	MDFPrimaryInd     uint32 = 0x02
	MDFConnectedInd   uint32 = 0x04
	MDFFullSync       uint32 = 0x08
	MDFWasUpToDate    uint32 = 0x10
	MDFPeerOutDated   uint32 = 0x20
	MDFCrashedPrimary uint32 = 0x40
	MDFALClean        uint32 = 0x80
	MDFALDisabled     uint32 = 0x100
)

// ALTransaction is an encoded activity-log transaction and what it does.
type ALTransaction struct {
	Offset int64
	Data   []byte
	// Evicted lists the extents this transaction removes from the log.
	// Their bitmap pages must be durable BEFORE the transaction is
	// written: once the extent leaves the log, crash recovery no longer
	// marks it out of sync.
	Evicted []uint64
}

// ActivityLog is the pure bookkeeping of DRBD's activity log: which 4 MiB
// extents are "hot" (may have writes in flight), with reference counts.
// Ranges are inclusive extent numbers.
type ActivityLog interface {
	// TryBegin takes a reference on every extent of the range if all are
	// hot and no transaction is needed, and reports whether it did.
	TryBegin(first, last uint64) bool
	// Reserve makes the extents of the range part of the next transaction
	// and takes their references. It returns false, changing nothing,
	// when there are not enough extents with no references to evict.
	Reserve(first, last uint64) bool
	// Pending reports whether Reserve changed anything not yet committed.
	Pending() bool
	// Prepare encodes the next transaction with every pending change.
	Prepare() ALTransaction
	// Committed marks the prepared transaction durable.
	Committed()
	// Complete drops one reference on every extent of the range.
	Complete(first, last uint64)
	// Active returns the extents currently in the log.
	Active() []uint64
}
