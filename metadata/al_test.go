package metadata_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/metadata"
)

func testLayout(t testing.TB) metadata.Layout {
	t.Helper()
	l, err := metadata.ComputeLayout(metadata.Internal(), 64<<30, 1, 8)
	require.NoError(t, err)
	return l
}

func newAL(t testing.TB, extents int) *metadata.ActivityLog {
	t.Helper()
	al, err := metadata.NewActivityLog(metadata.ALConfig{Extents: extents, Layout: testLayout(t)})
	require.NoError(t, err)
	return al
}

func TestALFirstWrite(t *testing.T) {
	t.Parallel()
	al := newAL(t, 67)
	b := al.Begin(5, 5)
	require.Equal(t, metadata.Commit, b.Decision)
	require.Equal(t, uint64(1), b.Gen)
	require.False(t, al.IsHot(5))
	// A second write to the same cold extent joins the same transaction.
	require.Equal(t, metadata.Begin{Decision: metadata.Commit, Gen: 1}, al.Begin(5, 5))
	tx := al.Seal()
	require.NotNil(t, tx)
	require.Nil(t, al.Seal(), "one transaction in flight at a time")
	require.Equal(t, uint32(0), tx.Number)
	require.Equal(t, []metadata.SlotUpdate{{Slot: 66, Extent: 5}}, tx.Updates, "the kernel hands out the highest free slot first")
	require.Empty(t, tx.Evicts)
	require.Equal(t, uint16(67), tx.ContextSize)
	require.Equal(t, testLayout(t).ALByteOffset(), tx.Offset)
	decoded, err := metadata.DecodeTransaction(tx.Data)
	require.NoError(t, err)
	require.Equal(t, tx.Updates, decoded.Updates)
	// Still sealed, not committed: a third write waits for gen 1 too.
	require.Equal(t, metadata.Begin{Decision: metadata.Commit, Gen: 1}, al.Begin(5, 5))
	al.Committed(tx)
	require.True(t, al.IsHot(5))
	require.Equal(t, uint64(1), al.CommittedGen())
	require.Equal(t, uint32(1), al.NextNumber())
	require.Equal(t, metadata.Begin{Decision: metadata.Go}, al.Begin(5, 5))
	require.Equal(t, 4, al.Refs(5))
	for range 4 {
		al.Complete(5, 5)
	}
	require.Equal(t, 0, al.Refs(5))
	require.True(t, al.IsHot(5), "idle extents stay hot until evicted")
	require.Panics(t, func() { al.Complete(5, 5) })
	require.Panics(t, func() { al.Complete(6, 6) })
	require.Panics(t, func() { al.Committed(tx) })
}

func commitAll(t *testing.T, al *metadata.ActivityLog) []*metadata.SealedTransaction {
	t.Helper()
	var txs []*metadata.SealedTransaction
	for tx := al.Seal(); tx != nil; tx = al.Seal() {
		al.Committed(tx)
		txs = append(txs, tx)
	}
	return txs
}

func TestALEvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	al := newAL(t, 67)
	for e := uint32(0); e < 67; e++ {
		require.Equal(t, metadata.Commit, al.Begin(e, e).Decision)
		if e%60 == 59 {
			commitAll(t, al)
		}
	}
	commitAll(t, al)
	// Release in the order 10, 11, ..., 66, 0, ..., 9: extent 10 is the
	// least recently used.
	for i := uint32(0); i < 67; i++ {
		e := (i + 10) % 67
		al.Complete(e, e)
	}
	require.Equal(t, metadata.Commit, al.Begin(1000, 1000).Decision)
	require.Equal(t, metadata.Commit, al.Begin(1001, 1001).Decision)
	tx := al.Seal()
	require.Equal(t, []uint32{10, 11}, tx.Evicts)
	require.Equal(t, []int{0}, tx.EvictedPages())
	require.False(t, al.IsHot(10), "evicted as soon as staged")
	al.Committed(tx)
	require.True(t, al.IsHot(1000))
	require.Equal(t, 1000/32, metadata.ExtentBitmapPage(1000))
	// Touching extent 12 makes it recently used: 13 goes next.
	require.Equal(t, metadata.Go, al.Begin(12, 12).Decision)
	al.Complete(12, 12)
	al.Begin(2000, 2000)
	require.Equal(t, []uint32{13}, al.Seal().Evicts)
}

