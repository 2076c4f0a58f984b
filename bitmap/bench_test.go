package bitmap_test

import (
	"math/rand/v2"
	"testing"

	"github.com/gdrbd/gdrbd/bitmap"
)

// 64 GiB of storage: 16 Mi bits, 2 MiB of words.
const benchBits = 1 << 24

func BenchmarkSet4KWrite(b *testing.B) {
	bm := bitmap.New(benchBits)
	r := rand.New(rand.NewPCG(1, 1))
	for b.Loop() {
		bm.SetSectors(uint64(r.IntN(benchBits))*8, 8)
	}
}

func BenchmarkSetRange1MiB(b *testing.B) {
	bm := bitmap.New(benchBits)
	i := uint64(0)
	for b.Loop() {
		s := i % (benchBits - 256)
		bm.SetRange(s, s+256)
		bm.ClearRange(s, s+256)
		i += 4099
	}
}

func BenchmarkCount(b *testing.B) {
	bm := bitmap.New(benchBits)
	bm.SetRange(100, benchBits/2)
	var n uint64
	for b.Loop() {
		n += bm.Count()
	}
	_ = n
}

func BenchmarkCountRangeAll(b *testing.B) {
	bm := bitmap.New(benchBits)
	bm.SetRange(100, benchBits/2)
	b.SetBytes(benchBits / 8)
	for b.Loop() {
		bm.CountRange(0, benchBits)
	}
}

func BenchmarkIterateSparse(b *testing.B) {
	bm := bitmap.New(benchBits)
	r := rand.New(rand.NewPCG(2, 2))
	for range 1000 {
		s := uint64(r.IntN(benchBits - 64))
		bm.SetRange(s, s+uint64(r.IntN(64)+1))
	}
	b.SetBytes(benchBits / 8)
	for b.Loop() {
		for s, e := range bm.SetRuns(0, benchBits) {
			_, _ = s, e
		}
	}
}

func BenchmarkEncodeRLESparse(b *testing.B) {
	bm := bitmap.New(benchBits)
	r := rand.New(rand.NewPCG(3, 3))
	for range 1000 {
		s := uint64(r.IntN(benchBits - 64))
		bm.SetRange(s, s+uint64(r.IntN(64)+1))
	}
	code := make([]byte, 4079)
	b.SetBytes(benchBits / 8)
	for b.Loop() {
		for off := uint64(0); off < benchBits; {
			_, n, next := bm.EncodeRLE(code, off)
			if n == 0 {
				next = min(next+4079/8*64, benchBits)
			}
			off = next
		}
	}
}
