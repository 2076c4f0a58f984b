package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const testSize = 1 << 20

func memServer(t *testing.T, mut ...func(*Config)) (*Server, string, *memDev) {
	dev := newMemDev(testSize)
	cfg := Config{Backend: DeviceBackend{Dev: fullMemDev{dev}}, Name: "disk", Description: "test disk"}
	for _, m := range mut {
		m(&cfg)
	}
	s, path := startServer(t, cfg)
	return s, path, dev
}

func TestHandshakeInfoThenGo(t *testing.T) {
	t.Parallel()
	_, path, _ := memServer(t, func(c *Config) { c.MinBlockSize = 4096 })
	c := dial(t, path)
	c.greet(cflagFixedNewstyle | cflagNoZeroes)
	for _, opt := range []uint32{optInfo, optGo} {
		c.sendOpt(opt, infoGoData("disk", infoBlockSize, infoName, infoDescription, 999))
		got := map[uint16][]byte{}
		for {
			r := c.readOptReply()
			require.Equal(t, opt, r.opt)
			if r.typ == repAck {
				break
			}
			require.Equal(t, uint32(repInfo), r.typ)
			got[binary.BigEndian.Uint16(r.data)] = r.data[2:]
		}
		exp := got[infoExport]
		require.Len(t, exp, 10)
		require.Equal(t, uint64(testSize), binary.BigEndian.Uint64(exp[0:8]))
		flags := binary.BigEndian.Uint16(exp[8:10])
		for _, f := range []uint16{tflagHasFlags, tflagSendFlush, tflagSendFUA, tflagSendTrim,
			tflagSendWriteZeroes, tflagSendFastZero, tflagCanMultiConn, tflagSendCache} {
			require.NotZero(t, flags&f, "flag %#x", f)
		}
		require.Zero(t, flags&tflagReadOnly)
		require.Zero(t, flags&tflagSendDF, "DF only with structured replies")
		bs := got[infoBlockSize]
		require.Len(t, bs, 12)
		require.Equal(t, uint32(4096), binary.BigEndian.Uint32(bs[0:4]))
		require.Equal(t, uint32(4096), binary.BigEndian.Uint32(bs[4:8]))
		require.Equal(t, uint32(MaxPayload), binary.BigEndian.Uint32(bs[8:12]))
		require.Equal(t, "disk", string(got[infoName]))
		require.Equal(t, "test disk", string(got[infoDescription]))
	}
	// In transmission now: a flush answers.
	c.request(cmdFlush, 0, 7, 0, 0, nil)
	r := c.readReply(nil)
	require.Equal(t, uint64(7), r.cookie)
	require.Zero(t, r.errno)
}

func TestHandshakeOptionErrors(t *testing.T) {
	t.Parallel()
	_, path, _ := memServer(t)
	c := dial(t, path)
	c.greet(cflagFixedNewstyle)
	cases := []struct {
		opt  uint32
		data []byte
		want uint32
	}{
		{99, []byte("whatever"), repErrUnsup}, // unknown: ERR_UNSUP and keep going
		{optStartTLS, nil, repErrUnsup},
		{optListMetaContext, infoGoData("disk"), repErrUnsup},
		{optSetMetaContext, infoGoData("disk"), repErrUnsup},
		{optList, []byte{1}, repErrInvalid},
		{optStructuredReply, []byte{1}, repErrInvalid},
		{optInfo, []byte{0, 0}, repErrInvalid},                  // too short
		{optInfo, []byte{0, 0, 0, 9, 0, 0}, repErrInvalid},      // name beyond data
		{optInfo, append(infoGoData("disk"), 0), repErrInvalid}, // count mismatch
		{optGo, infoGoData("nope"), repErrUnknown},
	}
	for _, tc := range cases {
		c.sendOpt(tc.opt, tc.data)
		r := c.readOptReply()
		require.Equal(t, tc.opt, r.opt)
		require.Equal(t, tc.want, r.typ, "option %s", optName(tc.opt))
	}
	c.sendOpt(optList, nil)
	r := c.readOptReply()
	require.Equal(t, uint32(repServer), r.typ)
	require.Equal(t, uint32(4), binary.BigEndian.Uint32(r.data[0:4]))
	require.Equal(t, "disk", string(r.data[4:8]))
	require.Equal(t, "test disk", string(r.data[8:]))
	require.Equal(t, uint32(repAck), c.readOptReply().typ)

	c.sendOpt(optStructuredReply, nil)
	require.Equal(t, uint32(repAck), c.readOptReply().typ)
	c.sendOpt(optStructuredReply, nil)
	require.Equal(t, uint32(repErrInvalid), c.readOptReply().typ, "second STRUCTURED_REPLY")

	c.sendOpt(optAbort, nil)
	r = c.readOptReply()
	require.Equal(t, uint32(repAck), r.typ)
	c.expectClosed()
}

