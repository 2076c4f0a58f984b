package nbd

import (
	"bytes"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestDirectReplies: a reply is written by the goroutine that ended its
// request when the writer is idle; one the socket takes only in part
// leaves its rest to the writer, which sends it before any other reply, so
// every reply arrives whole and in one piece.
func TestDirectReplies(t *testing.T) {
	t.Parallel()
	for _, structured := range []bool{false, true} {
		const size = 16 << 20
		dev := newMemDev(size)
		for i := range dev.b {
			dev.b[i] = byte(i*7 + i>>12)
		}
		s, path := startServer(t, Config{Backend: DeviceBackend{Dev: dev}})
		c := dial(t, path)
		c.goExport(structured)

		// One request at a time: the writer has nothing queued.
		payload := bytes.Repeat([]byte{0xa5}, 4096)
		for i := range 8 {
			c.request(cmdWrite, 0, uint64(i), uint64(i)*4096, 4096, payload)
			r := c.readReply(nil)
			require.Equal(t, uint64(i), r.cookie)
			require.Zero(t, r.errno)
		}
		// (A reply can still find the previous one's writer holding the
		// socket for an instant: most, not all, go out directly.)
		require.Positive(t, s.Stats().DirectReplies)

		// A 1 MiB READ reply while the client reads nothing: far more than
		// the socket buffer holds, so the direct write goes out in part.
		// The replies after it wait for its rest.
		const l = 1 << 20
		before := s.Stats()
		c.request(cmdRead, 0, 100, 0, l, nil)
		// Its reply started: part of it is in the client's socket.
		require.Eventually(t, func() bool { return s.Stats().InFlight == 0 && unread(c.nc) > 0 }, 10*time.Second, time.Millisecond)
		// Counted only now: the last WRITE's reply is counted after its
		// write returned, which the client may see first; writing this
		// reply took the socket's lock, which that count was made under.
		direct := s.Stats().DirectReplies
		c.request(cmdWrite, 0, 200, 4096, 4096, payload)
		c.request(cmdRead, 0, 101, l, l, nil)
		// Both ended while the first reply's rest was still owed.
		require.Eventually(t, func() bool {
			st := s.Stats()
			return st.Reads == before.Reads+2 && st.Writes == before.Writes+1 && st.InFlight == 0
		}, 10*time.Second, time.Millisecond)
		seen := map[uint64]bool{}
		for range 3 {
			r := c.readReply(func(cookie uint64) int {
				if cookie == 200 {
					return 0
				}
				return l
			})
			require.Zero(t, r.errno)
			require.False(t, seen[r.cookie], "cookie %d answered twice", r.cookie)
			seen[r.cookie] = true
			if r.cookie != 200 {
				off := int(r.cookie-100) * l
				require.True(t, bytes.Equal(dev.at(off, l), r.data), "READ %d: data differs", r.cookie)
			}
		}
		require.Equal(t, direct, s.Stats().DirectReplies, "a reply the socket took in part counted as direct")
	}
}

// unread is how many bytes wait in nc's receive queue (-1: unknown). It
// runs in require.Eventually's goroutine, so it reports no failure itself.
func unread(nc net.Conn) int {
	rc, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		return -1
	}
	n := -1
	_ = rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil {
			n = v
		}
	})
	return n
}
