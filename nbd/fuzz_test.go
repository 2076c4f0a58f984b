package nbd

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/fuzz seed corpora")

// streamConn is a net.Conn whose client side is a fixed byte stream; what
// the server writes is counted and dropped.
type streamConn struct {
	r       *bytes.Reader
	written atomic.Int64
}

func (c *streamConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *streamConn) Write(p []byte) (int, error)      { c.written.Add(int64(len(p))); return len(p), nil }
func (c *streamConn) Close() error                     { return nil }
func (c *streamConn) LocalAddr() net.Addr              { return nil }
func (c *streamConn) RemoteAddr() net.Addr             { return nil }
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

// clientStream builds client byte streams for seeds.
type clientStream struct{ bytes.Buffer }

func (s *clientStream) flags(f uint32) *clientStream {
	s.Write(binary.BigEndian.AppendUint32(nil, f))
	return s
}

func (s *clientStream) opt(opt uint32, data []byte) *clientStream {
	b := binary.BigEndian.AppendUint64(nil, magicIHaveOpt)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	s.Write(append(b, data...))
	return s
}

func (s *clientStream) req(typ, flags uint16, off uint64, length uint32, payload []byte) *clientStream {
	b := make([]byte, requestSize)
	request{flags: flags, typ: typ, cookie: uint64(s.Len()), offset: off, length: length}.encode(b)
	s.Write(append(b, payload...))
	return s
}

func newStream() *clientStream { return &clientStream{} }

// handshakeSeeds are whole client sessions: every option, both ways into
// transmission, and requests of every type including broken ones.
func handshakeSeeds() map[string][]byte {
	page := bytes.Repeat([]byte{0xa5}, 4096)
	return map[string][]byte{
		"go-simple": newStream().flags(3).opt(optGo, infoGoData("", infoBlockSize)).
			req(cmdWrite, cmdFlagFUA, 0, 4096, page).req(cmdRead, 0, 0, 4096, nil).
			req(cmdFlush, 0, 0, 0, nil).req(cmdDisc, 0, 0, 0, nil).Bytes(),
		"go-structured": newStream().flags(1).opt(optStructuredReply, nil).opt(optInfo, infoGoData("disk", infoName, infoDescription)).
			opt(optGo, infoGoData("disk", infoBlockSize)).req(cmdRead, cmdFlagDF, 512, 512, nil).
			req(cmdWriteZeroes, cmdFlagNoHole|cmdFlagFastZero, 0, 8192, nil).req(cmdTrim, 0, 0, 4096, nil).
			req(cmdCache, 0, 0, 4096, nil).req(cmdBlockStatus, 0, 0, 4096, nil).Bytes(),
		"export-name": newStream().flags(1).opt(optList, nil).opt(optExportName, []byte("disk")).
			req(cmdRead, 0, 1<<20-512, 1024, nil).req(cmdWrite, 0, 1<<20, 512, page[:512]).Bytes(),
		"options-odd": newStream().flags(1).opt(99, []byte("x")).opt(optStartTLS, nil).opt(optList, []byte{1}).
			opt(optInfo, []byte{0, 0, 0, 200, 0, 0}).opt(optGo, infoGoData("nope")).opt(optAbort, nil).Bytes(),
		"oversized": newStream().flags(3).opt(optGo, infoGoData("")).
			req(cmdWrite, 0, 0, MaxPayload+512, nil).req(cmdRead, 0, 0, MaxPayload+512, nil).Bytes(),
		"bad-magic": append(newStream().flags(3).opt(optGo, infoGoData("")).Bytes(), bytes.Repeat([]byte{0xff}, 40)...),
		"truncated": newStream().flags(3).opt(optGo, infoGoData("")).req(cmdWrite, 0, 0, 4096, page[:100]).Bytes(),
	}
}

func requestSeeds() map[string][]byte {
	seed := func(typ, flags uint16, off uint64, length uint32) []byte {
		b := make([]byte, requestSize)
		request{flags: flags, typ: typ, cookie: 42, offset: off, length: length}.encode(b)
		return b
	}
	return map[string][]byte{
		"read":         seed(cmdRead, 0, 4096, 4096),
		"write-fua":    seed(cmdWrite, cmdFlagFUA, 0, 512),
		"zeroes":       seed(cmdWriteZeroes, cmdFlagNoHole|cmdFlagFastZero, 1<<20, 1<<20),
		"past-end":     seed(cmdRead, 0, 1<<62, 4096),
		"overflow":     seed(cmdTrim, 0, 1<<64-512, 1024),
		"unknown":      seed(200, 0xffff, 1, 1),
		"flush":        seed(cmdFlush, 0, 0, 0),
		"bad-magic":    bytes.Repeat([]byte{0x25}, requestSize),
		"short-header": seed(cmdRead, 0, 0, 0)[:20],
	}
}

