package bitmap

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Every level boundary of the VLI table, up to the largest encodable
// value, round-trips through encode and decode with the documented code
// length.
func TestVLITable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		v    uint64
		bits uint
	}{
		{1, 2}, {2, 2}, {3, 3}, {4, 3}, {5, 5}, {8, 5}, {9, 7}, {16, 7},
		{17, 10}, {48, 10}, {49, 14}, {304, 14}, {305, 21}, {8496, 21},
		{8497, 29}, {2105648, 29}, {2105649, 42}, {0x400202130, 42},
		{0x400202131, 64}, {0x100000400202130, 64},
	}
	for _, c := range cases {
		code, n, ok := vliEncode(c.v)
		require.True(t, ok, "%#x", c.v)
		require.Equal(t, c.bits, n, "%#x", c.v)
		// Garbage above the code word must not matter.
		var garbage uint64
		if n < 64 {
			garbage = ^uint64(0) << n
		}
		got, used := vliDecode(code | garbage)
		require.Equal(t, c.v, got, "%#x", c.v)
		require.Equal(t, n, used)
	}
	_, _, ok := vliEncode(0)
	require.False(t, ok)
	_, _, ok = vliEncode(0x100000400202131)
	require.False(t, ok)
}

func TestBitStream(t *testing.T) {
	t.Parallel()
	buf := make([]byte, 3)
	w := bitWriter{buf: buf}
	require.True(t, w.put(0x5, 3))
	require.True(t, w.put(0x3fff, 14))
	require.False(t, w.put(0xff, 8), "only 7 bits left")
	require.True(t, w.put(0x7f, 7))
	require.Equal(t, []byte{0xfd, 0xff, 0xff}, buf)
	r := bitReader{buf: buf, limit: 24 - 2}
	v, n := r.get(3)
	require.Equal(t, uint64(5), v)
	require.Equal(t, uint(3), n)
	v, n = r.get(64)
	require.Equal(t, uint(19), n, "stops at the pad bits")
	require.Equal(t, uint64(1<<19-1), v)
}
