package bench

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
)

// ErrNBD is wrapped by the NBD client's failures.
var ErrNBD = errors.New("bench: nbd client")

// NBD wire constants (NetworkBlockDevice/nbd doc/proto.md).
const (
	nbdMagic         = 0x4e42444d41474943 // "NBDMAGIC"
	nbdOptMagic      = 0x49484156454f5054 // "IHAVEOPT"
	nbdOptReplyMagic = 0x0003e889045565a9
	nbdReqMagic      = 0x25609513
	nbdSimpleReply   = 0x67446698

	nbdFlagFixedNewstyle = 1
	nbdFlagNoZeroes      = 2
	nbdOptGo             = 7
	nbdRepAck            = 1
	nbdRepInfo           = 3
	nbdInfoExport        = 0

	nbdCmdWrite = 1
	nbdCmdDisc  = 2
	nbdCmdFlush = 3
)

// NBDClient is a minimal NBD client for in-process benchmarks: fixed
// newstyle, NBD_OPT_GO, simple replies, WRITE and FLUSH only. Requests are
// pipelined: any number of goroutines may call Write and Flush at once,
// each waits for its own reply. Safe for concurrent use.
//
// Request and reply on the wire:
//
//	request: u32 0x25609513 | u16 flags | u16 type | u64 cookie | u64 offset | u32 length | payload
//	reply:   u32 0x67446698 | u32 error | u64 cookie
type NBDClient struct {
	conn net.Conn
	size int64

	wmu sync.Mutex // one request on the wire at a time

	mu      sync.Mutex // guards pending, next, err
	pending map[uint64]chan uint32
	next    uint64
	err     error
	done    chan struct{} // closed when the reader exits
}

// DialNBD connects to the unix socket path and opens export.
func DialNBD(path, export string) (*NBDClient, error) {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNBD, err)
	}
	c := &NBDClient{conn: conn, pending: map[uint64]chan uint32{}, done: make(chan struct{})}
	if err := c.handshake(export); err != nil {
		conn.Close()
		return nil, err
	}
	go c.readReplies()
	return c, nil
}

// Size is the export's size in bytes.
func (c *NBDClient) Size() int64 { return c.size }

func (c *NBDClient) handshake(export string) error {
	r := bufio.NewReader(c.conn)
	var hello struct {
		Magic, Opt uint64
		Flags      uint16
	}
	if err := binary.Read(r, binary.BigEndian, &hello); err != nil {
		return fmt.Errorf("%w: greeting: %w", ErrNBD, err)
	}
	if hello.Magic != nbdMagic || hello.Opt != nbdOptMagic || hello.Flags&nbdFlagFixedNewstyle == 0 {
		return fmt.Errorf("%w: not a fixed-newstyle server (%#x %#x %#x)", ErrNBD, hello.Magic, hello.Opt, hello.Flags)
	}
	var b []byte
	b = binary.BigEndian.AppendUint32(b, uint32(hello.Flags&(nbdFlagFixedNewstyle|nbdFlagNoZeroes)))
	b = binary.BigEndian.AppendUint64(b, nbdOptMagic)
	b = binary.BigEndian.AppendUint32(b, nbdOptGo)
	b = binary.BigEndian.AppendUint32(b, uint32(4+len(export)+2))
	b = binary.BigEndian.AppendUint32(b, uint32(len(export)))
	b = append(b, export...)
	b = binary.BigEndian.AppendUint16(b, 0) // no information requests
	if _, err := c.conn.Write(b); err != nil {
		return fmt.Errorf("%w: NBD_OPT_GO: %w", ErrNBD, err)
	}
	for {
		var rep struct {
			Magic     uint64
			Opt, Type uint32
			Len       uint32
		}
		if err := binary.Read(r, binary.BigEndian, &rep); err != nil {
			return fmt.Errorf("%w: option reply: %w", ErrNBD, err)
		}
		if rep.Magic != nbdOptReplyMagic || rep.Len > 1<<20 {
			return fmt.Errorf("%w: bad option reply %+v", ErrNBD, rep)
		}
		data := make([]byte, rep.Len)
		if _, err := io.ReadFull(r, data); err != nil {
			return fmt.Errorf("%w: option reply: %w", ErrNBD, err)
		}
		switch {
		case rep.Type == nbdRepAck:
			if c.size == 0 {
				return fmt.Errorf("%w: no export size before ACK", ErrNBD)
			}
			if r.Buffered() > 0 {
				return fmt.Errorf("%w: data after the handshake", ErrNBD)
			}
			return nil
		case rep.Type == nbdRepInfo && len(data) >= 12 && binary.BigEndian.Uint16(data) == nbdInfoExport:
			c.size = int64(binary.BigEndian.Uint64(data[2:]))
		case rep.Type&(1<<31) != 0:
			return fmt.Errorf("%w: export %q refused: error %#x %s", ErrNBD, export, rep.Type, data)
		}
	}
}

