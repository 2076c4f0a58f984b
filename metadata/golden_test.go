package metadata_test

import (
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/blockdev"
	"github.com/gdrbd/gdrbd/metadata"
)

// The reference device: 2 GiB, internal metadata, written by the DRBD
// 8.4.11 kernel (testdata/drbd84 is shared/reference/drbd84-metadata,
// gzipped). Each tail is the last 256 KiB of the device.
const (
	refDevSize  = 2147483648
	refTailOff  = 2147221504
	refMDOffset = 2147479552
	refALOffset = 2147446784
	refBMOffset = 2147381248
)

func gunzip(t testing.TB, name string) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "drbd84", name+".gz"))
	require.NoError(t, err)
	defer f.Close()
	z, err := gzip.NewReader(f)
	require.NoError(t, err)
	b, err := io.ReadAll(z)
	require.NoError(t, err)
	return b
}

// refDevice is a sparse 2 GiB memory device holding a reference tail.
func refDevice(t *testing.T, tail string) *blockdev.Mem {
	t.Helper()
	m := blockdev.NewMem(refDevSize)
	_, err := m.WriteAt(gunzip(t, tail), refTailOff)
	require.NoError(t, err)
	return m
}

func deviceTail(t *testing.T, d blockdev.Device) []byte {
	t.Helper()
	b := make([]byte, refDevSize-refTailOff)
	_, err := d.ReadAt(b, refTailOff)
	require.NoError(t, err)
	return b
}

func TestGoldenSuperblocks(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		tail  string
		magic metadata.Magic
		flags metadata.Flags
	}{
		{"attached-after-writes.tail256k", metadata.MagicV08Unclean, 0x13},
		// "secondary" cleared primary-ind before "down"; still unclean.
		{"after-down.tail256k", metadata.MagicV08Unclean, 0x11},
		{"after-apply-al.tail256k", metadata.MagicV08, 0x91},
	} {
		md, err := metadata.Open(refDevice(t, c.tail), metadata.Internal())
		require.NoError(t, err, c.tail)
		sb := md.SB
		require.Equal(t, c.magic, sb.Magic, c.tail)
		require.Equal(t, c.flags, sb.Flags, c.tail)
		require.Equal(t, metadata.GenerationUUIDs{Current: 0x5C8264059992925F, Bitmap: 0x1A2B3C4D5E6F7000}, sb.UUIDs)
		require.Equal(t, uint64(4194104), sb.LaSizeSect)
		require.Equal(t, uint32(257), sb.ALNrExtents)
		require.Equal(t, uint32(4096), sb.LaPeerMaxBioSize)
		require.Equal(t, uint32(200), sb.MDSizeSect)
		require.Equal(t, int64(refMDOffset), md.Layout.MDOffset)
		require.Equal(t, int64(refALOffset), md.Layout.ALByteOffset())
		require.Equal(t, int64(refBMOffset), md.Layout.BMByteOffset())
		require.Equal(t, uint64(0), md.ClippedFrom)
		// Re-encoding the decoded superblock reproduces the kernel's block.
		raw := gunzip(t, c.tail)[refMDOffset-refTailOff:][:4096]
		enc, err := sb.MarshalBinary()
		require.NoError(t, err)
		require.Equal(t, raw, enc, c.tail)
	}
}

// The kernel's AL ring after 600 writes: transactions 592..599, one update
// each, context size 257, striped 1 x 8.
func TestGoldenALRing(t *testing.T) {
	t.Parallel()
	tail := gunzip(t, "attached-after-writes.tail256k")
	ring := tail[refALOffset-refTailOff:][:32768]
	seen := map[uint32]bool{}
	for b := 0; b < 8; b++ {
		blk := ring[b*4096:][:4096]
		tx, err := metadata.DecodeTransaction(blk)
		require.NoError(t, err, "block %d", b)
		require.Equal(t, metadata.TransactionUpdate, tx.Type)
		require.Len(t, tx.Updates, 1)
		require.Equal(t, uint16(257), tx.ContextSize)
		require.Equal(t, uint32(b), tx.Number%8, "transaction t lives in block t mod 8")
		seen[tx.Number] = true
		// Encode(Decode(block)) is the kernel's block, checksum included.
		out := make([]byte, 4096)
		require.NoError(t, tx.Encode(out))
		require.Equal(t, blk, out, "block %d", b)
		// A flipped bit fails the checksum.
		bad := append([]byte(nil), blk...)
		bad[2000] ^= 1
		_, err = metadata.DecodeTransaction(bad)
		require.ErrorIs(t, err, metadata.ErrALChecksum)
	}
	for n := uint32(592); n <= 599; n++ {
		require.True(t, seen[n], "transaction %d", n)
	}
	r, err := metadata.ReplayAL(ring, 1, 8)
	require.NoError(t, err)
	require.Equal(t, 8, r.Valid)
	require.Equal(t, 8, r.Updates)
	require.Equal(t, uint32(592), r.Oldest)
	require.Equal(t, uint32(599), r.Newest)
	require.Equal(t, uint32(600), r.NextNumber())
	require.Empty(t, r.Warnings)
	// al-extents 257 and 511 distinct extents written: every slot is hot.
	hot := r.HotExtents()
	require.Len(t, hot, 257)
	for _, e := range hot {
		require.Less(t, e, uint32(511))
	}
	// The newest writes (i = 599, 598, ...) went to extent (i*7919) % 511:
	// those are hot.
	for i := 599; i > 599-200; i-- {
		require.Contains(t, hot, uint32(i*7919%511), "write %d", i)
	}
}