func TestHandshakeExportName(t *testing.T) {
	t.Parallel()
	_, path, _ := memServer(t)
	for _, noZeroes := range []bool{false, true} {
		c := dial(t, path)
		cf := uint32(cflagFixedNewstyle)
		if noZeroes {
			cf |= cflagNoZeroes
		}
		c.greet(cf)
		c.sendOpt(optExportName, []byte("disk"))
		b := c.readN(10)
		require.Equal(t, uint64(testSize), binary.BigEndian.Uint64(b[0:8]))
		require.NotZero(t, binary.BigEndian.Uint16(b[8:10])&tflagHasFlags)
		if !noZeroes {
			require.Equal(t, make([]byte, 124), c.readN(124))
		}
		c.request(cmdRead, 0, 1, 0, 512, nil)
		r := c.readReply(func(uint64) int { return 512 })
		require.Zero(t, r.errno)
		require.Len(t, r.data, 512)
	}
	// Unknown export: EXPORT_NAME cannot carry an error, so the server
	// hangs up.
	c := dial(t, path)
	c.greet(cflagFixedNewstyle)
	c.sendOpt(optExportName, []byte("nope"))
	c.expectClosed()
}

func TestHandshakeHardDisconnects(t *testing.T) {
	t.Parallel()
	_, path, _ := memServer(t)
	c := dial(t, path)
	c.greet(1 << 5) // unknown client flag
	c.expectClosed()

	c = dial(t, path)
	c.greet(cflagFixedNewstyle)
	c.write(bytes.Repeat([]byte{0xee}, 16)) // bad option magic
	c.expectClosed()

	c = dial(t, path)
	c.greet(cflagFixedNewstyle)
	b := binary.BigEndian.AppendUint64(nil, magicIHaveOpt)
	b = binary.BigEndian.AppendUint32(b, optGo)
	b = binary.BigEndian.AppendUint32(b, maxOptionLen+1) // never allocated
	c.write(b)
	c.expectClosed()
}

