package protocol

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// readBufferSize is the Reader's read-ahead. Small packets (acks, requests)
// then cost no system call each; large data payloads bypass the buffer once
// it is empty (bufio reads straight into the caller's slice).
const readBufferSize = 64 << 10

// Reader reads packets from one DRBD socket. It checks every header against
// the command's size limits before it allocates or reads the payload, and
// it takes data buffers from the Allocator it was given.
//
// A Reader is not safe for concurrent use: one goroutine reads a socket.
// After an error it keeps returning that error; the stream is no longer
// framed and the connection must be dropped.
type Reader struct {
	br      *bufio.Reader
	d       Dialect
	o       owner
	err     error
	scratch [MaxHeaderSize + maxBody]byte
}

// NewReader returns a Reader on r in the pre-agreement dialect. alloc
// supplies the buffers for data payloads and digests (nil: make). r is
// read through a bufio.Reader of its own unless it is one already.
func NewReader(r io.Reader, alloc Allocator) *Reader {
	if alloc == nil {
		alloc = makeBytes
	}
	br, ok := r.(*bufio.Reader)
	if !ok || br.Size() < MaxHeaderSize {
		br = bufio.NewReaderSize(r, readBufferSize)
	}
	return &Reader{br: br, o: owner{alloc: alloc}}
}

// SetDialect switches the dialect for the packets read from now on: call it
// after P_CONNECTION_FEATURES (Agree) and when the integrity algorithm
// changes. An invalid dialect gives ErrDialect and changes nothing.
func (r *Reader) SetDialect(d Dialect) error {
	if err := d.validate(); err != nil {
		return err
	}
	r.d = d
	return nil
}

// Dialect returns the dialect in use.
func (r *Reader) Dialect() Dialect { return r.d }

// Buffered is the number of bytes already read from the stream and not
// yet decoded: more than zero means the next ReadMessage starts without
// waiting for the network.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// Complete reports whether ReadMessage would return without reading the
// stream: the next packet is entirely in the read-ahead, or its header is
// there and is one ReadMessage rejects, or the Reader already failed.
func (r *Reader) Complete() bool {
	if r.err != nil {
		return true
	}
	hs := r.d.HeaderSize()
	n := r.br.Buffered()
	if n < hs {
		return false
	}
	hb, _ := r.br.Peek(hs) // hs bytes are buffered: Peek neither reads nor fails
	h, err := ParseHeader(r.d, hb)
	if err != nil {
		return true
	}
	if !h.Cmd.Ignorable() || known(h.Cmd) {
		if _, err := check(r.d, h); err != nil {
			return true
		}
	}
	return int64(n-hs) >= int64(h.Length)
}

// ReadMessage reads the next packet. At a clean end of stream between
// packets it returns io.EOF; a stream that ends inside a packet gives
// io.ErrUnexpectedEOF. A packet DRBD 8.4 would reject gives a
// *ProtocolError: drop the connection and apply nothing from it. Unknown
// commands above CmdMayIgnore are read past and returned as *Unknown.
//
// Data payloads and digests come from the Allocator and belong to the
// caller; nothing in the returned message aliases the Reader.
func (r *Reader) ReadMessage() (Message, error) {
	if r.err != nil {
		return Message{}, r.err
	}
	m, err := r.read()
	if err != nil {
		r.err = err
	}
	return m, err
}

func (r *Reader) read() (Message, error) {
	hs := r.d.HeaderSize()
	hb := r.scratch[:hs]
	if n, err := io.ReadFull(r.br, hb); err != nil {
		if err == io.EOF && n == 0 {
			return Message{}, io.EOF
		}
		return Message{}, unexpected(err)
	}
	h, err := ParseHeader(r.d, hb)
	if err != nil {
		return Message{}, err
	}
	if h.Cmd.Ignorable() && !known(h.Cmd) {
		if _, err := r.br.Discard(int(h.Length)); err != nil {
			return Message{}, unexpected(err)
		}
		return Message{Volume: h.Volume, Packet: &Unknown{Cmd: h.Cmd, Length: h.Length}}, nil
	}
	s, err := check(r.d, h)
	if err != nil {
		return Message{}, err
	}
	// The limits are checked: the fixed part fits the scratch buffer and
	// the bulk is at most MaxBIOSize.
	nfixed := int(h.Length)
	if s.bulk {
		nfixed = s.min
	}
	fixed := r.scratch[MaxHeaderSize : MaxHeaderSize+nfixed]
	if _, err := io.ReadFull(r.br, fixed); err != nil {
		return Message{}, unexpected(err)
	}
	var bulk []byte
	if n := int(h.Length) - nfixed; n > 0 {
		if bulk, err = r.o.get(n); err != nil {
			return Message{}, err
		}
		if _, err := io.ReadFull(r.br, bulk); err != nil {
			return Message{}, unexpected(err)
		}
	}
	p, err := decodeBody(r.d, h, fixed, bulk, r.o)
	if err != nil {
		return Message{}, err
	}
	return Message{Volume: h.Volume, Packet: p}, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return fmt.Errorf("protocol: read: %w", err)
}