// apply-al on the metadata "down" left behind reproduces, byte for byte,
// the tail drbdmeta apply-al produced: the node was no longer Primary, so
// no extent is applied; the ring is re-initialized and the superblock
// becomes clean.
func TestGoldenApplyAL(t *testing.T) {
	t.Parallel()
	dev := refDevice(t, "after-down.tail256k")
	md, err := metadata.Open(dev, metadata.Internal())
	require.NoError(t, err)
	res, err := md.ApplyAL()
	require.NoError(t, err)
	require.False(t, res.Applied)
	require.True(t, res.Reinitialized)
	require.True(t, res.SuperblockWritten)
	require.Equal(t, 8, res.Replay.Updates)
	require.Equal(t, gunzip(t, "after-apply-al.tail256k"), deviceTail(t, dev))

	// Applying again changes nothing.
	md, err = metadata.Open(dev, metadata.Internal())
	require.NoError(t, err)
	res, err = md.ApplyAL()
	require.NoError(t, err)
	require.False(t, res.Reinitialized)
	require.False(t, res.SuperblockWritten)
	require.Equal(t, gunzip(t, "after-apply-al.tail256k"), deviceTail(t, dev))

	bm, err := md.ReadBitmap()
	require.NoError(t, err)
	require.Equal(t, uint64(600), bm.Count(), "each of the 600 writes left one out-of-sync block")
	for i := uint64(0); i < 600; i++ {
		e := i * 7919 % 511
		require.True(t, bm.Test(e*1024+i%1024), "write %d", i)
	}
}

// On the still-attached Primary's metadata, apply-al folds every hot extent
// into the bitmap.
func TestGoldenApplyALPrimary(t *testing.T) {
	t.Parallel()
	dev := refDevice(t, "attached-after-writes.tail256k")
	md, err := metadata.Open(dev, metadata.Internal())
	require.NoError(t, err)
	before, err := md.ReadBitmap()
	require.NoError(t, err)
	res, err := md.ApplyAL()
	require.NoError(t, err)
	require.True(t, res.Applied)
	require.Len(t, res.Extents, 257)
	bm, err := md.ReadBitmap()
	require.NoError(t, err)
	for _, e := range res.Extents {
		require.Equal(t, uint64(1024), bm.CountRange(uint64(e)*1024, uint64(e+1)*1024), "extent %d", e)
	}
	require.Equal(t, bm.Count()-before.Count(), res.BitsAdded)
	require.Equal(t, metadata.FlagConsistent|metadata.FlagPrimaryInd|metadata.FlagWasUpToDate|metadata.FlagALClean, md.SB.Flags,
		"apply-al keeps primary-ind")
}

// dump-md of the kernel-written metadata equals drbdmeta's dumps, header
// lines included (they come from the reference file).
func TestGoldenDump(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ tail, dump string }{
		{"after-apply-al.tail256k", "after-apply-al.dump-md.txt"},
		{"after-down.tail256k", "after-down.dump-md-force.txt"},
	} {
		want := string(gunzip(t, c.dump))
		md, err := metadata.Open(refDevice(t, c.tail), metadata.Internal())
		require.NoError(t, err)
		var got strings.Builder
		if !md.SB.Clean() {
			// drbdmeta's stderr line, captured into the reference file.
			got.WriteString(metadata.UncleanMessage + "\n")
		}
		start := strings.Index(want, "# DRBD meta data dump")
		header := want[start:strings.Index(want, "version")]
		require.NoError(t, md.Dump(&got, header))
		require.Equal(t, want, got.String(), c.dump)
	}
}
