package sim

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sort"

	"github.com/gdrbd/gdrbd/replication"
)

// In-memory stand-ins for the on-disk metadata: a bitmap, an activity log
// and a metadata "device" whose writes are durable when they complete (the
// driver flushes after each). They implement the core's interfaces with
// the simplest correct semantics, so a simulated crash can be recovered
// the way DRBD recovers: bitmap pages + the activity log's hot extents.

// memBitmap is a plain bitmap with dirty-page tracking.
type memBitmap struct {
	words []uint64
	nbits uint64
	count uint64
	dirty map[int]bool
}

const bitsPerPage = 4096 * 8

func newMemBitmap(nbits uint64) *memBitmap {
	return &memBitmap{words: make([]uint64, (nbits+63)/64), nbits: nbits, dirty: map[int]bool{}}
}

func (b *memBitmap) Bits() uint64  { return b.nbits }
func (b *memBitmap) Count() uint64 { return b.count }
func (b *memBitmap) Test(i uint64) bool {
	return i < b.nbits && b.words[i/64]&(1<<(i%64)) != 0
}

func (b *memBitmap) SetRange(first, last uint64) uint64 {
	var c uint64
	for i := first; i <= last && i < b.nbits; i++ {
		if !b.Test(i) {
			b.words[i/64] |= 1 << (i % 64)
			c++
			b.dirty[int(i/bitsPerPage)] = true
		}
	}
	b.count += c
	return c
}

func (b *memBitmap) ClearRange(first, last uint64) uint64 {
	var c uint64
	for i := first; i <= last && i < b.nbits; i++ {
		if b.Test(i) {
			b.words[i/64] &^= 1 << (i % 64)
			c++
			b.dirty[int(i/bitsPerPage)] = true
		}
	}
	b.count -= c
	return c
}

func (b *memBitmap) SetAll() {
	if b.nbits > 0 {
		b.SetRange(0, b.nbits-1)
	}
}

func (b *memBitmap) ClearAll() {
	if b.nbits > 0 {
		b.ClearRange(0, b.nbits-1)
	}
}

func (b *memBitmap) NextSet(from uint64) uint64 {
	for i := from; i < b.nbits; i++ {
		if b.Test(i) {
			return i
		}
	}
	return b.nbits
}

func (b *memBitmap) NextClear(from uint64) uint64 {
	for i := from; i < b.nbits; i++ {
		if !b.Test(i) {
			return i
		}
	}
	return b.nbits
}

func (b *memBitmap) Words(w uint64, dst []uint64) int {
	if w >= uint64(len(b.words)) {
		return 0
	}
	return copy(dst, b.words[w:])
}

func (b *memBitmap) OrWords(w uint64, words []uint64) {
	for i, v := range words {
		j := w + uint64(i)
		if j >= uint64(len(b.words)) {
			return
		}
		// Bits beyond nbits stay clear.
		if (j+1)*64 > b.nbits {
			v &= (1 << (b.nbits - j*64)) - 1
		}
		nv := b.words[j] | v
		if nv != b.words[j] {
			b.count += uint64(bits.OnesCount64(nv) - bits.OnesCount64(b.words[j]))
			b.words[j] = nv
			b.dirty[int(j*64/bitsPerPage)] = true
		}
	}
}

// memAL is an activity log of `slots` extents with LRU eviction.
type memAL struct {
	slots   int
	active  map[uint64]int // extent -> references
	lru     []uint64       // least recently used first
	pending map[uint64]bool
	evicted []uint64
	tr      uint32
	md      *metaDev
}

func newMemAL(slots int, md *metaDev) *memAL {
	return &memAL{slots: slots, active: map[uint64]int{}, pending: map[uint64]bool{}, md: md}
}

func (a *memAL) touch(e uint64) {
	for i, x := range a.lru {
		if x == e {
			a.lru = append(a.lru[:i], a.lru[i+1:]...)
			break
		}
	}
	a.lru = append(a.lru, e)
}

func (a *memAL) TryBegin(first, last uint64) bool {
	for e := first; e <= last; e++ {
		if _, ok := a.active[e]; !ok || a.pending[e] {
			return false
		}
	}
	for e := first; e <= last; e++ {
		a.active[e]++
		a.touch(e)
	}
	return true
}

func (a *memAL) Reserve(first, last uint64) bool {
	var need []uint64
	for e := first; e <= last; e++ {
		if _, ok := a.active[e]; !ok {
			need = append(need, e)
		}
	}
	free := a.slots - len(a.active)
	var victims []uint64
	if len(need) > free {
		for _, e := range a.lru {
			if len(victims) == len(need)-free {
				break
			}
			if a.active[e] == 0 && !a.pending[e] && (e < first || e > last) {
				victims = append(victims, e)
			}
		}
		if len(victims) < len(need)-free {
			return false
		}
	}
	for _, v := range victims {
		delete(a.active, v)
		for i, x := range a.lru {
			if x == v {
				a.lru = append(a.lru[:i], a.lru[i+1:]...)
				break
			}
		}
		a.evicted = append(a.evicted, v)
	}
	for _, e := range need {
		a.active[e] = 0
		a.pending[e] = true
	}
	for e := first; e <= last; e++ {
		a.active[e]++
		a.touch(e)
	}
	return true
}

