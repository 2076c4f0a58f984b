package bitmap

import (
	"encoding/binary"
	"fmt"
	"iter"
	"math/bits"
)

// IsDirty reports whether page changed since its dirty mark was last
// cleared.
func (b *Bitmap) IsDirty(page int) bool {
	if page < 0 || page >= b.Pages() {
		return false
	}
	return b.dirty[page/64]&(1<<(page%64)) != 0
}

// DirtyCount is the number of dirty pages.
func (b *Bitmap) DirtyCount() int {
	n := 0
	for _, d := range b.dirty {
		n += bits.OnesCount64(d)
	}
	return n
}

// DirtyPages yields the dirty pages in ascending order.
func (b *Bitmap) DirtyPages() iter.Seq[int] {
	return func(yield func(int) bool) {
		for i, d := range b.dirty {
			for d != 0 {
				p := i*64 + bits.TrailingZeros64(d)
				d &= d - 1
				if !yield(p) {
					return
				}
			}
		}
	}
}

// MarkDirty marks a page as needing write-out.
func (b *Bitmap) MarkDirty(page int) {
	if page < 0 || page >= b.Pages() {
		panic(fmt.Sprintf("bitmap: page %d out of range (%d pages)", page, b.Pages()))
	}
	b.dirty[page/64] |= 1 << (page % 64)
}

// MarkAllDirty marks every page (before a full write-out, or after a
// resize).
func (b *Bitmap) MarkAllDirty() {
	for p := range b.Pages() {
		b.MarkDirty(p)
	}
}

// ClearDirty forgets all dirty marks: call it after the dirty pages are
// durably written. Pages that change afterwards become dirty again.
func (b *Bitmap) ClearDirty() { clear(b.dirty) }

// ClearPageDirty forgets the dirty mark of one page (after writing it).
func (b *Bitmap) ClearPageDirty(page int) {
	if page >= 0 && page < b.Pages() {
		b.dirty[page/64] &^= 1 << (page % 64)
	}
}

// PageOfBit is the on-disk page holding bit.
func PageOfBit(bit uint64) int { return int(bit / PageBits) }

// EncodePage writes page as DRBD stores it: 512 little-endian 64-bit
// words, zero past the end of the bitmap. dst must hold PageBytes.
func (b *Bitmap) EncodePage(page int, dst []byte) {
	if page < 0 || page >= b.Pages() {
		panic(fmt.Sprintf("bitmap: page %d out of range (%d pages)", page, b.Pages()))
	}
	dst = dst[:PageBytes]
	first := page * PageWords
	n := min(PageWords, len(b.words)-first)
	for i := range n {
		binary.LittleEndian.PutUint64(dst[i*8:], b.words[first+i])
	}
	clear(dst[n*8:])
}

// DecodePage loads page from its on-disk form (PageBytes of little-endian
// words), replacing the in-memory words. Bits past Len are ignored: DRBD
// never sets them, and a stray one must not count as out of sync. The
// page's dirty mark is left as it was.
func (b *Bitmap) DecodePage(page int, src []byte) error {
	if page < 0 || page >= b.Pages() {
		return fmt.Errorf("bitmap: page %d of %d: %w", page, b.Pages(), ErrRange)
	}
	if len(src) < PageBytes {
		return fmt.Errorf("bitmap: page %d: %d bytes, want %d: %w", page, len(src), PageBytes, ErrSize)
	}
	first := page * PageWords
	n := min(PageWords, len(b.words)-first)
	for i := range n {
		w := first + i
		x := binary.LittleEndian.Uint64(src[i*8:])
		if w == len(b.words)-1 {
			x &= b.lastWordMask()
		}
		b.count -= uint64(bits.OnesCount64(b.words[w]))
		b.count += uint64(bits.OnesCount64(x))
		b.words[w] = x
	}
	return nil
}

// MarshalBinary encodes the whole bitmap in its on-disk form: Pages()
// pages of little-endian 64-bit words.
func (b *Bitmap) MarshalBinary() ([]byte, error) {
	out := make([]byte, b.Pages()*PageBytes)
	for p := range b.Pages() {
		b.EncodePage(p, out[p*PageBytes:])
	}
	return out, nil
}

// UnmarshalBinary loads the on-disk form produced by MarshalBinary (or
// read from DRBD's bitmap area) into a bitmap of the current length;
// data must hold Pages() pages. Dirty marks are cleared: memory now
// matches what is on disk.
func (b *Bitmap) UnmarshalBinary(data []byte) error {
	if len(data) < b.Pages()*PageBytes {
		return fmt.Errorf("bitmap: %d bytes for %d pages: %w", len(data), b.Pages(), ErrSize)
	}
	for p := range b.Pages() {
		if err := b.DecodePage(p, data[p*PageBytes:]); err != nil {
			return err
		}
	}
	b.ClearDirty()
	return nil
}
