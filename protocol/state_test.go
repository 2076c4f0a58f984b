package protocol

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStateWord(t *testing.T) {
	t.Parallel()
	// Words from the golden trace.
	require.Equal(t, StateFields{Role: 2, Conn: 8, Disk: 4, PDsk: 6}, UnpackState(0x0000c882))
	require.Equal(t, StateFields{Role: 2, Peer: 1, Conn: 14, Disk: 4, PDsk: 8}, UnpackState(0x000108e6), "Secondary/Primary WFBitMapT Inconsistent/UpToDate")
	// Each field at its place.
	for _, tc := range []struct {
		f StateFields
		w uint32
	}{
		{StateFields{Role: 3}, 0x3},
		{StateFields{Peer: 3}, 0xc},
		{StateFields{Conn: 31}, 0x1f0},
		{StateFields{Disk: 15}, 0x1e00},
		{StateFields{PDsk: 15}, 0x1e000},
		{StateFields{Susp: true}, 1 << 17},
		{StateFields{AftrISP: true}, 1 << 18},
		{StateFields{PeerISP: true}, 1 << 19},
		{StateFields{UserISP: true}, 1 << 20},
		{StateFields{SuspNod: true}, 1 << 21},
		{StateFields{SuspFen: true}, 1 << 22},
	} {
		require.Equal(t, tc.w, tc.f.Pack(), "%+v", tc.f)
		require.Equal(t, tc.f, UnpackState(tc.w))
	}
	// Every word without the unused bits survives unpack and pack.
	for w := uint32(0); w < 1<<23; w += 4099 {
		require.Equal(t, w, UnpackState(w).Pack())
	}
	require.Equal(t, uint32(0x7fffff), UnpackState(0xffffffff).Pack(), "the unused top bits are dropped")
	require.Equal(t, StateFields{Conn: 10}, (&State{State: 0xa0}).Fields())
}

func TestStatePackPanicsOnOverflow(t *testing.T) {
	t.Parallel()
	require.PanicsWithValue(t, "protocol: state field conn = 32 does not fit 5 bits", func() { StateFields{Conn: 32}.Pack() })
	require.Panics(t, func() { StateFields{Role: 4}.Pack() })
	require.Panics(t, func() { StateFields{Disk: 16}.Pack() })
}