func TestReadWriteFlushTrimZeroes(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct{ structured, async bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		structured := mode.structured
		t.Run(fmt.Sprintf("structured=%v/async=%v", structured, mode.async), func(t *testing.T) {
			t.Parallel()
			var ab *asyncBackend
			s, path, dev := memServer(t, func(c *Config) {
				if mode.async {
					ab = &asyncBackend{Backend: c.Backend}
					c.Backend = ab
				}
			})
			if ab != nil {
				defer func() { require.Equal(t, int64(2), ab.started.Load(), "READ and WRITE with data go through Start*") }()
			}
			c := dial(t, path)
			size, flags := c.goExport(structured)
			require.Equal(t, uint64(testSize), size)
			require.Equal(t, structured, flags&tflagSendDF != 0)

			data := bytes.Repeat([]byte("gdrbd-nbd!"), 820)[:8192]
			c.request(cmdWrite, cmdFlagFUA, 1, 4096, 8192, data)
			require.Equal(t, rep{cookie: 1}, c.readReply(nil))
			require.Equal(t, data, dev.at(4096, 8192))
			require.Equal(t, int64(1), dev.flushes.Load(), "FUA flushed")

			c.request(cmdRead, 0, 2, 4096, 8192, nil)
			r := c.readReply(func(uint64) int { return 8192 })
			require.Equal(t, uint64(2), r.cookie)
			require.Zero(t, r.errno)
			require.Equal(t, data, r.data)
			if structured {
				require.Equal(t, uint16(replyTypeOffsetData), r.typ)
				require.Equal(t, uint16(replyFlagDone), r.flags)
				require.Equal(t, uint64(4096), r.offset)
			}

			c.request(cmdWriteZeroes, cmdFlagNoHole, 3, 4096, 4096, nil)
			require.Zero(t, c.readReply(nil).errno)
			require.Equal(t, make([]byte, 4096), dev.at(4096, 4096))
			require.Equal(t, int64(1), dev.zeroes.Load(), "NO_HOLE must not discard")
			require.Zero(t, dev.discard.Load())

			c.request(cmdWriteZeroes, 0, 4, 8192, 4096, nil)
			require.Zero(t, c.readReply(nil).errno)
			require.Equal(t, int64(1), dev.discard.Load(), "without NO_HOLE a hole is fine")

			c.request(cmdTrim, 0, 5, 0, 65536, nil)
			require.Zero(t, c.readReply(nil).errno)
			c.request(cmdCache, 0, 6, 0, 65536, nil)
			require.Zero(t, c.readReply(nil).errno)
			c.request(cmdFlush, 0, 7, 0, 0, nil)
			require.Zero(t, c.readReply(nil).errno)

			// Zero-length read: no data, and a NONE chunk when structured.
			c.request(cmdRead, 0, 8, 0, 0, nil)
			r = c.readReply(nil)
			require.Zero(t, r.errno)
			require.Empty(t, r.data)
			if structured {
				require.Equal(t, uint16(replyTypeNone), r.typ)
			}

			st := s.Stats()
			require.Equal(t, int64(2), st.Reads)
			require.Equal(t, int64(1), st.Writes)
			require.Equal(t, int64(1), st.Flushes)
			require.Equal(t, int64(1), st.Trims)
			require.Equal(t, int64(2), st.Zeroes)
			require.Equal(t, int64(1), st.Caches)
			require.Equal(t, int64(1), st.FUA)
			require.Equal(t, int64(8192), st.BytesWritten)
			require.Equal(t, int64(8192), st.BytesRead)
			require.Equal(t, 1, st.Connections)
		})
	}
}

