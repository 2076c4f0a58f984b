package bitmap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math/bits"
)

const (
	// BlockSize is the number of bytes of storage one bit stands for.
	BlockSize = 4096
	// SectorsPerBit is BlockSize in DRBD's 512-byte sectors.
	SectorsPerBit = BlockSize / 512
	// PageBytes is the unit of on-disk bitmap I/O: DRBD reads and writes
	// its bitmap in 4 KiB pages.
	PageBytes = 4096
	// PageWords is the number of 64-bit words in one page.
	PageWords = PageBytes / 8
	// PageBits is the number of bits (and so blocks) in one page.
	PageBits = PageBytes * 8
)

var (
	// ErrSize is wrapped when two bitmaps, or a bitmap and its on-disk or
	// on-wire form, disagree about the size.
	ErrSize = errors.New("bitmap: size mismatch")
	// ErrRange is wrapped when a word or page offset lies outside the bitmap.
	ErrRange = errors.New("bitmap: offset out of range")
)

// Bitmap is DRBD's out-of-sync bitmap: bit i set means the 4 KiB block i
// may differ from the peer's. It keeps the number of set bits up to date
// on every change (Count is O(1)), and remembers which on-disk pages
// changed since the last write-out.
//
// Memory is the words themselves (32 MiB per TiB of storage) plus one bit
// per 4 KiB page for the dirty set (1 KiB per TiB).
//
// A Bitmap is not safe for concurrent use: the replication core owns one
// and serialises access to it.
type Bitmap struct {
	words   []uint64
	nbits   uint64
	sectors uint64
	count   uint64
	dirty   []uint64
}

// New returns an all-clear bitmap of nbits bits.
func New(nbits uint64) *Bitmap {
	return newBitmap(nbits, nbits*SectorsPerBit)
}

// ForSectors returns an all-clear bitmap covering a device of the given
// capacity in 512-byte sectors: one bit per started 4 KiB block.
func ForSectors(sectors uint64) *Bitmap {
	return newBitmap(BitsForSectors(sectors), sectors)
}

// BitsForSectors is the number of bits needed for a capacity in sectors.
func BitsForSectors(sectors uint64) uint64 {
	return (sectors + SectorsPerBit - 1) / SectorsPerBit
}

func newBitmap(nbits, sectors uint64) *Bitmap {
	nw := (nbits + 63) / 64
	np := (nw + PageWords - 1) / PageWords
	return &Bitmap{
		words:   make([]uint64, nw),
		nbits:   nbits,
		sectors: sectors,
		dirty:   make([]uint64, (np+63)/64),
	}
}

// Len is the number of bits.
func (b *Bitmap) Len() uint64 { return b.nbits }

// Sectors is the device capacity the bitmap covers, in 512-byte sectors.
func (b *Bitmap) Sectors() uint64 { return b.sectors }

// Count is the number of set bits.
func (b *Bitmap) Count() uint64 { return b.count }

// WordCount is the number of 64-bit words (the last one partially used
// when Len is not a multiple of 64).
func (b *Bitmap) WordCount() int { return len(b.words) }

// Pages is the number of 4 KiB pages the bitmap occupies on disk.
func (b *Bitmap) Pages() int { return (len(b.words) + PageWords - 1) / PageWords }

// MemoryBytes is the memory held by the bitmap's words and dirty set.
func (b *Bitmap) MemoryBytes() int { return 8 * (cap(b.words) + cap(b.dirty)) }

func (b *Bitmap) checkBit(bit uint64) {
	if bit >= b.nbits {
		panic(fmt.Sprintf("bitmap: bit %d out of range (%d bits)", bit, b.nbits))
	}
}

func (b *Bitmap) markDirtyWord(w uint64) {
	p := w / PageWords
	b.dirty[p/64] |= 1 << (p % 64)
}

// Test reports whether bit is set.
func (b *Bitmap) Test(bit uint64) bool {
	b.checkBit(bit)
	return b.words[bit/64]&(1<<(bit%64)) != 0
}

// Set sets one bit and reports whether it changed.
func (b *Bitmap) Set(bit uint64) bool { return b.SetRange(bit, bit+1) == 1 }

// Clear clears one bit and reports whether it changed.
func (b *Bitmap) Clear(bit uint64) bool { return b.ClearRange(bit, bit+1) == 1 }

