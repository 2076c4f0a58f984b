package e2e

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// blockOf is what write number seq puts in its 4 KiB block: seq, eight
// bytes big-endian, repeated. A block names the write that last hit it.
func blockOf(seq uint64) []byte {
	b := make([]byte, crashBlock)
	for i := 0; i < crashBlock; i += 8 {
		binary.BigEndian.PutUint64(b[i:], seq)
	}
	return b
}

const (
	crashBlock  = 4096
	crashBlocks = 8192 // 32 MiB
	crashDepth  = 8
	crashAcked  = 3000 // acknowledged writes before the kill
)

// writeLog is what the writer learnt: the last acknowledged write of each
// block, and the writes still unanswered when the connection died.
type writeLog struct {
	mu       sync.Mutex
	acked    map[uint64]uint64 // block -> seq
	inflight map[uint64]uint64 // seq -> block
	count    int
	enough   chan struct{} // closed at crashAcked acknowledgements
}

// writeUntilDead writes block seq%crashBlocks = blockOf(seq), crashDepth
// requests in flight, until the connection dies.
func writeUntilDead(cl *nbdClient, log *writeLog) {
	sem := make(chan struct{}, crashDepth)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			cookie, errno, err := cl.recv()
			if err != nil {
				return
			}
			log.mu.Lock()
			blk, ok := log.inflight[cookie]
			if ok && errno == 0 {
				delete(log.inflight, cookie)
				if cookie > log.acked[blk] {
					log.acked[blk] = cookie
				}
				log.count++
				if log.count == crashAcked {
					close(log.enough)
				}
			}
			log.mu.Unlock()
			<-sem
		}
	}()
	for seq := uint64(1); ; seq++ {
		select {
		case sem <- struct{}{}:
		case <-readerDone:
			return
		}
		blk := seq % crashBlocks
		log.mu.Lock()
		log.inflight[seq] = blk
		log.mu.Unlock()
		if err := cl.send(nbdCmdWrite, 0, seq, blk*crashBlock, crashBlock, blockOf(seq)); err != nil {
			<-readerDone
			return
		}
	}
}

// TestKillPrimaryDuringWrites: the Primary's daemon is killed with -9
// while a client writes through it (protocol C, 8 writes in flight).
// After promoting the Secondary, every block holds the last write the
// client saw acknowledged, or a later one that was still in flight;
// never anything older.
func TestKillPrimaryDuringWrites(t *testing.T) {
	t.Parallel()
	needTools(t)
	a, b := loopbackPair(t, 64<<20)
	syncPair(t, a, b)

	cl, err := dialNBD(filepath.Join(a.runDir, "r0.nbd"), "r0")
	require.NoError(t, err)
	defer cl.c.Close()
	log := &writeLog{acked: map[uint64]uint64{}, inflight: map[uint64]uint64{}, enough: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		writeUntilDead(cl, log)
	}()
	select {
	case <-log.enough:
	case <-done:
		t.Fatalf("the writer stopped after %d acknowledged writes", log.count)
	case <-time.After(2 * time.Minute):
		t.Fatal("no progress from the writer")
	}
	a.kill9()
	<-done
	t.Logf("%d writes acknowledged, %d in flight at the kill", log.count, len(log.inflight))

	waitFor(t, b, "b to notice the Primary is gone", 60*time.Second, func() bool {
		return b.ok("cstate", "r0") != "Connected\n"
	})
	b.ok("primary", "r0")
	rd, err := dialNBD(filepath.Join(b.runDir, "r0.nbd"), "r0")
	require.NoError(t, err)
	defer rd.c.Close()
	inflightOf := map[uint64][]uint64{}
	for seq, blk := range log.inflight {
		inflightOf[blk] = append(inflightOf[blk], seq)
	}
	const chunk = 1 << 20
	zero := make([]byte, crashBlock)
	for off := uint64(0); off < crashBlocks*crashBlock; off += chunk {
		data, err := rd.read(off, chunk)
		require.NoError(t, err)
		for i := 0; i < chunk; i += crashBlock {
			blk := (off + uint64(i)) / crashBlock
			got := data[i : i+crashBlock]
			want := []uint64{}
			if seq, ok := log.acked[blk]; ok {
				want = append(want, seq)
			}
			want = append(want, inflightOf[blk]...)
			match := false
			if _, ok := log.acked[blk]; !ok && bytes.Equal(got, zero) {
				match = true // never acknowledged: still the synced zeroes
			}
			for _, seq := range want {
				if bytes.Equal(got, blockOf(seq)) {
					match = true
				}
			}
			require.True(t, match, "block %d on the Secondary holds write %d, want one of %v (last acknowledged first)",
				blk, binary.BigEndian.Uint64(got), want)
		}
	}

	require.NoError(t, rd.Close())

	// The old Primary comes back as Secondary and resyncs.
	a.ok("up", "r0")
	a.ok("wait-sync", "r0", "--timeout", "60")
	require.Equal(t, "Secondary/Primary\n", a.ok("role", "r0"))
	require.Equal(t, "UpToDate/UpToDate\n", a.ok("dstate", "r0"))
	a.ok("down", "r0")
	b.ok("down", "r0")
}