// readReplies hands each simple reply to the request waiting for it.
func (c *NBDClient) readReplies() {
	defer close(c.done)
	r := bufio.NewReaderSize(c.conn, 64<<10)
	var hdr [16]byte
	for {
		_, err := io.ReadFull(r, hdr[:])
		if err == nil && binary.BigEndian.Uint32(hdr[:]) != nbdSimpleReply {
			err = fmt.Errorf("%w: reply magic %#x", ErrNBD, binary.BigEndian.Uint32(hdr[:]))
		}
		c.mu.Lock()
		if err != nil {
			if c.err == nil {
				c.err = fmt.Errorf("%w: %w", ErrNBD, err)
			}
			for k, ch := range c.pending {
				ch <- uint32(syscall.EIO)
				delete(c.pending, k)
			}
			c.mu.Unlock()
			return
		}
		cookie := binary.BigEndian.Uint64(hdr[8:])
		ch := c.pending[cookie]
		delete(c.pending, cookie)
		c.mu.Unlock()
		if ch != nil {
			ch <- binary.BigEndian.Uint32(hdr[4:])
		}
	}
}

// do sends one request and waits for its reply.
func (c *NBDClient) do(typ uint16, off int64, length uint32, payload []byte) error {
	ch := make(chan uint32, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	c.next++
	cookie := c.next
	c.pending[cookie] = ch
	c.mu.Unlock()
	var hdr [28]byte
	binary.BigEndian.PutUint32(hdr[0:], nbdReqMagic)
	binary.BigEndian.PutUint16(hdr[6:], typ)
	binary.BigEndian.PutUint64(hdr[8:], cookie)
	binary.BigEndian.PutUint64(hdr[16:], uint64(off))
	binary.BigEndian.PutUint32(hdr[24:], length)
	bufs := net.Buffers{hdr[:]}
	if len(payload) > 0 {
		bufs = append(bufs, payload)
	}
	c.wmu.Lock()
	_, err := bufs.WriteTo(c.conn)
	c.wmu.Unlock()
	if err != nil {
		c.conn.Close()
		<-ch
		return fmt.Errorf("%w: %w", ErrNBD, err)
	}
	if e := <-ch; e != 0 {
		return fmt.Errorf("%w: request %d at %d: %w", ErrNBD, typ, off, syscall.Errno(e))
	}
	return nil
}

// Write writes p at off and waits for the server's reply.
func (c *NBDClient) Write(p []byte, off int64) error {
	return c.do(nbdCmdWrite, off, uint32(len(p)), p)
}

// Flush sends NBD_CMD_FLUSH and waits for its reply.
func (c *NBDClient) Flush() error { return c.do(nbdCmdFlush, 0, 0, nil) }

// Close sends NBD_CMD_DISC and closes the connection.
func (c *NBDClient) Close() error {
	var hdr [28]byte
	binary.BigEndian.PutUint32(hdr[0:], nbdReqMagic)
	binary.BigEndian.PutUint16(hdr[6:], nbdCmdDisc)
	c.wmu.Lock()
	_, _ = c.conn.Write(hdr[:])
	c.wmu.Unlock()
	err := c.conn.Close()
	<-c.done
	return err
}