// SetRange sets bits [from, to) and returns how many were clear before.
func (b *Bitmap) SetRange(from, to uint64) uint64 { return b.update(from, to, true) }

// ClearRange clears bits [from, to) and returns how many were set before.
func (b *Bitmap) ClearRange(from, to uint64) uint64 { return b.update(from, to, false) }

// SetAll sets every bit.
func (b *Bitmap) SetAll() { b.SetRange(0, b.nbits) }

// ClearAll clears every bit.
func (b *Bitmap) ClearAll() { b.ClearRange(0, b.nbits) }

func (b *Bitmap) update(from, to uint64, set bool) uint64 {
	if from > to || to > b.nbits {
		panic(fmt.Sprintf("bitmap: range [%d, %d) out of range (%d bits)", from, to, b.nbits))
	}
	var changed uint64
	for from < to {
		w := from / 64
		lo := from % 64
		hi := min(to-w*64, 64)
		mask := ^uint64(0) << lo
		if hi < 64 {
			mask &= (1 << hi) - 1
		}
		old := b.words[w]
		var nw uint64
		if set {
			nw = old | mask
		} else {
			nw = old &^ mask
		}
		if nw != old {
			c := uint64(bits.OnesCount64(old ^ nw))
			changed += c
			if set {
				b.count += c
			} else {
				b.count -= c
			}
			b.words[w] = nw
			b.markDirtyWord(w)
		}
		from = w*64 + hi
	}
	return changed
}

// CountRange returns the number of set bits in [from, to).
func (b *Bitmap) CountRange(from, to uint64) uint64 {
	if from > to || to > b.nbits {
		panic(fmt.Sprintf("bitmap: range [%d, %d) out of range (%d bits)", from, to, b.nbits))
	}
	var n uint64
	for from < to {
		w := from / 64
		lo := from % 64
		hi := min(to-w*64, 64)
		mask := ^uint64(0) << lo
		if hi < 64 {
			mask &= (1 << hi) - 1
		}
		n += uint64(bits.OnesCount64(b.words[w] & mask))
		from = w*64 + hi
	}
	return n
}

// SetSectors marks the storage range [sector, sector+count) out of sync:
// every block it touches, even partially, is set (a partial write makes
// the whole 4 KiB block differ). It returns the number of bits newly set.
func (b *Bitmap) SetSectors(sector, count uint64) uint64 {
	if count == 0 {
		return 0
	}
	from := sector / SectorsPerBit
	to := min((sector+count+SectorsPerBit-1)/SectorsPerBit, b.nbits)
	if from >= to {
		return 0
	}
	return b.SetRange(from, to)
}

// ClearSectors marks [sector, sector+count) in sync: only blocks it covers
// completely are cleared (a block half resynced is still out of sync),
// except that the last block of a device whose size is not a multiple of
// 4 KiB counts as covered when the range reaches the end of the device,
// as DRBD's drbd_set_in_sync does. It returns the number of bits cleared.
func (b *Bitmap) ClearSectors(sector, count uint64) uint64 {
	if count == 0 {
		return 0
	}
	end := sector + count
	from := (sector + SectorsPerBit - 1) / SectorsPerBit
	to := end / SectorsPerBit
	if end >= b.sectors {
		to = b.nbits
	}
	to = min(to, b.nbits)
	if from >= to {
		return 0
	}
	return b.ClearRange(from, to)
}

// NextSet returns the first set bit at or after from.
func (b *Bitmap) NextSet(from uint64) (uint64, bool) { return b.next(from, false) }

// NextClear returns the first clear bit at or after from.
func (b *Bitmap) NextClear(from uint64) (uint64, bool) { return b.next(from, true) }

// next scans a word at a time; inverted looks for clear bits.
func (b *Bitmap) next(from uint64, inverted bool) (uint64, bool) {
	if from >= b.nbits {
		return b.nbits, false
	}
	w := from / 64
	x := b.words[w]
	if inverted {
		x = ^x
	}
	x &= ^uint64(0) << (from % 64)
	for {
		if x != 0 {
			bit := w*64 + uint64(bits.TrailingZeros64(x))
			if bit >= b.nbits {
				return b.nbits, false
			}
			return bit, true
		}
		w++
		if w >= uint64(len(b.words)) {
			return b.nbits, false
		}
		x = b.words[w]
		if inverted {
			x = ^x
		}
	}
}

