package metadata_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/bitmap"
	"github.com/gdrbd/gdrbd/blockdev"
	"github.com/gdrbd/gdrbd/blockdev/blockdevtest"
	"github.com/gdrbd/gdrbd/internal/tooltest"
	"github.com/gdrbd/gdrbd/metadata"
)

// Interoperability with the real drbdmeta (drbd-utils), both ways, on a
// regular file and on a loop device. drbdmeta is run with "-" as the minor
// (no lock file, no drbdsetup query) and --force (files need it; it also
// answers its questions).

func drbdmeta(t *testing.T, path string, loc metadata.Location, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return tooltest.Drbdmeta(t, path, loc.DrbdmetaArg(), args...)
}

// dumpBody strips dump-md's header (time, host, command line).
var dumpBody = tooltest.DumpBody

func ourDump(t *testing.T, md *metadata.Metadata) string {
	t.Helper()
	var b strings.Builder
	require.NoError(t, md.Dump(&b, ""))
	return b.String()
}

// targets yields a regular file and a loop device over another file, both
// of size bytes.
func targets(t *testing.T, size int64) map[string]string {
	out := map[string]string{"file": blockdevtest.TempFile(t, size)}
	if os.Geteuid() == 0 || os.Getenv("CI") == "true" {
		out["loop"] = blockdevtest.Loop(t, blockdevtest.TempFile(t, size))
	}
	return out
}

func openDev(t *testing.T, path string) *blockdev.File {
	t.Helper()
	d, err := blockdev.Open(path, blockdev.Options{Direct: true})
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

// fillBitmap sets a pattern with long runs, single bits and a tail.
func fillBitmap(bm *bitmap.Bitmap, r *rand.Rand) {
	bm.SetRange(100, 100+5000)
	for range 200 {
		bm.Set(uint64(r.IntN(int(bm.Len()))))
	}
	bm.SetRange(bm.Len()-3, bm.Len())
}

func TestDrbdmetaReadsWhatWeWrite(t *testing.T) {
	t.Parallel()
	for kind, path := range targets(t, 1<<30) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(7, 7))
			dev := openDev(t, path)
			md, err := metadata.Create(dev, metadata.Internal(), metadata.CreateOptions{})
			require.NoError(t, err)
			out, errOut, code := drbdmeta(t, path, metadata.Internal(), "dump-md")
			require.Equal(t, 0, code, errOut)
			require.Equal(t, dumpBody(out), ourDump(t, md), "fresh metadata")

			md.SB.LaSizeSect = md.Layout.MaxUsableSectors() - 13
			md.SB.UUIDs = metadata.GenerationUUIDs{Current: r.Uint64(), Bitmap: r.Uint64(), History: [2]uint64{r.Uint64(), 0x1234}}
			md.SB.Flags |= metadata.FlagConsistent | metadata.FlagWasUpToDate | metadata.FlagPeerOutDated
			md.SB.DeviceUUID = r.Uint64()
			md.SB.LaPeerMaxBioSize = 1 << 20
			require.NoError(t, md.WriteSuperblock())
			bm, err := md.ReadBitmap()
			require.NoError(t, err)
			fillBitmap(bm, r)
			require.NoError(t, md.WriteDirtyBitmap(bm))

			out, errOut, code = drbdmeta(t, path, metadata.Internal(), "dump-md")
			require.Equal(t, 0, code, errOut)
			require.Equal(t, dumpBody(out), ourDump(t, md))
			require.Contains(t, out, fmt.Sprintf("# bits-set %d;", bm.Count()))
			require.Contains(t, out, fmt.Sprintf("la-size-sect %d;", md.SB.LaSizeSect))
			require.Contains(t, out, fmt.Sprintf("0x%016X;", md.SB.UUIDs.Current))
			out, _, code = drbdmeta(t, path, metadata.Internal(), "get-gi")
			require.Equal(t, 0, code)
			require.Equal(t, out, md.GI())
			out, _, code = drbdmeta(t, path, metadata.Internal(), "show-gi")
			require.Equal(t, 0, code)
			require.Equal(t, out, md.ShowGI())
		})
	}
}

