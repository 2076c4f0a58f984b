package protocol

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// Buffered packets go out in order and byte-identical to WriteMessage's.
func TestWriterBufferFlush(t *testing.T) {
	t.Parallel()
	d := Dialect{Version: 101, Features: FeatureTrim}
	msgs := []Message{
		{Packet: &Data{Cmd: CmdData, Sector: 8, BlockID: 1, SeqNum: 1, Flags: DPSendWriteAck, Payload: bytes.Repeat([]byte{7}, 4096)}},
		{Packet: &BlockAck{Cmd: CmdWriteAck, Sector: 8, BlockID: 1, BlockSize: 4096, SeqNum: 1}},
		{Packet: &Barrier{Barrier: 3}},
		{Volume: 0, Packet: &Empty{Cmd: CmdPing}},
	}
	var one, batched bytes.Buffer
	w1 := NewWriter(&one)
	require.NoError(t, w1.SetDialect(d))
	w2 := NewWriter(&batched)
	require.NoError(t, w2.SetDialect(d))
	for _, m := range msgs {
		require.NoError(t, w1.WriteMessage(m))
		require.NoError(t, w2.Buffer(m))
	}
	require.Equal(t, len(msgs), w2.Buffered())
	require.Zero(t, batched.Len(), "nothing written before Flush")
	require.NoError(t, w2.Flush())
	require.Equal(t, one.Bytes(), batched.Bytes())
	require.Zero(t, w2.Buffered())
	require.NoError(t, w2.Flush(), "an empty flush is a no-op")

	// An encoding error buffers nothing.
	require.Error(t, w2.Buffer(Message{Packet: &Data{Cmd: CmdData, Payload: make([]byte, MaxBIOSize+512)}}))
	require.Zero(t, w2.Buffered())
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestWriterFlushError(t *testing.T) {
	t.Parallel()
	w := NewWriter(failWriter{})
	require.NoError(t, w.SetDialect(Dialect{Version: 101}))
	require.NoError(t, w.Buffer(Message{Packet: &Empty{Cmd: CmdPing}}))
	require.ErrorContains(t, w.Flush(), "broken pipe")
	require.Zero(t, w.Buffered())
}

// FlushSome with a socket that takes a few bytes at a time (a full
// non-blocking socket): the stream is the same as one Flush, packets
// buffered between partial writes included, and a Flush finishes what a
// FlushSome left.
func TestWriterFlushSomePartial(t *testing.T) {
	t.Parallel()
	d := Dialect{Version: 101, Features: FeatureTrim}
	msg := func(i int) Message {
		switch i % 3 {
		case 0:
			return Message{Packet: &Data{Cmd: CmdData, Sector: uint64(i) * 8, BlockID: uint64(i), SeqNum: uint32(i), Payload: bytes.Repeat([]byte{byte(i)}, 512*(1+i%9))}}
		case 1:
			return Message{Packet: &BlockAck{Cmd: CmdWriteAck, Sector: uint64(i), BlockID: uint64(i), BlockSize: 4096, SeqNum: uint32(i)}}
		}
		return Message{Packet: &Barrier{Barrier: uint32(i)}}
	}
	var want bytes.Buffer
	w1 := NewWriter(&want)
	require.NoError(t, w1.SetDialect(d))
	for i := range 60 {
		require.NoError(t, w1.WriteMessage(msg(i)))
	}

	for _, step := range []int{1, 7, 100, 3000} {
		for _, maxIov := range []int{0, 1, 3} {
			var got bytes.Buffer
			w := NewWriter(&got)
			require.NoError(t, w.SetDialect(d))
			take := func(iov [][]byte) (int, error) {
				if maxIov > 0 {
					require.LessOrEqual(t, len(iov), maxIov)
				}
				n := 0
				for _, b := range iov {
					k := min(len(b), step-n)
					got.Write(b[:k])
					n += k
					if n == step {
						break
					}
				}
				return n, nil
			}
			i := 0
			for round := 0; i < 60; round++ {
				for range 1 + round%4 {
					if i < 60 {
						require.NoError(t, w.Buffer(msg(i)))
						i++
					}
				}
				_, err := w.FlushSome(maxIov, take)
				require.NoError(t, err)
			}
			// Drain: a few more partial writes, then Flush for the rest.
			for range 3 {
				all, err := w.FlushSome(maxIov, take)
				require.NoError(t, err)
				if all {
					break
				}
			}
			require.NoError(t, w.Flush())
			require.Zero(t, w.Buffered())
			require.Equal(t, want.Bytes(), got.Bytes(), "step %d maxIov %d", step, maxIov)
		}
	}

	// A refused write (EAGAIN: 0 bytes) keeps everything; an error empties.
	w := NewWriter(failWriter{})
	require.NoError(t, w.SetDialect(d))
	require.NoError(t, w.Buffer(msg(1)))
	all, err := w.FlushSome(0, func([][]byte) (int, error) { return 0, nil })
	require.NoError(t, err)
	require.False(t, all)
	require.Equal(t, 1, w.Buffered())
	_, err = w.FlushSome(0, func([][]byte) (int, error) { return 0, errors.New("connection reset") })
	require.ErrorContains(t, err, "connection reset")
	require.Zero(t, w.Buffered())
}
