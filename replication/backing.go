package replication

import (
	"github.com/gdrbd/gdrbd/bitmap"
	"github.com/gdrbd/gdrbd/metadata"
)

// The attached disk's metadata as the core sees it. The core does no I/O:
// the driver reads the superblock, replays the activity log into the
// bitmap (what apply-al does), and hands the core the in-memory bitmap, a
// fresh activity log and the layout in Attach. The core then emits every
// metadata write as a MetaWrite at an absolute byte offset of the
// metadata device.

// BlockSize is the unit of the out-of-sync bitmap: one bit per 4 KiB.
const BlockSize = bitmap.BlockSize

// sectorsPerBlock is BlockSize in 512-byte sectors.
const sectorsPerBlock = BlockSize / 512

// ExtentSize is the activity log's unit: 4 MiB (1024 bitmap bits).
const ExtentSize = metadata.ALExtentBytes

// Metadata flags in the superblock (MDF_*), as plain bits.
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
