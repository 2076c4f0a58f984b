package protocol

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// commonPackets are what a busy connection sends all the time.
func commonPackets() []Message {
	return []Message{
		{Packet: &Data{Cmd: CmdData, Sector: 8, BlockID: 1, SeqNum: 2, Flags: DPSendWriteAck, Payload: make([]byte, 4096)}},
		{Packet: &Data{Cmd: CmdRSDataReply, Sector: 8, BlockID: IDSyncer, Payload: make([]byte, MaxBIOSize)}},
		{Packet: &BlockAck{Cmd: CmdWriteAck, Sector: 8, BlockID: 1, BlockSize: 4096, SeqNum: 3}},
		{Packet: &BarrierAck{Barrier: 1, SetSize: 1}},
		{Packet: &Barrier{Barrier: 2}},
		{Packet: &Empty{Cmd: CmdPing}},
		{Packet: &Empty{Cmd: CmdUnplugRemote}},
		{Packet: &BlockReq{Cmd: CmdRSDataRequest, Sector: 16, BlockID: IDSyncer, BlockSize: 4096}},
		{Packet: &BlockReq{Cmd: CmdOVReply, Sector: 16, BlockID: IDSyncer, BlockSize: 4096, Digest: make([]byte, 16)}},
		{Packet: &BlockDesc{Cmd: CmdOutOfSync, Sector: 16, BlockSize: 4096}},
		{Packet: &State{State: 0x10}},
		{Packet: &Bitmap{Words: make([]uint64, 510)}},
	}
}

// TestWriterNoAllocs proves that writing the common packets allocates
// nothing. Not parallel: testing.AllocsPerRun refuses to run beside
// parallel tests (it counts every goroutine's allocations).
func TestWriterNoAllocs(t *testing.T) {
	d := Dialect{Version: 101, Features: FeaturesAll}
	w := NewWriter(io.Discard)
	require.NoError(t, w.SetDialect(d))
	for _, m := range commonPackets() {
		allocs := testing.AllocsPerRun(100, func() {
			if err := w.WriteMessage(m); err != nil {
				panic(err)
			}
		})
		require.Zero(t, allocs, "%v", m.Packet.Command())
	}
}

func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	done := make(chan *net.TCPConn, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			done <- nil
			return
		}
		done <- c
	}()
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	require.NoError(t, err)
	server = <-done
	require.NotNil(t, server)
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestWriterReaderTCP sends every sample packet over a loopback TCP
// connection (one writev each) and reads them back.
func TestWriterReaderTCP(t *testing.T) {
	t.Parallel()
	client, server := tcpPair(t)
	d := Dialect{Version: 101, Features: FeaturesAll, IntegrityDigestSize: 20}
	msgs := samplePackets(d)
	errc := make(chan error, 1)
	go func() {
		w := NewWriter(client)
		if err := w.SetDialect(d); err != nil {
			errc <- err
			return
		}
		for _, m := range msgs {
			if err := w.WriteMessage(m); err != nil {
				errc <- err
				return
			}
		}
		errc <- client.CloseWrite()
	}()
	r := NewReader(server, nil)
	require.NoError(t, r.SetDialect(d))
	for _, m := range msgs {
		got, err := r.ReadMessage()
		require.NoError(t, err)
		require.Equal(t, m, got)
	}
	_, err := r.ReadMessage()
	require.ErrorIs(t, err, io.EOF)
	require.NoError(t, <-errc)
}

// TestWriterTCPNoAllocs: the writev path itself allocates nothing once the
// socket is set up. Not parallel, as TestWriterNoAllocs.
func TestWriterTCPNoAllocs(t *testing.T) {
	client, server := tcpPair(t)
	drained := make(chan struct{})
	go func() {
		// A fixed buffer, so the reading side allocates nothing per read.
		buf := make([]byte, 1<<20)
		for {
			if _, err := server.Read(buf); err != nil {
				close(drained)
				return
			}
		}
	}()
	w := NewWriter(client)
	require.NoError(t, w.SetDialect(Dialect{Version: 101}))
	data := Message{Packet: &Data{Cmd: CmdData, Payload: make([]byte, 4096)}}
	ack := Message{Packet: &BlockAck{Cmd: CmdWriteAck, BlockSize: 4096}}
	require.NoError(t, w.WriteMessage(data)) // the socket's iovec cache
	allocs := testing.AllocsPerRun(200, func() {
		if err := w.WriteMessage(data); err != nil {
			panic(err)
		}
		if err := w.WriteMessage(ack); err != nil {
			panic(err)
		}
	})
	require.Zero(t, allocs)
	require.NoError(t, client.CloseWrite())
	<-drained
}