func TestALWaitsWhenEverythingIsInUse(t *testing.T) {
	t.Parallel()
	al := newAL(t, 67)
	for e := uint32(0); e < 67; e++ {
		al.Begin(e, e)
		if e == 63 {
			commitAll(t, al)
		}
	}
	commitAll(t, al)
	require.Equal(t, metadata.Wait, al.Begin(500, 500).Decision, "no idle slot to evict")
	require.Equal(t, 0, al.Refs(500))
	al.Complete(30, 30)
	b := al.Begin(500, 501)
	require.Equal(t, metadata.Wait, b.Decision, "two cold extents need two idle slots")
	b = al.Begin(500, 500)
	require.Equal(t, metadata.Commit, b.Decision)
	require.Equal(t, []uint32{30}, al.Seal().Evicts)
}

func TestALSixtyFourUpdatesPerTransaction(t *testing.T) {
	t.Parallel()
	al := newAL(t, 200)
	for e := uint32(0); e < 64; e++ {
		require.Equal(t, uint64(1), al.Begin(e, e).Gen)
	}
	require.Equal(t, metadata.Wait, al.Begin(64, 64).Decision, "the staged transaction is full")
	tx1 := al.Seal()
	require.Len(t, tx1.Updates, 64)
	// While tx1 is being written, new extents stage into the next one.
	b := al.Begin(64, 65)
	require.Equal(t, metadata.Begin{Decision: metadata.Commit, Gen: 2}, b)
	require.Nil(t, al.Seal())
	al.Committed(tx1)
	tx2 := al.Seal()
	require.Equal(t, uint32(1), tx2.Number)
	require.Len(t, tx2.Updates, 2)
	al.Committed(tx2)
	require.Equal(t, metadata.Go, al.Begin(64, 65).Decision)
	require.Panics(t, func() { al.Begin(0, 64) }, "a write spans at most 64 extents")
}

func TestALContextRolls(t *testing.T) {
	t.Parallel()
	al := newAL(t, 2000)
	var starts []uint16
	var sizes []int
	for e := uint32(0); e < 4; e++ {
		al.Begin(e, e)
		tx := al.Seal()
		starts = append(starts, tx.ContextStart)
		sizes = append(sizes, len(tx.Context))
		al.Committed(tx)
	}
	require.Equal(t, []uint16{0, 919, 1838, 0}, starts)
	require.Equal(t, []int{919, 919, 162, 919}, sizes)
}

func TestALConfigLimits(t *testing.T) {
	t.Parallel()
	l := testLayout(t)
	require.Equal(t, 6433, metadata.MaxALExtents(l), "7 transactions x 919 slots of context")
	_, err := metadata.NewActivityLog(metadata.ALConfig{Extents: 66, Layout: l})
	require.Error(t, err)
	_, err = metadata.NewActivityLog(metadata.ALConfig{Extents: 6434, Layout: l})
	require.ErrorContains(t, err, "larger activity log")
	big, err := metadata.ComputeLayout(metadata.FlexExternal(), 1<<30, 8, 32)
	require.NoError(t, err)
	require.Equal(t, metadata.ALExtentsMax, metadata.MaxALExtents(big))
	require.Equal(t, 67, metadata.ClampALExtents(10, l))
	require.Equal(t, 1237, metadata.ClampALExtents(1237, l))
	require.Equal(t, 6433, metadata.ClampALExtents(65534, l))
	first, last := metadata.ExtentRange(4<<20-4096, 8192)
	require.Equal(t, []uint32{0, 1}, []uint32{first, last})
	first, last = metadata.ExtentRange(8<<20, 0)
	require.Equal(t, []uint32{2, 2}, []uint32{first, last})
	require.Equal(t, "wait", metadata.Wait.String())
}

// ringOf keeps an in-memory copy of the AL ring as transactions commit.
type ringOf struct {
	base int64
	data []byte
}

func newRing(l metadata.Layout) *ringOf {
	r := &ringOf{base: l.ALByteOffset(), data: make([]byte, l.ALBytes())}
	blk := metadata.InitializedBlock()
	for off := 0; off < len(r.data); off += 4096 {
		copy(r.data[off:], blk)
	}
	return r
}

func (r *ringOf) write(tx *metadata.SealedTransaction) { copy(r.data[tx.Offset-r.base:], tx.Data) }