// An attached Primary writes through the activity log with evictions, then
// crashes: drbdmeta sees the same unclean dump, and drbdmeta apply-al and
// gdrbd apply-al leave byte-identical metadata.
func TestApplyALAgreesWithDrbdmeta(t *testing.T) {
	t.Parallel()
	const size = 512 << 20
	for kind, path := range targets(t, size) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(3, 4))
			dev := openDev(t, path)
			md, err := metadata.Create(dev, metadata.Internal(), metadata.CreateOptions{})
			require.NoError(t, err)
			md.SB.LaSizeSect = md.Layout.MaxUsableSectors()
			md.SB.Flags |= metadata.FlagConsistent | metadata.FlagPrimaryInd | metadata.FlagWasUpToDate
			require.NoError(t, md.MarkUnclean())
			bm, err := md.ReadBitmap()
			require.NoError(t, err)
			al, err := metadata.NewActivityLog(metadata.ALConfig{Extents: 67, Layout: md.Layout})
			require.NoError(t, err)
			txs := 0
			for range 300 {
				block := uint64(r.IntN(int(bm.Len())))
				e := uint32(block / metadata.BitsPerALExtent)
				if al.Begin(e, e).Decision == metadata.Wait {
					continue
				}
				if tx := al.Seal(); tx != nil {
					require.NoError(t, md.CommitTransaction(tx, bm))
					al.Committed(tx)
					txs++
				}
				if r.IntN(2) == 0 {
					bm.Set(block) // written while the peer was away
				}
				al.Complete(e, e)
			}
			require.Greater(t, txs, 20, "the ring wrapped several times")

			out, errOut, code := drbdmeta(t, path, metadata.Internal(), "dump-md")
			require.Equal(t, 0, code, errOut)
			require.Contains(t, errOut, metadata.UncleanMessage)
			require.Equal(t, dumpBody(out), ourDump(t, md))

			// A second device with the same metadata area for gdrbd.
			twin := blockdevtest.TempFile(t, size)
			tdev := openDev(t, twin)
			area := make([]byte, size-md.Layout.BMByteOffset())
			_, err = dev.ReadAt(area, md.Layout.BMByteOffset())
			require.NoError(t, err)
			_, err = tdev.WriteAt(area, md.Layout.BMByteOffset())
			require.NoError(t, err)

			_, errOut, code = drbdmeta(t, path, metadata.Internal(), "apply-al")
			require.Equal(t, 0, code, errOut)
			tmd, err := metadata.Open(tdev, metadata.Internal())
			require.NoError(t, err)
			res, err := tmd.ApplyAL()
			require.NoError(t, err)
			require.True(t, res.Applied)
			require.Contains(t, errOut, fmt.Sprintf("Marked additional %s as out-of-sync based on AL.", metadata.PPSize(res.BitsAdded*4)))

			theirs := make([]byte, len(area))
			_, err = dev.ReadAt(theirs, md.Layout.BMByteOffset())
			require.NoError(t, err)
			ours := make([]byte, len(area))
			_, err = tdev.ReadAt(ours, md.Layout.BMByteOffset())
			require.NoError(t, err)
			require.True(t, bytes.Equal(theirs, ours), "apply-al results differ")

			// And each reads the other's result.
			after, err := metadata.Open(dev, metadata.Internal())
			require.NoError(t, err)
			require.True(t, after.SB.Clean())
			out, _, code = drbdmeta(t, twin, metadata.Internal(), "dump-md")
			require.Equal(t, 0, code)
			require.Equal(t, dumpBody(out), ourDump(t, after))
			abm, err := after.ReadBitmap()
			require.NoError(t, err)
			// Everything set in memory was either written out at eviction or
			// lies in a hot extent: the result is exactly memory + hot extents.
			require.True(t, withHot(bm, res.Extents).Equal(abm))
		})
	}
}

// withHot returns bm with the extents set (the in-memory view of what
// apply-al does).
func withHot(bm *bitmap.Bitmap, extents []uint32) *bitmap.Bitmap {
	c := bm.Clone()
	metadata.MarkHotExtents(c, extents)
	return c
}

// gdrbd reads what drbdmeta create-md and restore-md write.
func TestWeReadWhatDrbdmetaWrites(t *testing.T) {
	t.Parallel()
	for kind, path := range targets(t, 256<<20) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			_, errOut, code := drbdmeta(t, path, metadata.Internal(), "create-md")
			require.Equal(t, 0, code, errOut)
			dev := openDev(t, path)
			md, err := metadata.Open(dev, metadata.Internal())
			require.NoError(t, err)
			require.Equal(t, metadata.NewSuperblock(md.Layout, 0), md.SB)
			ring, err := md.ReadALRing()
			require.NoError(t, err)
			require.Equal(t, bytes.Repeat(metadata.InitializedBlock(), 8), ring, "drbdmeta's initialized ring")
			out, _, _ := drbdmeta(t, path, metadata.Internal(), "dump-md")
			require.Equal(t, dumpBody(out), ourDump(t, md))

			// restore-md from a hand-written dump: UUIDs, flags, size and a
			// bitmap with runs.
			la := md.Layout.MaxUsableSectors() - 8
			words := metadata.BitmapBytes(la) / 8
			var bmText strings.Builder
			bmText.WriteString("bm {\n 0x00000000000000FF; 7 times 0xFFFFFFFFFFFFFFFF; 0x8000000000000001;\n")
			fmt.Fprintf(&bmText, " %d times 0x0000000000000000;\n}\n", words-9)
			dump := fmt.Sprintf(`version "v08";
uuid {
    0x1A2B3C4D5E6F7001; 0x000000000000BEEF; 0x0000000000000002; 0x0000000000000000;
    flags 0x00000091;
}
la-size-sect %d;
bm-byte-per-bit 4096;
device-uuid 0x00000000CAFEF00D;
la-peer-max-bio-size 131072;
al-stripes 1;
al-stripe-size-4k 8;
%s`, la, bmText.String())
			file := filepath.Join(t.TempDir(), "dump.txt")
			require.NoError(t, os.WriteFile(file, []byte(dump), 0o600))
			_, errOut, code = drbdmeta(t, path, metadata.Internal(), "restore-md", file)
			require.Equal(t, 0, code, errOut)
			md, err = metadata.Open(dev, metadata.Internal())
			require.NoError(t, err)
			require.Equal(t, metadata.GenerationUUIDs{Current: 0x1A2B3C4D5E6F7001, Bitmap: 0xBEEF, History: [2]uint64{2, 0}}, md.SB.UUIDs)
			require.Equal(t, metadata.Flags(0x91), md.SB.Flags)
			require.Equal(t, la, md.SB.LaSizeSect)
			require.Equal(t, uint64(0xCAFEF00D), md.SB.DeviceUUID)
			require.Equal(t, uint32(131072), md.SB.LaPeerMaxBioSize)
			bm, err := md.ReadBitmap()
			require.NoError(t, err)
			require.Equal(t, uint64(8+7*64+2), bm.Count())
			require.True(t, bm.Test(0) && bm.Test(7) && !bm.Test(8) && bm.Test(64) && bm.Test(8*64) && bm.Test(9*64-1))
			out, _, _ = drbdmeta(t, path, metadata.Internal(), "dump-md")
			require.Equal(t, dumpBody(out), ourDump(t, md))
			out, _, _ = drbdmeta(t, path, metadata.Internal(), "show-gi")
			require.Equal(t, out, md.ShowGI())
		})
	}
}