func TestRequestErrors(t *testing.T) {
	t.Parallel()
	for _, structured := range []bool{false, true} {
		t.Run(fmt.Sprint("structured=", structured), func(t *testing.T) {
			t.Parallel()
			_, path, dev := memServer(t, func(c *Config) { c.MinBlockSize = 4096 })
			c := dial(t, path)
			c.goExport(structured)
			oversizeRead := uint32(errnoInval)
			if structured {
				oversizeRead = errnoOverflow
			}
			cases := []struct {
				name   string
				typ    uint16
				flags  uint16
				off    uint64
				length uint32
				body   int // WRITE payload bytes actually sent
				want   uint32
			}{
				{"write past end", cmdWrite, 0, testSize - 4096, 8192, 8192, errnoNoSpc},
				{"write at end", cmdWrite, 0, testSize, 4096, 4096, errnoNoSpc},
				{"zeroes past end", cmdWriteZeroes, 0, testSize, 4096, 0, errnoNoSpc},
				{"read past end", cmdRead, 0, testSize - 4096, 8192, 0, errnoInval},
				{"read offset overflow", cmdRead, 0, 1<<64 - 4096, 4096, 0, errnoInval},
				{"trim past end", cmdTrim, 0, testSize, 4096, 0, errnoInval},
				{"cache past end", cmdCache, 0, testSize, 4096, 0, errnoInval},
				{"read oversized", cmdRead, 0, 0, MaxPayload + 4096, 0, oversizeRead},
				{"write oversized", cmdWrite, 0, 0, MaxPayload + 4096, MaxPayload + 4096, errnoInval},
				{"read misaligned offset", cmdRead, 0, 512, 4096, 0, errnoInval},
				{"write misaligned length", cmdWrite, 0, 0, 512, 512, errnoInval},
				{"trim misaligned", cmdTrim, 0, 100, 4096, 0, errnoInval},
				{"unknown command", 42, 0, 0, 4096, 0, errnoInval},
				{"block status never negotiated", cmdBlockStatus, 0, 0, 4096, 0, errnoInval},
				{"flag not valid for command", cmdWrite, cmdFlagNoHole, 0, 4096, 4096, errnoInval},
				{"unknown flag", cmdRead, 1 << 9, 0, 4096, 0, errnoInval},
			}
			for i, tc := range cases {
				cookie := uint64(100 + i)
				c.request(tc.typ, tc.flags, cookie, tc.off, tc.length, make([]byte, tc.body))
				r := c.readReply(nil)
				require.Equal(t, cookie, r.cookie, tc.name)
				require.Equal(t, tc.want, r.errno, tc.name)
				if structured {
					require.True(t, r.structured, tc.name)
					require.Equal(t, uint16(replyTypeError), r.typ, tc.name)
					require.Equal(t, uint16(replyFlagDone), r.flags)
					require.NotEmpty(t, r.msg)
				}
			}
			// The refused payloads were consumed: the stream is in sync.
			c.request(cmdWrite, 0, 1, 0, 4096, bytes.Repeat([]byte{7}, 4096))
			require.Zero(t, c.readReply(nil).errno)
			require.Equal(t, byte(7), dev.at(4095, 1)[0])
		})
	}
}

func TestBackendErrorMapping(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want uint32
	}{
		{errors.New("disk on fire"), errnoIO},
		{fmt.Errorf("secondary: %w", ErrReadOnly), errnoPerm},
		{ErrShutdown, errnoShutdown},
		{&os.PathError{Op: "pwrite", Path: "x", Err: syscall.ENOSPC}, errnoNoSpc},
		{syscall.EDQUOT, errnoNoSpc},
		{syscall.EROFS, errnoPerm},
		{syscall.EIO, errnoIO},
	}
	for i, tc := range append(cases, cases...) {
		async := i >= len(cases)
		_, path, _ := memServer(t, func(c *Config) {
			c.Backend = errBackend{Backend: c.Backend, err: tc.err}
			if async {
				c.Backend = &asyncBackend{Backend: c.Backend}
			}
		})
		c := dial(t, path)
		c.goExport(false)
		c.request(cmdWrite, 0, 1, 0, 512, make([]byte, 512))
		require.Equal(t, tc.want, c.readReply(nil).errno, "%v", tc.err)
		c.request(cmdRead, 0, 2, 0, 512, nil)
		r := c.readReply(nil)
		require.Equal(t, tc.want, r.errno, "%v", tc.err)
		require.Empty(t, r.data, "no payload after an error")
	}
}

func TestReadOnlyAndRefuse(t *testing.T) {
	t.Parallel()
	s, path, _ := memServer(t, func(c *Config) { c.ReadOnly = true })
	c := dial(t, path)
	_, flags := c.goExport(false)
	require.NotZero(t, flags&tflagReadOnly)
	c.request(cmdWrite, 0, 1, 0, 512, make([]byte, 512))
	require.Equal(t, uint32(errnoPerm), c.readReply(nil).errno)
	c.request(cmdTrim, 0, 2, 0, 512, nil)
	require.Equal(t, uint32(errnoPerm), c.readReply(nil).errno)
	c.request(cmdWriteZeroes, 0, 3, 0, 512, nil)
	require.Equal(t, uint32(errnoPerm), c.readReply(nil).errno)

	s.Refuse(ErrShutdown)
	require.NoError(t, s.Drain(context.Background()))
	c.request(cmdRead, 0, 4, 0, 512, nil)
	require.Equal(t, uint32(errnoShutdown), c.readReply(nil).errno)
	s.Refuse(nil)
	c.request(cmdRead, 0, 5, 0, 512, nil)
	r := c.readReply(func(uint64) int { return 512 })
	require.Zero(t, r.errno)
	require.Len(t, r.data, 512)
}

