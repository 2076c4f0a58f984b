package bitmap_test

import (
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/bitmap"
)

// model is the naive reference: one bool per bit.
type model []bool

func (m model) count() uint64 {
	var n uint64
	for _, b := range m {
		if b {
			n++
		}
	}
	return n
}

func (m model) next(from uint64, want bool) (uint64, bool) {
	for i := from; i < uint64(len(m)); i++ {
		if m[i] == want {
			return i, true
		}
	}
	return uint64(len(m)), false
}

func requireSame(t *testing.T, m model, b *bitmap.Bitmap, ctx string) {
	t.Helper()
	require.Equal(t, uint64(len(m)), b.Len(), ctx)
	require.Equal(t, m.count(), b.Count(), ctx)
	for i := range m {
		if m[i] != b.Test(uint64(i)) {
			t.Fatalf("%s: bit %d: model %v bitmap %v", ctx, i, m[i], !m[i])
		}
	}
}

// TestPropertyAgainstModel runs seeded random operations on a Bitmap and
// on the naive model and compares every answer.
func TestPropertyAgainstModel(t *testing.T) {
	t.Parallel()
	for seed := range uint64(250) {
		r := rand.New(rand.NewPCG(seed, 42))
		nbits := uint64(r.IntN(3*64*8) + 1)
		if seed%25 == 0 {
			nbits = uint64(bitmap.PageBits*2 + r.IntN(200)) // several pages
		}
		b := bitmap.New(nbits)
		m := make(model, nbits)
		for op := range 60 {
			from := uint64(r.IntN(int(nbits) + 1))
			to := from + uint64(r.IntN(int(nbits-from)+1))
			switch r.IntN(8) {
			case 0, 1:
				want := uint64(0)
				for i := from; i < to; i++ {
					if !m[i] {
						want++
					}
					m[i] = true
				}
				require.Equal(t, want, b.SetRange(from, to), "seed %d op %d set", seed, op)
			case 2, 3:
				want := uint64(0)
				for i := from; i < to; i++ {
					if m[i] {
						want++
					}
					m[i] = false
				}
				require.Equal(t, want, b.ClearRange(from, to), "seed %d op %d clear", seed, op)
			case 4:
				for _, want := range []bool{true, false} {
					got, ok := map[bool]func(uint64) (uint64, bool){true: b.NextSet, false: b.NextClear}[want](from)
					wgot, wok := m.next(from, want)
					require.Equal(t, wok, ok, "seed %d next(%d,%v)", seed, from, want)
					require.Equal(t, wgot, got, "seed %d next(%d,%v)", seed, from, want)
				}
			case 5:
				var n uint64
				for i := from; i < to; i++ {
					if m[i] {
						n++
					}
				}
				require.Equal(t, n, b.CountRange(from, to))
			case 6:
				// runs must tile exactly the set bits of [from, to)
				cover := make(model, nbits)
				prevEnd := uint64(0)
				for s, e := range b.SetRuns(from, to) {
					if s >= e || s < from || e > to || (prevEnd != 0 && s <= prevEnd) {
						t.Fatalf("seed %d: bad run [%d, %d) after %d in [%d, %d)", seed, s, e, prevEnd, from, to)
					}
					for i := s; i < e; i++ {
						cover[i] = true
					}
					prevEnd = e
				}
				for i := from; i < to; i++ {
					if m[i] != cover[i] {
						t.Fatalf("seed %d: runs disagree at bit %d", seed, i)
					}
				}
			case 7:
				// OR-merge a random other bitmap
				o := bitmap.New(nbits)
				for range 3 {
					f := uint64(r.IntN(int(nbits)))
					e := f + uint64(r.IntN(int(nbits-f)+1))
					o.SetRange(f, e)
				}
				var want uint64
				for i := range m {
					if o.Test(uint64(i)) && !m[i] {
						m[i] = true
						want++
					}
				}
				got, err := b.Merge(o)
				require.NoError(t, err)
				require.Equal(t, want, got)
			}
		}
		requireSame(t, m, b, "final")
		// Encode/decode round trip preserves everything.
		data, err := b.MarshalBinary()
		require.NoError(t, err)
		require.Len(t, data, b.Pages()*bitmap.PageBytes)
		c := bitmap.New(nbits)
		require.NoError(t, c.UnmarshalBinary(data))
		require.True(t, b.Equal(c))
		requireSame(t, m, c, "decoded")
	}
}

func TestSectorsRounding(t *testing.T) {
	t.Parallel()
	// 10 sectors: block 0 full, block 1 partial (2 sectors).
	b := bitmap.ForSectors(10)
	require.Equal(t, uint64(2), b.Len())
	require.Equal(t, uint64(1), b.SetSectors(7, 1)) // partial block 0 marks it
	require.Equal(t, uint64(1), b.SetSectors(8, 1))
	require.Equal(t, uint64(0), b.ClearSectors(1, 7), "block 0 not fully covered")
	require.Equal(t, uint64(1), b.ClearSectors(0, 8))
	require.Equal(t, uint64(0), b.ClearSectors(8, 1), "middle of the partial last block")
	require.Equal(t, uint64(1), b.ClearSectors(8, 2), "reaching the device end clears the partial block")
	require.Equal(t, uint64(0), b.Count())
	require.Equal(t, uint64(0), b.SetSectors(100, 8), "past the end is ignored")
	b.SetAll()
	require.Equal(t, uint64(2), b.Count())
}

