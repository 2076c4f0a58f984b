package sim

import (
	"encoding/binary"
	"math/rand"
)

// simDisk is a data disk with a volatile write cache: a completed write is
// visible to reads at once but durable only after a later flush completes
// (or when written with FUA). A crash keeps the durable image plus a
// random subset of the volatile writes, per 4 KiB block.
type simDisk struct {
	size     int64
	seq      uint64
	durable  map[int64]*version // 4 KiB block -> contents (absent: zeroes)
	volatile map[int64]*version // completed, not yet flushed
}

// version is one 4 KiB block content; seq orders writes to a block. A
// block holding a uniform pattern (every 8 bytes the same value, as the
// workload writes) is stored as that value alone; anything else as bytes.
type version struct {
	seq  uint64
	val  uint64
	data []byte // nil: the uniform pattern val
}

func (v *version) fill(dst []byte) {
	if v.data != nil {
		copy(dst, v.data)
		return
	}
	fillPattern(dst, v.val)
}

// fillPattern writes val into every 8 bytes of dst (len a multiple of 8).
func fillPattern(dst []byte, val uint64) {
	if len(dst) < 8 {
		return
	}
	if val == 0 {
		clear(dst)
		return
	}
	binary.LittleEndian.PutUint64(dst, val)
	for i := 8; i < len(dst); i *= 2 {
		copy(dst[i:], dst[:i])
	}
}

func newSimDisk(size int64) *simDisk {
	return &simDisk{size: size, durable: map[int64]*version{}, volatile: map[int64]*version{}}
}

const blk = 4096

func (d *simDisk) current(b int64) *version {
	if v, ok := d.volatile[b]; ok {
		return v
	}
	return d.durable[b]
}

// read returns the current contents (what a read would see).
func (d *simDisk) read(off, n int64) []byte {
	out := make([]byte, n)
	for i := int64(0); i < n; {
		b := (off + i) / blk
		bo := (off + i) % blk
		c := min(blk-bo, n-i)
		if v := d.current(b); v != nil {
			if bo == 0 && c == blk {
				v.fill(out[i : i+c])
			} else {
				tmp := make([]byte, blk)
				v.fill(tmp)
				copy(out[i:i+c], tmp[bo:bo+c])
			}
		}
		i += c
	}
	return out
}

// write applies a completed write to the cache (or durably with fua).
func (d *simDisk) write(off int64, p []byte, fua bool) {
	for i := int64(0); i < int64(len(p)); {
		b := (off + i) / blk
		bo := (off + i) % blk
		c := min(blk-bo, int64(len(p))-i)
		d.seq++
		nv := &version{seq: d.seq}
		if bo == 0 && c == blk {
			if v, ok := versionOf(p[i : i+c]); ok {
				nv.val = v
			} else {
				nv.data = append([]byte(nil), p[i:i+c]...)
			}
		} else {
			cur := make([]byte, blk)
			if v := d.current(b); v != nil {
				v.fill(cur)
			}
			copy(cur[bo:bo+c], p[i:i+c])
			nv.data = cur
		}
		if fua {
			d.durable[b] = nv
			delete(d.volatile, b)
		} else {
			d.volatile[b] = nv
		}
		i += c
	}
}

// flushSnapshot is taken when a flush is issued: the flush covers the
// writes completed before that.
func (d *simDisk) flushSnapshot() map[int64]*version {
	snap := make(map[int64]*version, len(d.volatile))
	for b, v := range d.volatile {
		snap[b] = v
	}
	return snap
}

// applyFlush makes the snapshot's versions durable when the flush
// completes, unless something newer is durable already.
func (d *simDisk) applyFlush(snap map[int64]*version) {
	for b, v := range snap {
		if cur := d.durable[b]; cur == nil || cur.seq < v.seq {
			d.durable[b] = v
		}
		if d.volatile[b] == v {
			delete(d.volatile, b)
		}
	}
}

// crashSorted turns the disk into what a power cut leaves: durable blocks
// plus a random subset of the volatile ones (visited in block order so a
// seed reproduces the same subset).
func (d *simDisk) crashSorted(rng *rand.Rand) {
	for _, b := range sortedKeys(d.volatile) {
		if rng.Intn(2) == 0 {
			d.durable[b] = d.volatile[b]
		}
	}
	d.volatile = map[int64]*version{}
}