// TestALReplayMatchesState drives random workloads through the activity
// log, writes every committed transaction into a ring, and checks after
// each commit that replaying the ring yields exactly the committed slots:
// in particular every extent a write may be using is in the replayed set.
func TestALReplayMatchesState(t *testing.T) {
	t.Parallel()
	seeds := uint64(24)
	if raceEnabled {
		seeds = 8
	}
	for seed := range seeds {
		r := rand.New(rand.NewPCG(seed, 77))
		extents := []int{67, 300, 1237, 6433}[seed%4]
		stripes := []uint32{1, 2}[seed%2]
		l, err := metadata.ComputeLayout(metadata.Internal(), 64<<30, stripes, 8/stripes*2)
		require.NoError(t, err)
		if extents > metadata.MaxALExtents(l) {
			extents = metadata.MaxALExtents(l)
		}
		next := uint32(r.IntN(1 << 32))
		if seed%3 == 0 {
			next = ^uint32(0) - 3 // transaction numbers wrap during the run
		}
		al, err := metadata.NewActivityLog(metadata.ALConfig{Extents: extents, Layout: l, NextNumber: next})
		require.NoError(t, err)
		ring := newRing(l)
		space := uint32(extents * 2)
		type write struct{ first, last uint32 }
		var inflight []write
		commits := 0
		for step := range 400 {
			switch {
			case len(inflight) > 0 && r.IntN(3) == 0:
				i := r.IntN(len(inflight))
				w := inflight[i]
				al.Complete(w.first, w.last)
				inflight = slices.Delete(inflight, i, i+1)
			default:
				f := uint32(r.IntN(int(space)))
				w := write{f, f + uint32(r.IntN(2))}
				if al.Begin(w.first, w.last).Decision != metadata.Wait {
					inflight = append(inflight, w)
				}
			}
			tx := al.Sealed()
			if tx == nil {
				tx = al.Seal()
			}
			if tx != nil && r.IntN(2) == 0 {
				ring.write(tx)
				al.Committed(tx)
				commits++
				if commits%2 == 1 {
					continue // replay every other commit: fast under -race too
				}
				rep, err := metadata.ReplayAL(ring.data, l.ALStripes, l.ALStripeSize4k)
				require.NoError(t, err)
				if !slices.Equal(al.HotExtents(), nonFree(rep.Slots)) || al.NextNumber() != rep.NextNumber() {
					t.Fatalf("seed %d step %d: replay %v (next %d), log %v (next %d)", seed, step,
						nonFree(rep.Slots), rep.NextNumber(), al.HotExtents(), al.NextNumber())
				}
			}
		}
		require.Greater(t, commits, 50, "seed %d", seed)
	}
}

func nonFree(slots []uint32) []uint32 {
	var out []uint32
	for _, e := range slots {
		if e != metadata.LCFree {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return out
}

func BenchmarkALBeginCompleteHot(b *testing.B) {
	al := newAL(b, metadata.ALExtentsDefault)
	for e := uint32(0); e < 64; e++ {
		al.Begin(e, e)
	}
	tx := al.Seal()
	al.Committed(tx)
	i := uint32(0)
	for b.Loop() {
		e := i % 64
		al.Begin(e, e)
		al.Complete(e, e)
		i++
	}
}

func BenchmarkALColdWriteWithEviction(b *testing.B) {
	al := newAL(b, metadata.ALExtentsDefault)
	i := uint32(0)
	for b.Loop() {
		if al.Begin(i, i).Decision != metadata.Commit {
			b.Fatal("expected a cold extent")
		}
		tx := al.Seal()
		al.Committed(tx)
		al.Complete(i, i)
		i++
	}
}

// DecodeTransaction's errors for blocks that are no transaction read as
// they always did and wrap their sentinels (they are formatted lazily).
func TestDecodeTransactionErrors(t *testing.T) {
	blk := metadata.InitializedBlock()
	bad := slices.Clone(blk)
	bad[0] = 0
	_, err := metadata.DecodeTransaction(bad)
	require.ErrorIs(t, err, metadata.ErrALMagic)
	require.EqualError(t, err, "metadata: AL block magic 0x00cb65a2: metadata: not an activity log transaction (bad magic)")

	bad = slices.Clone(blk)
	bad[100] = 1
	_, err = metadata.DecodeTransaction(bad)
	require.ErrorIs(t, err, metadata.ErrALChecksum)
	require.NotErrorIs(t, err, metadata.ErrALMagic)
	require.Regexp(t, `^metadata: AL block crc32c 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}: metadata: activity log transaction checksum mismatch$`, err.Error())

	_, err = metadata.DecodeTransaction(blk[:100])
	require.ErrorIs(t, err, metadata.ErrALTransaction)
}
