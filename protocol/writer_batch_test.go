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
