package e2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// nbdClient is a minimal fixed-newstyle NBD client (simple replies only)
// for the crash test, which must know exactly which writes the server
// acknowledged: no external client reports that per request.
type nbdClient struct {
	c    net.Conn
	Size uint64

	wmu sync.Mutex // one request on the wire at a time
}

const (
	nbdReqMagic   = 0x25609513
	nbdReplyMagic = 0x67446698
	nbdOptMagic   = 0x49484156454f5054 // "IHAVEOPT"
	nbdOptReply   = 0x0003e889045565a9
	nbdOptGo      = 7
	nbdRepAck     = 1
	nbdRepInfo    = 3
	nbdCmdRead    = 0
	nbdCmdWrite   = 1
	nbdCmdDisc    = 2
	nbdCmdFlush   = 3
	nbdFlagFUA    = 1
)

func dialNBD(socket, export string) (*nbdClient, error) {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return nil, err
	}
	cl := &nbdClient{c: c}
	if err := cl.handshake(export); err != nil {
		c.Close()
		return nil, fmt.Errorf("nbd handshake: %w", err)
	}
	return cl, nil
}

func (cl *nbdClient) handshake(export string) error {
	var hello [18]byte
	if _, err := io.ReadFull(cl.c, hello[:]); err != nil {
		return err
	}
	if string(hello[:8]) != "NBDMAGIC" || binary.BigEndian.Uint64(hello[8:16]) != nbdOptMagic {
		return errors.New("not a fixed newstyle server")
	}
	// Client flags: FIXED_NEWSTYLE | NO_ZEROES.
	if err := binary.Write(cl.c, binary.BigEndian, uint32(3)); err != nil {
		return err
	}
	var opt bytes.Buffer
	_ = binary.Write(&opt, binary.BigEndian, uint64(nbdOptMagic))
	_ = binary.Write(&opt, binary.BigEndian, uint32(nbdOptGo))
	_ = binary.Write(&opt, binary.BigEndian, uint32(4+len(export)+2))
	_ = binary.Write(&opt, binary.BigEndian, uint32(len(export)))
	opt.WriteString(export)
	_ = binary.Write(&opt, binary.BigEndian, uint16(0))
	if _, err := cl.c.Write(opt.Bytes()); err != nil {
		return err
	}
	for {
		var h [20]byte
		if _, err := io.ReadFull(cl.c, h[:]); err != nil {
			return err
		}
		if binary.BigEndian.Uint64(h[:8]) != nbdOptReply {
			return errors.New("bad option reply magic")
		}
		typ := binary.BigEndian.Uint32(h[12:16])
		n := binary.BigEndian.Uint32(h[16:20])
		if n > 1<<16 {
			return errors.New("option reply too long")
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(cl.c, data); err != nil {
			return err
		}
		switch {
		case typ == nbdRepAck:
			return nil
		case typ == nbdRepInfo && n >= 12 && binary.BigEndian.Uint16(data[:2]) == 0:
			cl.Size = binary.BigEndian.Uint64(data[2:10])
		case typ&(1<<31) != 0:
			return fmt.Errorf("server refused NBD_OPT_GO: %d %s", typ&^(1<<31), data)
		}
	}
}

// send writes one request.
func (cl *nbdClient) send(cmd, flags uint16, cookie, off uint64, length uint32, payload []byte) error {
	var h [28]byte
	binary.BigEndian.PutUint32(h[0:], nbdReqMagic)
	binary.BigEndian.PutUint16(h[4:], flags)
	binary.BigEndian.PutUint16(h[6:], cmd)
	binary.BigEndian.PutUint64(h[8:], cookie)
	binary.BigEndian.PutUint64(h[16:], off)
	binary.BigEndian.PutUint32(h[24:], length)
	cl.wmu.Lock()
	defer cl.wmu.Unlock()
	if _, err := cl.c.Write(h[:]); err != nil {
		return err
	}
	if len(payload) > 0 {
		_, err := cl.c.Write(payload)
		return err
	}
	return nil
}

// recv reads one simple reply header: the cookie and the error code.
func (cl *nbdClient) recv() (cookie uint64, errno uint32, err error) {
	var h [16]byte
	if _, err := io.ReadFull(cl.c, h[:]); err != nil {
		return 0, 0, err
	}
	if binary.BigEndian.Uint32(h[:4]) != nbdReplyMagic {
		return 0, 0, errors.New("bad reply magic (structured reply?)")
	}
	return binary.BigEndian.Uint64(h[8:]), binary.BigEndian.Uint32(h[4:8]), nil
}

// read reads length bytes at off, synchronously.
func (cl *nbdClient) read(off uint64, length uint32) ([]byte, error) {
	if err := cl.send(nbdCmdRead, 0, 1, off, length, nil); err != nil {
		return nil, err
	}
	_, errno, err := cl.recv()
	if err != nil {
		return nil, err
	}
	if errno != 0 {
		return nil, fmt.Errorf("read at %d: NBD error %d", off, errno)
	}
	b := make([]byte, length)
	_, err = io.ReadFull(cl.c, b)
	return b, err
}

func (cl *nbdClient) Close() error {
	_ = cl.send(nbdCmdDisc, 0, 0, 0, 0, nil)
	return cl.c.Close()
}