// TestFuzzSeedCorpora keeps testdata/fuzz in step with the seed builders
// (go test -run TestFuzzSeedCorpora -update-seeds rewrites them).
func TestFuzzSeedCorpora(t *testing.T) {
	t.Parallel()
	for target, seeds := range map[string]map[string][]byte{"FuzzHandshake": handshakeSeeds(), "FuzzRequest": requestSeeds()} {
		dir := filepath.Join("testdata", "fuzz", target)
		for name, b := range seeds {
			var want []byte
			switch target {
			case "FuzzHandshake":
				want = []byte("go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n")
			case "FuzzRequest":
				want = []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%s)\nuint64(%d)\nbool(%t)\nbool(%t)\nbool(%t)\n",
					strconv.Quote(string(b)), uint64(1<<20), len(name)%2 == 0, len(name)%3 == 0, name == "write-fua"))
			}
			path := filepath.Join(dir, "seed-"+name)
			if *updateSeeds {
				require.NoError(t, os.MkdirAll(dir, 0o755))
				require.NoError(t, os.WriteFile(path, want, 0o644))
				continue
			}
			got, err := os.ReadFile(path)
			require.NoError(t, err, "run: go test ./nbd -run TestFuzzSeedCorpora -update-seeds")
			require.Equal(t, string(want), string(got), path)
		}
	}
}

// FuzzHandshake drives a whole server connection (handshake, then
// transmission) with an arbitrary client byte stream. The server must
// neither panic, hang, nor allocate from unchecked lengths.
func FuzzHandshake(f *testing.F) {
	for _, b := range handshakeSeeds() {
		f.Add(b)
	}
	dev := newMemDev(1 << 20)
	s, err := NewServer(Config{Backend: DeviceBackend{Dev: fullMemDev{dev}}, Name: "disk", Description: "fuzz",
		HandshakeTimeout: time.Second})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, stream []byte) {
		c := &streamConn{r: bytes.NewReader(stream)}
		_ = s.ServeConn(c)
		require.Zero(t, s.Stats().InFlight)
		require.GreaterOrEqual(t, c.written.Load(), int64(18), "the greeting always goes out")
	})
}

// FuzzRequest checks the request decoder and validator: a decoded header
// re-encodes to the same bytes, and a request that passes validation is
// in range, aligned, within the payload limit and allowed on the export.
func FuzzRequest(f *testing.F) {
	for name, b := range requestSeeds() {
		f.Add(b, uint64(1<<20), len(name)%2 == 0, len(name)%3 == 0, name == "write-fua")
	}
	f.Fuzz(func(t *testing.T, b []byte, size uint64, min4k, structured, readOnly bool) {
		req, err := decodeRequest(b)
		if err != nil {
			require.True(t, len(b) < requestSize || binary.BigEndian.Uint32(b) != magicRequest)
			return
		}
		out := make([]byte, requestSize)
		req.encode(out)
		require.Equal(t, b[:requestSize], out)
		minBlock := uint32(512)
		if min4k {
			minBlock = 4096
		}
		size &^= uint64(minBlock - 1)
		errno, msg := checkRequest(req, size, minBlock, structured, readOnly)
		if errno != 0 {
			require.NotEmpty(t, msg)
			require.Contains(t, []uint32{errnoInval, errnoNoSpc, errnoOverflow, errnoPerm}, errno)
			return
		}
		switch req.typ {
		case cmdFlush:
			return
		case cmdRead, cmdWrite, cmdTrim, cmdWriteZeroes, cmdCache:
		default:
			t.Fatalf("unknown command %d accepted", req.typ)
		}
		require.LessOrEqual(t, req.offset, size)
		require.LessOrEqual(t, uint64(req.length), size-req.offset)
		require.Zero(t, req.offset%uint64(minBlock))
		require.Zero(t, req.length%minBlock)
		if req.typ == cmdRead || req.typ == cmdWrite {
			require.LessOrEqual(t, req.length, uint32(MaxPayload))
		}
		if readOnly {
			require.Contains(t, []uint16{cmdRead, cmdCache}, req.typ)
		}
	})
}

var _ io.Reader = (*streamConn)(nil)
