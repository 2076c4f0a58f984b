package metadata_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/bitmap"
	"github.com/gdrbd/gdrbd/blockdev"
	"github.com/gdrbd/gdrbd/metadata"
)

var crashSeeds = flag.Uint64("md.crashseeds", 150, "seeds for TestCrashRecoveryCoversWrites (30 under -race)")

// crashSim is a Primary writing to its disk through the activity log, with
// the peer coming and going, on a device that can lose power at any step.
type crashSim struct {
	t   *testing.T
	r   *rand.Rand
	dev *blockdev.Crashable
	md  *metadata.Metadata
	al  *metadata.ActivityLog
	bm  *bitmap.Bitmap

	connected bool
	blocks    uint64 // data blocks (4 KiB) in use by the workload
	queued    []queuedWrite
	inflight  []uint64 // blocks whose data write was issued, not completed

	// broken modes, to prove the test catches violations
	dataBeforeAL   bool // issue data writes before their AL transaction commits
	skipEvictFlush bool // write a transaction without its evicted bitmap pages
}

type queuedWrite struct {
	block uint64
	gen   uint64
}

func extentOf(block uint64) uint32 { return uint32(block * 4096 >> metadata.ALExtentShift) }

func newCrashSim(t *testing.T, seed uint64) *crashSim {
	r := rand.New(rand.NewPCG(seed, 1234))
	const size = 1 << 30
	mem := blockdev.NewMem(size)
	md, err := metadata.Create(mem, metadata.Internal(), metadata.CreateOptions{})
	require.NoError(t, err)
	md.SB.LaSizeSect = md.Layout.MaxUsableSectors()
	md.SB.Flags |= metadata.FlagConsistent | metadata.FlagPrimaryInd | metadata.FlagWasUpToDate
	require.NoError(t, md.WriteSuperblock())
	require.NoError(t, md.MarkUnclean()) // attach

	gran := []blockdev.CrashGranularity{blockdev.CrashPerWrite, blockdev.CrashPer4K, blockdev.CrashPer512}[seed%3]
	dev, err := blockdev.NewCrashable(mem, gran)
	require.NoError(t, err)
	md, err = metadata.Open(dev, metadata.Internal())
	require.NoError(t, err)
	bm, err := md.ReadBitmap()
	require.NoError(t, err)
	al, err := metadata.NewActivityLog(metadata.ALConfig{Extents: metadata.ALExtentsMin, Layout: md.Layout})
	require.NoError(t, err)
	return &crashSim{
		t: t, r: r, dev: dev, md: md, al: al, bm: bm,
		connected: r.IntN(2) == 0,
		// About 100 extents: more than al-extents, so the LRU evicts.
		blocks: 100 * metadata.BitsPerALExtent,
	}
}

// issue sends a data write to the disk: from now on it may be on the
// platter. Its content is irrelevant to what recovery must cover, so the
// simulation only records it (which keeps crash images small and the test
// fast); the crash points around it are all still there.
func (s *crashSim) issue(block uint64) {
	s.inflight = append(s.inflight, block)
}