func (a *memAL) Pending() bool { return len(a.pending) > 0 || len(a.evicted) > 0 }

// Prepare encodes every active extent: a crash after the write marks all
// of them out of sync.
func (a *memAL) Prepare() replication.ALTransaction {
	a.tr++
	ext := make([]uint64, 0, len(a.active))
	for e := range a.active {
		ext = append(ext, e)
	}
	sort.Slice(ext, func(i, j int) bool { return ext[i] < ext[j] })
	buf := make([]byte, 8+8*len(ext))
	binary.LittleEndian.PutUint32(buf, a.tr)
	binary.LittleEndian.PutUint32(buf[4:], uint32(len(ext)))
	for i, e := range ext {
		binary.LittleEndian.PutUint64(buf[8+8*i:], e)
	}
	ev := a.evicted
	a.evicted = nil
	return replication.ALTransaction{Offset: alOffset, Data: buf, Evicted: ev}
}

func (a *memAL) Committed() {
	a.pending = map[uint64]bool{}
}

func (a *memAL) Complete(first, last uint64) {
	for e := first; e <= last; e++ {
		if a.active[e] <= 0 {
			panic(fmt.Sprintf("sim: AL extent %d completed more often than begun", e))
		}
		a.active[e]--
	}
}

func (a *memAL) Active() []uint64 {
	var out []uint64
	for e := range a.active {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Metadata device layout (the simulator's own, not DRBD's).
const (
	sbOffset     int64 = 0
	alOffset     int64 = 4096
	bitmapOffset int64 = 8192
)

// metaDev is a metadata device: every completed write is durable.
type metaDev struct {
	blocks map[int64][]byte
}

func newMetaDev() *metaDev { return &metaDev{blocks: map[int64][]byte{}} }

func (m *metaDev) write(off int64, data []byte) {
	m.blocks[off] = append([]byte(nil), data...)
}

// memFormat encodes superblocks and bitmap pages for the metaDev.
type memFormat struct{ pages int }

func (f memFormat) Superblock(s replication.Superblock) (int64, []byte) {
	b := make([]byte, 8+32+4+1)
	binary.LittleEndian.PutUint64(b, s.LaSizeSect)
	for i, u := range s.UUIDs {
		binary.LittleEndian.PutUint64(b[8+8*i:], u)
	}
	binary.LittleEndian.PutUint32(b[40:], s.Flags)
	if s.Clean {
		b[44] = 1
	}
	return sbOffset, b
}

func decodeSuperblock(b []byte) replication.Superblock {
	var s replication.Superblock
	s.LaSizeSect = binary.LittleEndian.Uint64(b)
	for i := range s.UUIDs {
		s.UUIDs[i] = binary.LittleEndian.Uint64(b[8+8*i:])
	}
	s.Flags = binary.LittleEndian.Uint32(b[40:])
	s.Clean = b[44] == 1
	return s
}

func (f memFormat) DirtyBitmapPages(bm replication.Bitmap) []int {
	b := bm.(*memBitmap)
	var out []int
	for p := range b.dirty {
		out = append(out, p)
	}
	sort.Ints(out)
	return out
}

func (f memFormat) BitmapPage(bm replication.Bitmap, p int) (int64, []byte) {
	b := bm.(*memBitmap)
	delete(b.dirty, p)
	wordsPerPage := bitsPerPage / 64
	buf := make([]byte, 4096)
	for i := 0; i < wordsPerPage; i++ {
		w := p*wordsPerPage + i
		if w >= len(b.words) {
			break
		}
		binary.LittleEndian.PutUint64(buf[8*i:], b.words[w])
	}
	return bitmapOffset + int64(p)*4096, buf
}

func (f memFormat) BitmapPages() int { return f.pages }

func (f memFormat) PagesOfExtent(e uint64) []int {
	first := e * (replication.ExtentSize / replication.BlockSize)
	last := first + replication.ExtentSize/replication.BlockSize - 1
	var out []int
	for p := first / bitsPerPage; p <= last/bitsPerPage; p++ {
		out = append(out, int(p))
	}
	return out
}

// loadBitmap reads the durable bitmap and applies the activity log, as an
// attach after a crash does.
func loadBitmap(md *metaDev, nbits uint64, pages int, applyAL bool) *memBitmap {
	b := newMemBitmap(nbits)
	wordsPerPage := bitsPerPage / 64
	for p := 0; p < pages; p++ {
		blk, ok := md.blocks[bitmapOffset+int64(p)*4096]
		if !ok {
			continue
		}
		words := make([]uint64, 0, wordsPerPage)
		for i := 0; i < wordsPerPage; i++ {
			words = append(words, binary.LittleEndian.Uint64(blk[8*i:]))
		}
		b.OrWords(uint64(p*wordsPerPage), words)
	}
	if applyAL {
		if blk, ok := md.blocks[alOffset]; ok {
			n := binary.LittleEndian.Uint32(blk[4:])
			for i := uint32(0); i < n; i++ {
				e := binary.LittleEndian.Uint64(blk[8+8*i:])
				first := e * (replication.ExtentSize / replication.BlockSize)
				last := first + replication.ExtentSize/replication.BlockSize - 1
				if last >= nbits {
					last = nbits - 1
				}
				if first <= last {
					b.SetRange(first, last)
				}
			}
		}
	}
	b.dirty = map[int]bool{}
	return b
}