// countingWriter records each Write call, to see the payload arrive
// uncopied as its own buffer.
type countingWriter struct {
	writes [][]byte
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes = append(c.writes, p)
	return len(p), nil
}

func TestWriterDoesNotCopyPayload(t *testing.T) {
	t.Parallel()
	var cw countingWriter
	w := NewWriter(&cw)
	require.NoError(t, w.SetDialect(Dialect{Version: 101}))
	payload := pattern(4096, 9)
	require.NoError(t, w.WriteMessage(Message{Packet: &Data{Cmd: CmdData, Payload: payload}}))
	require.Len(t, cw.writes, 2)
	require.Len(t, cw.writes[0], 16+24)
	require.Same(t, &payload[0], &cw.writes[1][0], "the payload is handed over, not copied")
	require.NoError(t, w.WriteMessage(Message{Packet: &Empty{Cmd: CmdPing}}))
	require.Len(t, cw.writes, 3, "a packet without data is one write")
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errBoom }

func TestWriterErrors(t *testing.T) {
	t.Parallel()
	w := NewWriter(failingWriter{})
	require.ErrorIs(t, w.WriteMessage(Message{Packet: &Initial{Cmd: CmdInitialData}}), errBoom)
	var buf bytes.Buffer
	w = NewWriter(&buf)
	require.ErrorIs(t, w.WriteMessage(Message{Packet: &Empty{Cmd: CmdPing}}), ErrDialect, "nothing but the handshake before agreement")
	require.Zero(t, buf.Len(), "nothing written for a rejected packet")
}

func BenchmarkWriteData4K(b *testing.B) {
	w := NewWriter(io.Discard)
	if err := w.SetDialect(Dialect{Version: 101, Features: FeaturesAll}); err != nil {
		b.Fatal(err)
	}
	m := Message{Packet: &Data{Cmd: CmdData, Sector: 8, BlockID: 1, SeqNum: 2, Flags: DPSendWriteAck, Payload: make([]byte, 4096)}}
	b.SetBytes(4096)
	b.ReportAllocs()
	for b.Loop() {
		if err := w.WriteMessage(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriteAck(b *testing.B) {
	w := NewWriter(io.Discard)
	if err := w.SetDialect(Dialect{Version: 101, Features: FeaturesAll}); err != nil {
		b.Fatal(err)
	}
	m := Message{Packet: &BlockAck{Cmd: CmdWriteAck, Sector: 8, BlockID: 1, BlockSize: 4096, SeqNum: 3}}
	b.ReportAllocs()
	for b.Loop() {
		if err := w.WriteMessage(m); err != nil {
			b.Fatal(err)
		}
	}
}

// loopReader replays the same bytes forever, for read benchmarks.
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.b[l.off:])
		n += c
		l.off = (l.off + c) % len(l.b)
	}
	return n, nil
}

func benchRead(b *testing.B, m Message, bytesPer int64) {
	d := Dialect{Version: 101, Features: FeaturesAll}
	raw, err := AppendMessage(nil, d, m)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4096)
	// A pool of one: the driver's allocator hands out recycled buffers.
	r := NewReader(&loopReader{b: bytes.Repeat(raw, 64)}, func(n int) []byte { return buf[:n] })
	if err := r.SetDialect(d); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(bytesPer)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.ReadMessage(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadData4K(b *testing.B) {
	benchRead(b, Message{Packet: &Data{Cmd: CmdData, Sector: 8, BlockID: 1, SeqNum: 2, Flags: DPSendWriteAck, Payload: make([]byte, 4096)}}, 4096)
}

func BenchmarkReadAck(b *testing.B) {
	benchRead(b, Message{Packet: &BlockAck{Cmd: CmdWriteAck, Sector: 8, BlockID: 1, BlockSize: 4096, SeqNum: 3}}, 0)
}