func (s *crashSim) step() {
	switch k := s.r.IntN(100); {
	case k < 40: // a new application write
		block := uint64(s.r.IntN(int(s.blocks)))
		e := extentOf(block)
		b := s.al.Begin(e, e)
		switch {
		case b.Decision == metadata.Go || (b.Decision == metadata.Commit && s.dataBeforeAL):
			s.issue(block)
		case b.Decision == metadata.Commit:
			s.queued = append(s.queued, queuedWrite{block: block, gen: b.Gen})
		}
	case k < 60: // commit the pending AL transaction, then release its writes
		tx := s.al.Sealed()
		if tx == nil {
			tx = s.al.Seal()
		}
		if tx == nil {
			return
		}
		if s.skipEvictFlush {
			_, err := s.dev.WriteAt(tx.Data, tx.Offset)
			require.NoError(s.t, err)
			require.NoError(s.t, s.dev.Flush())
		} else {
			require.NoError(s.t, s.md.CommitTransaction(tx, s.bm))
		}
		s.al.Committed(tx)
		keep := s.queued[:0]
		for _, q := range s.queued {
			if q.gen > s.al.CommittedGen() {
				keep = append(keep, q)
			} else {
				s.issue(q.block)
			}
		}
		s.queued = keep
	case k < 85: // a data write completes
		if len(s.inflight) == 0 {
			return
		}
		i := s.r.IntN(len(s.inflight))
		block := s.inflight[i]
		s.inflight = slices.Delete(s.inflight, i, i+1)
		if !s.connected {
			s.bm.Set(block) // BEFORE Complete: the peer did not get it
		}
		e := extentOf(block)
		s.al.Complete(e, e)
	case k < 90: // periodic bitmap write-out
		if !s.skipEvictFlush || s.r.IntN(4) == 0 {
			require.NoError(s.t, s.md.WriteDirtyBitmap(s.bm))
		}
	case k < 95:
		require.NoError(s.t, s.dev.Flush())
	default:
		s.connected = !s.connected
	}
}

// check crashes now and verifies that apply-al on what survived yields a
// bitmap covering every block that may differ from the peer: bits set in
// memory, and every write issued but not completed.
func (s *crashSim) check(crashSeed uint64) error {
	after := s.dev.Crash(rand.New(rand.NewPCG(crashSeed, 99)))
	md, err := metadata.Open(after, metadata.Internal())
	if err != nil {
		return err
	}
	if _, err := md.ApplyAL(); err != nil {
		return err
	}
	got, err := md.ReadBitmap()
	if err != nil {
		return err
	}
	for from, to := range s.bm.SetRuns(0, s.bm.Len()) {
		for x := from; x < to; x++ {
			if !got.Test(x) {
				return fmt.Errorf("block %d was out of sync (set in memory) but not after recovery", x)
			}
		}
	}
	for _, b := range s.inflight {
		if !got.Test(b) {
			return fmt.Errorf("block %d had a write in flight but is not out of sync after recovery", b)
		}
	}
	return nil
}

// TestCrashRecoveryCoversWrites is the activity log's safety property: at
// every crash point of the write path (AL transaction, eviction with its
// bitmap write-out, data write, completion, bitmap write-out, flushes),
// with any subset of unflushed writes surviving (per write, per 4 KiB,
// torn 512-byte sectors), apply-al recovers a bitmap that covers every
// block whose write may have reached the disk without reaching the peer.
func TestCrashRecoveryCoversWrites(t *testing.T) {
	t.Parallel()
	crashes := 0
	seeds := *crashSeeds
	if raceEnabled {
		seeds = min(seeds, 30)
	}
	for seed := range seeds {
		s := newCrashSim(t, seed)
		steps := 100 + s.r.IntN(300)
		for i := range steps {
			s.step()
			if i%19 == 18 || i == steps-1 {
				require.NoError(t, s.check(seed*1000+uint64(i)), "seed %d step %d", seed, i)
				crashes++
			}
		}
	}
	t.Logf("%d crash points checked", crashes)
}

// The property test must fail when the ordering rules are broken; these
// runs prove it can.
func TestCrashRecoveryDetectsBrokenOrdering(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"data before AL", "no bitmap write-out before eviction"} {
		caught := false
		for seed := uint64(0); seed < 300 && !caught; seed++ {
			s := newCrashSim(t, seed)
			s.dataBeforeAL = mode == "data before AL"
			s.skipEvictFlush = !s.dataBeforeAL
			if s.skipEvictFlush {
				s.connected = false
			}
			for i := range 400 {
				s.step()
				if i%20 == 19 && s.check(seed*1000+uint64(i)) != nil {
					caught = true
					break
				}
			}
		}
		require.True(t, caught, "a crash test that cannot catch %q is worthless", mode)
	}
}
