package metadata_test

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/metadata"
)

func validSB(t *testing.T) []byte {
	t.Helper()
	l, err := metadata.ComputeLayout(metadata.Internal(), 600<<20, 1, 8)
	require.NoError(t, err)
	sb := metadata.NewSuperblock(l, 0)
	b, err := sb.MarshalBinary()
	require.NoError(t, err)
	return b
}

func TestSuperblockRoundTrip(t *testing.T) {
	t.Parallel()
	b := validSB(t)
	sb, err := metadata.DecodeSuperblock(b)
	require.NoError(t, err)
	require.Equal(t, metadata.UUIDJustCreated, sb.UUIDs.Current)
	require.Equal(t, metadata.FlagALClean, sb.Flags)
	require.True(t, sb.Clean())
	require.Equal(t, uint32(0x8374026b), uint32(sb.Magic))
	again, err := sb.MarshalBinary()
	require.NoError(t, err)
	require.Equal(t, b, again)
}

func TestSuperblockErrors(t *testing.T) {
	t.Parallel()
	set32 := func(off int, v uint32) []byte {
		b := validSB(t)
		binary.BigEndian.PutUint32(b[off:], v)
		return b
	}
	_, err := metadata.DecodeSuperblock(set32(60, 0x8374026d))
	require.ErrorIs(t, err, metadata.ErrV09)
	require.ErrorContains(t, err, "DRBD 9")
	_, err = metadata.DecodeSuperblock(set32(60, 0))
	require.ErrorIs(t, err, metadata.ErrNoMetadata)
	require.ErrorContains(t, err, "magic number not found")
	_, err = metadata.DecodeSuperblock(set32(60, 0x8374026a))
	require.ErrorContains(t, err, "0.7")
	_, err = metadata.DecodeSuperblock(set32(80, 512))
	var ie *metadata.InvalidError
	require.ErrorAs(t, err, &ie)
	require.Equal(t, "bm_bytes_per_bit", ie.Field)
	require.ErrorIs(t, err, metadata.ErrNoMetadata)
	require.ErrorContains(t, err, "bm_bytes_per_bit is 512, expected 4096")
	_, err = metadata.DecodeSuperblock(set32(68, 0xffffffe0))
	require.ErrorContains(t, err, "al_offset")
	_, err = metadata.DecodeSuperblock(validSB(t)[:100])
	require.ErrorIs(t, err, metadata.ErrNoMetadata)
	// Striping 0 x 0 on disk means the classic 1 x 8.
	b := validSB(t)
	binary.BigEndian.PutUint32(b[88:], 0)
	binary.BigEndian.PutUint32(b[92:], 0)
	sb, err := metadata.DecodeSuperblock(b)
	require.NoError(t, err)
	require.Equal(t, uint32(1), sb.ALStripes)
	require.Equal(t, uint32(8), sb.ALStripeSize4k)
}

func TestFlagsString(t *testing.T) {
	t.Parallel()
	require.Equal(t, "consistent|primary-ind|was-up-to-date", metadata.Flags(0x13).String())
	require.Equal(t, "none", metadata.Flags(0).String())
	require.Equal(t, "al-disabled|0x200", metadata.Flags(0x300).String())
	require.Equal(t, "v08-unclean", metadata.MagicV08Unclean.String())
}

func TestUUIDRotation(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	g := metadata.GenerationUUIDs{Current: 0x1A2B3C4D5E6F7000}
	g.NewCurrent(r, true)
	require.Equal(t, uint64(0x1A2B3C4D5E6F7000), g.Bitmap, "bitmap := current")
	require.True(t, g.WasPrimary(), "bit 0 says Primary")
	cur := g.Current
	g.SetCurrent(cur, false)
	require.False(t, g.WasPrimary())
	require.Equal(t, cur&^1, g.Current)

	// Clearing the bitmap UUID pushes it into the history.
	g.History = [2]uint64{0x111, 0x222}
	g.SetBitmap(0)
	require.Equal(t, uint64(0), g.Bitmap)
	require.Equal(t, [2]uint64{0x1A2B3C4D5E6F7000, 0x111}, g.History)
	g.SetBitmap(0) // nothing to clear: no history shift
	require.Equal(t, [2]uint64{0x1A2B3C4D5E6F7000, 0x111}, g.History)
	g.SetBitmap(0x55)
	require.Equal(t, uint64(0x54), g.Bitmap, "bit 0 never stored in the bitmap UUID")

	// Sync source: bitmap + 1<<48, old one to history.
	g.Bitmap = 0x1000
	u := g.NewSyncUUID(r)
	require.Equal(t, uint64(0x1000+1<<48), u)
	require.Equal(t, u, g.Bitmap)
	require.Equal(t, uint64(0x1000), g.History[0])
	g.Bitmap = metadata.UUIDJustCreated
	u = g.NewSyncUUID(r)
	require.NotEqual(t, metadata.UUIDJustCreated+1<<48, u, "fresh: a random sync UUID")

	// new-current-uuid on a StandAlone node.
	g = metadata.GenerationUUIDs{Current: 0xAAAA0, Bitmap: 0xBBBB0, History: [2]uint64{0xCCCC0, 0xDDDD0}}
	g.NewCurrentUUIDCommand(r)
	require.Equal(t, uint64(0xAAAA0), g.Bitmap)
	require.Equal(t, [2]uint64{0xBBBB0, 0xCCCC0}, g.History)
	require.False(t, g.WasPrimary())
	require.Equal(t, "0000000000000004:0000000000000000:0000000000000000:0000000000000000",
		metadata.GenerationUUIDs{Current: 4}.String())
}
