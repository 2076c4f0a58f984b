package sim

import (
	"github.com/gdrbd/gdrbd/bitmap"
	"github.com/gdrbd/gdrbd/metadata"
	"github.com/gdrbd/gdrbd/replication"
)

// The simulator keeps each node's metadata in a metaDev, laid out exactly
// as on a real device (package metadata's internal layout), and recovers
// from a power cut the way the driver does: read the superblock, read the
// bitmap pages, and if the metadata is unclean replay the activity log
// ring into the bitmap (apply-al).

// metaDev is a metadata device: every completed write is durable (the
// driver writes metadata with a flush).
type metaDev struct {
	blocks map[int64][]byte // 4 KiB aligned offset -> block
}

func newMetaDev() *metaDev { return &metaDev{blocks: map[int64][]byte{}} }

func (m *metaDev) write(off int64, data []byte) {
	for i := 0; i < len(data); i += 4096 {
		m.blocks[off+int64(i)] = append([]byte(nil), data[i:min(i+4096, len(data))]...)
	}
}

func (m *metaDev) read(off, n int64) []byte {
	out := make([]byte, n)
	for i := int64(0); i < n; i += 4096 {
		if b, ok := m.blocks[off+i]; ok {
			copy(out[i:], b)
		}
	}
	return out
}

// format writes fresh metadata as create-md does.
func (m *metaDev) format(l metadata.Layout) {
	sb := metadata.NewSuperblock(l, 0)
	sb.UUIDs.Current = metadata.UUIDJustCreated
	buf := make([]byte, metadata.SuperblockSize)
	sb.Encode(buf)
	m.write(l.MDOffset, buf)
	// AL ring initialised as drbdmeta does.
	init := metadata.InitializedBlock()
	for off := int64(0); off < l.ALBytes(); off += 4096 {
		m.write(l.ALByteOffset()+off, init)
	}
}

// load reads the metadata for attach, applying the activity log when the
// superblock is unclean (after a crash).
func (m *metaDev) load(l metadata.Layout, dataSectors uint64, alExtents int) (replication.AttachParams, error) {
	sb, err := metadata.DecodeSuperblock(m.read(l.MDOffset, metadata.SuperblockSize))
	if err != nil {
		return replication.AttachParams{}, err
	}
	bm := bitmap.ForSectors(dataSectors)
	for p := 0; p < bm.Pages(); p++ {
		if err := bm.DecodePage(p, m.read(l.BMByteOffset()+int64(p)*4096, 4096)); err != nil {
			return replication.AttachParams{}, err
		}
	}
	next := uint32(0)
	if !sb.Clean() {
		r, err := metadata.ReplayAL(m.read(l.ALByteOffset(), l.ALBytes()), l.ALStripes, l.ALStripeSize4k)
		if err != nil {
			return replication.AttachParams{}, err
		}
		metadata.MarkHotExtents(bm, r.HotExtents())
		next = r.NextNumber()
	}
	bm.ClearDirty()
	al, err := metadata.NewActivityLog(metadata.ALConfig{Extents: alExtents, Layout: l, NextNumber: next})
	if err != nil {
		return replication.AttachParams{}, err
	}
	return replication.AttachParams{MaxSectors: dataSectors, Super: sb, Layout: l, Bitmap: bm, AL: al}, nil
}