func TestFastZero(t *testing.T) {
	t.Parallel()
	// A device with neither discard nor write-zeroes cannot zero fast.
	dev := newMemDev(testSize)
	copy(dev.b, bytes.Repeat([]byte{9}, 8192))
	_, path := startServer(t, Config{Backend: DeviceBackend{Dev: dev}})
	c := dial(t, path)
	c.goExport(false)
	c.request(cmdWriteZeroes, cmdFlagFastZero, 1, 0, 4096, nil)
	require.Equal(t, uint32(errnoNotSup), c.readReply(nil).errno)
	require.Equal(t, byte(9), dev.at(0, 1)[0], "a refused fast zero changes nothing")
	c.request(cmdWriteZeroes, 0, 2, 0, 4096, nil)
	require.Zero(t, c.readReply(nil).errno)
	require.Equal(t, make([]byte, 4096), dev.at(0, 4096))

	// With discard it is fast, even when a hole is forbidden (write-zeroes).
	_, path, full := memServer(t)
	c = dial(t, path)
	c.goExport(false)
	c.request(cmdWriteZeroes, cmdFlagFastZero|cmdFlagNoHole|cmdFlagFUA, 3, 0, 4096, nil)
	require.Zero(t, c.readReply(nil).errno)
	require.Equal(t, int64(1), full.zeroes.Load())
	require.Equal(t, int64(1), full.flushes.Load())
}

func TestBadRequestMagicDisconnects(t *testing.T) {
	t.Parallel()
	_, path, _ := memServer(t)
	c := dial(t, path)
	c.goExport(false)
	c.write(bytes.Repeat([]byte{0x55}, requestSize))
	c.expectClosed()
}

// TestOutOfOrderReplies: a backend that completes requests in reverse
// order gets its replies out in that order; nothing waits for the first.
func TestOutOfOrderReplies(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct{ structured, async bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		structured := mode.structured
		gb := newGateBackend(DeviceBackend{Dev: newMemDev(testSize)})
		var b Backend = gb
		if mode.async {
			b = &asyncBackend{Backend: gb}
		}
		_, path := startServer(t, Config{Backend: b})
		c := dial(t, path)
		c.goExport(structured)
		const n = 16
		for i := range n {
			c.request(cmdRead, 0, uint64(i), uint64(i)*4096, 4096, nil)
		}
		for range n {
			<-gb.arrived // all n are at the backend at once
		}
		for i := n - 1; i >= 0; i-- {
			gb.release(int64(i) * 4096)
			r := c.readReply(func(uint64) int { return 4096 })
			require.Equal(t, uint64(i), r.cookie)
			require.Len(t, r.data, 4096)
		}
	}
}

// TestDiscFinishesInFlight: after NBD_CMD_DISC the server still completes
// and answers what is in flight, then closes.
func TestDiscFinishesInFlight(t *testing.T) {
	t.Parallel()
	dev := newMemDev(testSize)
	gb := newGateBackend(DeviceBackend{Dev: dev})
	s, path := startServer(t, Config{Backend: gb})
	c := dial(t, path)
	c.goExport(false)
	c.request(cmdWrite, 0, 1, 0, 4096, bytes.Repeat([]byte{1}, 4096))
	c.request(cmdWrite, 0, 2, 4096, 4096, bytes.Repeat([]byte{2}, 4096))
	<-gb.arrived
	<-gb.arrived
	c.request(cmdDisc, 0, 3, 0, 0, nil)
	gb.release(4096)
	gb.release(0)
	got := map[uint64]bool{}
	for range 2 {
		r := c.readReply(nil)
		require.Zero(t, r.errno)
		got[r.cookie] = true
	}
	require.Equal(t, map[uint64]bool{1: true, 2: true}, got)
	c.expectClosed()
	require.Equal(t, byte(1), dev.at(0, 1)[0])
	require.Equal(t, byte(2), dev.at(4096, 1)[0])
	require.Eventually(t, func() bool { return s.Connections() == 0 }, 5*time.Second, time.Millisecond)
}