func TestMergeWordsMasksSurplus(t *testing.T) {
	t.Parallel()
	b := bitmap.New(70) // 2 words, 6 bits used in the second
	added, err := b.MergeWords(0, []uint64{1, ^uint64(0)})
	require.NoError(t, err)
	require.Equal(t, uint64(7), added)
	require.Equal(t, uint64(7), b.Count())
	_, err = b.MergeWords(1, []uint64{1, 1})
	require.ErrorIs(t, err, bitmap.ErrRange)
	added, err = b.MergeLE(0, []byte{2, 0, 0, 0, 0, 0, 0, 0})
	require.NoError(t, err)
	require.Equal(t, uint64(1), added)
	_, err = b.MergeLE(0, []byte{1, 2, 3})
	require.ErrorIs(t, err, bitmap.ErrSize)
	dst := make([]uint64, 4)
	require.Equal(t, 2, b.CopyWords(dst, 0))
	require.Equal(t, []uint64{3, 0x3f, 0, 0}, dst)
	_, err = b.Merge(bitmap.New(71))
	require.ErrorIs(t, err, bitmap.ErrSize)
}

func TestDirtyPages(t *testing.T) {
	t.Parallel()
	b := bitmap.New(5 * bitmap.PageBits)
	require.Equal(t, 5, b.Pages())
	require.Equal(t, 0, b.DirtyCount())
	b.Set(3)
	b.SetRange(2*bitmap.PageBits-1, 2*bitmap.PageBits+1) // pages 1 and 2
	b.Set(3)                                             // no change, page 0 already dirty
	require.Equal(t, []int{0, 1, 2}, collect(b))
	b.ClearDirty()
	require.Equal(t, 0, b.DirtyCount())
	b.Set(3) // unchanged bit: not dirty
	require.Equal(t, 0, b.DirtyCount())
	b.Clear(3)
	b.Set(4*bitmap.PageBits + 7)
	require.Equal(t, []int{0, 4}, collect(b))
	b.ClearPageDirty(0)
	require.Equal(t, []int{4}, collect(b))
	require.Equal(t, 4, bitmap.PageOfBit(4*bitmap.PageBits+7))
	b.MarkAllDirty()
	require.Equal(t, 5, b.DirtyCount())

	// Page encoding: little-endian words, page 4 has only bit 7 set.
	page := make([]byte, bitmap.PageBytes)
	b.EncodePage(4, page)
	require.Equal(t, byte(0x80), page[0])
	c := bitmap.New(5 * bitmap.PageBits)
	require.NoError(t, c.DecodePage(4, page))
	require.True(t, c.Test(4*bitmap.PageBits+7))
	require.Equal(t, uint64(1), c.Count())
	require.Equal(t, 0, c.DirtyCount(), "loading from disk is not a change")
	require.ErrorIs(t, c.DecodePage(5, page), bitmap.ErrRange)
	require.ErrorIs(t, c.DecodePage(0, page[:10]), bitmap.ErrSize)
}

func TestDecodeIgnoresSurplusBits(t *testing.T) {
	t.Parallel()
	b := bitmap.New(3)
	page := make([]byte, bitmap.PageBytes)
	for i := range page {
		page[i] = 0xff
	}
	require.NoError(t, b.DecodePage(0, page))
	require.Equal(t, uint64(3), b.Count())
}

func collect(b *bitmap.Bitmap) []int {
	var out []int
	for p := range b.DirtyPages() {
		out = append(out, p)
	}
	return out
}

// A bitmap for 1 TiB costs exactly 32 MiB of words (one bit per 4 KiB),
// plus 1 KiB of dirty-page bits, nothing else.
//
// NB: deliberately not parallel. Sequential tests run before any parallel
// one is released, so the allocation counter sees only this test.
func TestMemoryPerTiB(t *testing.T) {
	const tib = 1 << 40
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b := bitmap.ForSectors(tib / 512)
	runtime.ReadMemStats(&after)
	require.Equal(t, uint64(1<<28), b.Len())
	require.Equal(t, 1<<22, b.WordCount())
	require.Equal(t, 32<<20+1<<10, b.MemoryBytes())
	allocated := after.TotalAlloc - before.TotalAlloc
	require.GreaterOrEqual(t, allocated, uint64(32<<20))
	require.Less(t, allocated, uint64(32<<20+64<<10), "no hidden copies or growth")
	b.SetRange(b.Len()-100, b.Len())
	require.Equal(t, uint64(100), b.Count())
	require.Equal(t, 1<<28/bitmap.PageBits, b.Pages())
	runtime.KeepAlive(b)
}