// SetRuns yields the maximal runs [start, end) of set bits within [from,
// to), in order. The bitmap must not change during the iteration.
func (b *Bitmap) SetRuns(from, to uint64) iter.Seq2[uint64, uint64] {
	to = min(to, b.nbits)
	return func(yield func(uint64, uint64) bool) {
		for from < to {
			s, ok := b.NextSet(from)
			if !ok || s >= to {
				return
			}
			e, ok := b.NextClear(s)
			if !ok || e > to {
				e = to
			}
			if !yield(s, e) {
				return
			}
			from = e
		}
	}
}

// Merge ORs o into b (receiving the peer's bitmap). Both must have the
// same length. It returns the number of bits newly set.
func (b *Bitmap) Merge(o *Bitmap) (uint64, error) {
	if o.nbits != b.nbits {
		return 0, fmt.Errorf("bitmap: merge %d bits into %d: %w", o.nbits, b.nbits, ErrSize)
	}
	return b.MergeWords(0, o.words)
}

// MergeWords ORs words into the bitmap starting at 64-bit word offset
// wordOff, as a P_BITMAP packet carries them. Bits past Len in the last
// word are ignored. It returns the number of bits newly set.
func (b *Bitmap) MergeWords(wordOff int, words []uint64) (uint64, error) {
	if wordOff < 0 || wordOff > len(b.words) || len(words) > len(b.words)-wordOff {
		return 0, fmt.Errorf("bitmap: merge %d words at word %d of %d: %w", len(words), wordOff, len(b.words), ErrRange)
	}
	var added uint64
	for i, x := range words {
		w := wordOff + i
		if w == len(b.words)-1 {
			x &= b.lastWordMask()
		}
		old := b.words[w]
		if nw := old | x; nw != old {
			c := uint64(bits.OnesCount64(nw ^ old))
			added += c
			b.count += c
			b.words[w] = nw
			b.markDirtyWord(uint64(w))
		}
	}
	return added, nil
}

// MergeLE ORs raw little-endian 64-bit words (len(p) a multiple of 8) at
// word offset wordOff.
func (b *Bitmap) MergeLE(wordOff int, p []byte) (uint64, error) {
	if len(p)%8 != 0 {
		return 0, fmt.Errorf("bitmap: %d bytes are not whole 64-bit words: %w", len(p), ErrSize)
	}
	n := len(p) / 8
	if wordOff < 0 || wordOff > len(b.words) || n > len(b.words)-wordOff {
		return 0, fmt.Errorf("bitmap: merge %d words at word %d of %d: %w", n, wordOff, len(b.words), ErrRange)
	}
	var added uint64
	var chunk [64]uint64
	for done := 0; done < n; {
		k := min(n-done, len(chunk))
		for i := range k {
			chunk[i] = binary.LittleEndian.Uint64(p[(done+i)*8:])
		}
		a, err := b.MergeWords(wordOff+done, chunk[:k])
		if err != nil {
			return added, err
		}
		added += a
		done += k
	}
	return added, nil
}

// CopyWords copies words starting at word offset wordOff into dst (for a
// P_BITMAP packet) and returns how many it copied.
func (b *Bitmap) CopyWords(dst []uint64, wordOff int) int {
	if wordOff < 0 || wordOff >= len(b.words) {
		return 0
	}
	return copy(dst, b.words[wordOff:])
}

func (b *Bitmap) lastWordMask() uint64 {
	if r := b.nbits % 64; r != 0 {
		return (1 << r) - 1
	}
	return ^uint64(0)
}

// Equal reports whether two bitmaps have the same length and bits.
func (b *Bitmap) Equal(o *Bitmap) bool {
	if b.nbits != o.nbits || b.count != o.count {
		return false
	}
	for i, w := range b.words {
		if o.words[i] != w {
			return false
		}
	}
	return true
}

// Clone returns an independent copy, dirty set included.
func (b *Bitmap) Clone() *Bitmap {
	c := *b
	c.words = append([]uint64(nil), b.words...)
	c.dirty = append([]uint64(nil), b.dirty...)
	return &c
}