// TestCloseIsGraceful: Close answers in-flight requests before closing.
func TestCloseIsGraceful(t *testing.T) {
	t.Parallel()
	gb := newGateBackend(DeviceBackend{Dev: newMemDev(testSize)})
	s, err := NewServer(Config{Backend: gb})
	require.NoError(t, err)
	l, err := ListenUnix(t.TempDir() + "/s")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	c := dial(t, l.Addr().String())
	c.goExport(false)
	c.request(cmdWrite, 0, 9, 0, 4096, make([]byte, 4096))
	<-gb.arrived
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	gb.release(0)
	r := c.readReply(nil)
	require.Equal(t, uint64(9), r.cookie)
	require.Zero(t, r.errno)
	c.expectClosed()
	require.NoError(t, <-closed)
	require.ErrorIs(t, <-served, ErrServerClosed)
	require.Zero(t, s.Connections())
}

// TestCloseWithClientNotReading: a client that stopped reading its
// replies (8 MiB of READ data behind a full socket) holds Close for
// StopTimeout, not for as long as it does not read (before, Close and the
// daemon's down waited for ever).
func TestCloseWithClientNotReading(t *testing.T) {
	t.Parallel()
	s, err := NewServer(Config{Backend: DeviceBackend{Dev: newMemDev(testSize)}, StopTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	l, err := ListenUnix(t.TempDir() + "/s")
	require.NoError(t, err)
	go s.Serve(l)
	c := dial(t, l.Addr().String())
	c.goExport(false)
	for i := range 8 {
		c.request(cmdRead, 0, uint64(i), 0, 1<<20, nil)
	}
	require.Eventually(t, func() bool { return s.Stats().Reads == 8 }, 5*time.Second, time.Millisecond)
	closed := make(chan error, 1)
	start := time.Now()
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
		t.Logf("Close returned after %v", time.Since(start))
	case <-time.After(10 * time.Second):
		c.nc.Close() // let the stuck Close end
		<-closed
		t.Fatal("Close still waits for a client that does not read its replies")
	}
	require.Zero(t, s.Connections())
}

func TestDrainWaitsForInFlight(t *testing.T) {
	t.Parallel()
	gb := newGateBackend(DeviceBackend{Dev: newMemDev(testSize)})
	s, path := startServer(t, Config{Backend: gb})
	c := dial(t, path)
	c.goExport(false)
	c.request(cmdWrite, 0, 1, 0, 4096, make([]byte, 4096))
	<-gb.arrived
	s.Refuse(ErrReadOnly)
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	require.ErrorIs(t, s.Drain(ctx), context.DeadlineExceeded)
	c.request(cmdWrite, 0, 2, 4096, 4096, make([]byte, 4096))
	r := c.readReply(nil)
	require.Equal(t, uint64(2), r.cookie)
	require.Equal(t, uint32(errnoPerm), r.errno, "refused while demoting")
	gb.release(0)
	require.NoError(t, s.Drain(context.Background()))
	require.Zero(t, c.readReply(nil).errno)
}

func TestMultiConnFlushAndConnections(t *testing.T) {
	t.Parallel()
	s, path, dev := memServer(t)
	a, b := dial(t, path), dial(t, path)
	a.goExport(false)
	b.goExport(true)
	require.Equal(t, 2, s.Connections())
	a.request(cmdWrite, 0, 1, 0, 4096, bytes.Repeat([]byte{3}, 4096))
	require.Zero(t, a.readReply(nil).errno)
	flushesBefore := dev.flushes.Load()
	b.request(cmdFlush, 0, 2, 0, 0, nil)
	require.Zero(t, b.readReply(nil).errno)
	require.Equal(t, flushesBefore+1, dev.flushes.Load(), "a flush on b reaches the backend, which flushes a's write")
	a.request(cmdDisc, 0, 3, 0, 0, nil)
	a.expectClosed()
	require.Eventually(t, func() bool { return s.Connections() == 1 }, 5*time.Second, time.Millisecond)
}

func TestListenUnixMode(t *testing.T) {
	t.Parallel()
	path := t.TempDir() + "/x.sock"
	require.NoError(t, os.WriteFile(path+".file", nil, 0o644))
	_, err := ListenUnix(path + ".file")
	require.Error(t, err, "refuses to replace a non-socket")
	l, err := ListenUnix(path)
	require.NoError(t, err)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	require.NotZero(t, st.Mode()&os.ModeSocket)
	require.NoError(t, l.Close())
	_, err = os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist)
	// A stale socket is replaced.
	l, err = ListenUnix(path)
	require.NoError(t, err)
	l2, err := ListenUnix(path)
	require.NoError(t, err)
	l2.Close()
	l.Close()
}