// External metadata: indexed slots of 128 MiB and flexible, both ways.
func TestExternalMetadataWithDrbdmeta(t *testing.T) {
	t.Parallel()
	for kind, path := range targets(t, 3*128<<20) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			dev := openDev(t, path)
			// gdrbd writes index 1, drbdmeta reads it.
			md, err := metadata.Create(dev, metadata.Indexed(1), metadata.CreateOptions{})
			require.NoError(t, err)
			md.SB.LaSizeSect = 10 << 21 // 10 GiB of data described by a 128 MiB slot
			bm := bitmap.ForSectors(md.SB.LaSizeSect)
			bm.SetRange(1000, 90000)
			require.NoError(t, md.WriteSuperblock())
			require.NoError(t, md.WriteDirtyBitmap(bm))
			out, errOut, code := drbdmeta(t, path, metadata.Indexed(1), "dump-md")
			require.Equal(t, 0, code, errOut)
			require.Contains(t, out, "# md_offset 134217728\n")
			require.Equal(t, dumpBody(out), ourDump(t, md))
			// drbdmeta writes index 2, gdrbd reads it; index 1 is untouched.
			_, errOut, code = drbdmeta(t, path, metadata.Indexed(2), "create-md")
			require.Equal(t, 0, code, errOut)
			md2, err := metadata.Open(dev, metadata.Indexed(2))
			require.NoError(t, err)
			require.Equal(t, int64(2*128<<20), md2.Layout.MDOffset)
			out, _, _ = drbdmeta(t, path, metadata.Indexed(2), "dump-md")
			require.Equal(t, dumpBody(out), ourDump(t, md2))
			md1, err := metadata.Open(dev, metadata.Indexed(1))
			require.NoError(t, err)
			got, err := md1.ReadBitmap()
			require.NoError(t, err)
			require.True(t, bm.Equal(got))
			_, err = metadata.Open(dev, metadata.Indexed(0))
			require.ErrorIs(t, err, metadata.ErrNoMetadata)
		})
	}
	for kind, path := range targets(t, 64<<20) {
		t.Run("flex-"+kind, func(t *testing.T) {
			t.Parallel()
			_, errOut, code := drbdmeta(t, path, metadata.FlexExternal(), "create-md")
			require.Equal(t, 0, code, errOut)
			dev := openDev(t, path)
			md, err := metadata.Open(dev, metadata.FlexExternal())
			require.NoError(t, err)
			out, _, _ := drbdmeta(t, path, metadata.FlexExternal(), "dump-md")
			require.Equal(t, dumpBody(out), ourDump(t, md))
			require.NoError(t, md.Wipe())
			_, errOut, code = drbdmeta(t, path, metadata.FlexExternal(), "dump-md")
			require.NotEqual(t, 0, code)
			require.Contains(t, errOut, "No valid meta data found")
			md, err = metadata.Create(dev, metadata.FlexExternal(), metadata.CreateOptions{ALStripes: 2, ALStripeSize4k: 8})
			require.NoError(t, err)
			out, errOut, code = drbdmeta(t, path, metadata.FlexExternal(), "dump-md")
			require.Equal(t, 0, code, errOut)
			require.Contains(t, out, "al-stripes 2;")
			require.Equal(t, dumpBody(out), ourDump(t, md))
		})
	}
}