func TestServeKernelConnNoHandshake(t *testing.T) {
	t.Parallel()
	dev := newMemDev(testSize)
	s, err := NewServer(Config{Backend: DeviceBackend{Dev: fullMemDev{dev}}})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	srv, cli := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.ServeKernelConn(srv) }()
	c := &client{t: t, nc: cli, br: newBufReader(cli)}
	c.request(cmdWrite, cmdFlagFUA, 1, 0, 4096, bytes.Repeat([]byte{5}, 4096))
	require.Equal(t, rep{cookie: 1}, c.readReply(nil))
	c.request(cmdRead, 0, 2, 0, 4096, nil)
	r := c.readReply(func(uint64) int { return 4096 })
	require.False(t, r.structured)
	require.Equal(t, bytes.Repeat([]byte{5}, 4096), r.data)
	c.request(cmdDisc, 0, 3, 0, 0, nil)
	require.NoError(t, <-done)
	_, err = io.ReadAll(cli)
	require.NoError(t, err)
	flags := s.KernelFlags()
	for _, f := range []uint64{tflagHasFlags, tflagSendFlush, tflagSendFUA, tflagSendTrim, tflagCanMultiConn} {
		require.NotZero(t, flags&f)
	}
}

func TestNewServerRejectsBadConfig(t *testing.T) {
	t.Parallel()
	_, err := NewServer(Config{})
	require.Error(t, err)
	_, err = NewServer(Config{Backend: DeviceBackend{Dev: newMemDev(4096)}, MinBlockSize: 1024})
	require.Error(t, err)
	s, err := NewServer(Config{Backend: DeviceBackend{Dev: newMemDev(10000)}, MinBlockSize: 4096})
	require.NoError(t, err)
	require.Equal(t, int64(8192), s.Size(), "size rounded down to the minimum block")
}

// TestCloseDuringHandshake: a client idling in option haggling does not
// hold Close up.
func TestCloseDuringHandshake(t *testing.T) {
	t.Parallel()
	s, err := NewServer(Config{Backend: DeviceBackend{Dev: newMemDev(testSize)}, HandshakeTimeout: time.Hour})
	require.NoError(t, err)
	path := t.TempDir() + "/s"
	l, err := ListenUnix(path)
	require.NoError(t, err)
	go s.Serve(l)
	c := dial(t, path)
	c.greet(cflagFixedNewstyle)
	require.Eventually(t, func() bool { return s.Connections() == 1 }, 5*time.Second, time.Millisecond)
	require.NoError(t, s.Close())
	c.expectClosed()
}
