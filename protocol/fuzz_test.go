package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var updateCorpus = flag.Bool("update-fuzz-corpus", false, "rewrite testdata/fuzz seed corpora from the golden streams")

// fuzzDialect picks the dialect for a fuzz input from its selector byte.
func fuzzDialect(sel uint8) Dialect { return testDialects[int(sel)%len(testDialects)] }

// ourOffer is what gdrbd offers in P_CONNECTION_FEATURES, for the fuzz
// targets' switch to the agreed dialect.
var ourOffer = ConnectionFeatures{ProtocolMin: ProtocolMin, FeatureFlags: FeaturesAll, ProtocolMax: ProtocolMax}

// fuzzStreamMax bounds the stream FuzzReader reads: bytes past it are
// ignored. It holds a handshake and a few packets after it, or any single
// packet but a large bitmap or data packet; fuzzPadMax reaches those.
//
// The bound is for Go's fuzzer, which minimizes every input that reaches
// new coverage, keeping a shorter candidate only if it reaches all of that
// coverage, and that takes up to len²/2 runs of the fuzz function. The
// seeds were whole streams (1.5-2.9 KB, and 45 KB in testdata), and what
// was new about an input was mostly how many packets of a kind it held:
// any shorter stream (a byte less breaks the framing of all that follows)
// has fewer, so no candidate kept the coverage, and minimizing one input
// ran for the whole 60s -fuzzminimizetime (~0.2 ms a run): CI saw 485
// execs and then 0/s. With the bound, an ignored tail is cut off in a few
// runs and what is left costs the minimizer a few seconds at worst.
const fuzzStreamMax = 256

// fuzzPadMax: a stream that ends inside a packet of at most this many
// bytes (header included) is read again with that packet completed by zero
// bytes, so a short input still reaches every size a command without data
// allows (a P_BITMAP of 4 KiB) and the paths that read a whole packet.
const fuzzPadMax = BitmapPacketMax

// FuzzReader feeds arbitrary bytes through the framed Reader: it must never
// panic, never ask the Allocator for more than MaxBIOSize, agree with the
// pure Decode, and every packet it accepts must re-encode to the bytes it
// came from. A P_CONNECTION_FEATURES read before agreement switches to the
// agreed dialect, so the seeds' handshakes lead into the rest. The low bits
// of sel pick the dialect (fuzzDialect), the top bit a 16-byte read-ahead
// buffer instead of the Reader's usual one (packets then straddle refills).
func FuzzReader(f *testing.F) {
	for i, d := range testDialects {
		for _, b := range fuzzStreams(f, nil, d, smallSamples(d)) {
			f.Add(b, uint8(i))
		}
	}
	// The handshake, then packets in the dialect it agrees on.
	var hs []byte
	var offer ConnectionFeatures
	for _, m := range smallSamples(Dialect{}) {
		hs = mustAppend(f, hs, Dialect{}, m)
		if cf, ok := m.Packet.(*ConnectionFeatures); ok {
			offer = *cf
		}
	}
	agreed, err := Agree(ourOffer, offer)
	require.NoError(f, err)
	for _, b := range fuzzStreams(f, hs, agreed, smallSamples(agreed)) {
		f.Add(b, uint8(0))
		f.Add(b, uint8(0x80))
	}
	f.Fuzz(func(t *testing.T, data []byte, sel uint8) {
		data = data[:min(len(data), fuzzStreamMax)]
		if full := readStream(t, data, sel); full != nil && readStream(t, full, sel) != nil {
			t.Fatalf("the completed stream %q ends inside a packet", full)
		}
	})
}

// fuzzStreams packs prefix and then msgs, encoded in d, into streams of at
// most fuzzStreamMax bytes, each starting with prefix.
func fuzzStreams(f *testing.F, prefix []byte, d Dialect, msgs []Message) [][]byte {
	var out [][]byte
	b := slices.Clone(prefix)
	for _, m := range msgs {
		p := mustAppend(f, nil, d, m)
		if len(b) > len(prefix) && len(b)+len(p) > fuzzStreamMax {
			out = append(out, b)
			b = slices.Clone(prefix)
		}
		b = append(b, p...)
	}
	return append(out, b)
}

func mustAppend(f *testing.F, b []byte, d Dialect, m Message) []byte {
	b, err := AppendMessage(b, d, m)
	require.NoError(f, err)
	return b
}

// The read-ahead buffers and the spare buffer FuzzReader's runs share (a
// fuzz worker runs one input at a time): making 64 KiB and more for every
// input cost more than reading it.
var (
	fuzzReadAhead      = bufio.NewReaderSize(nil, readBufferSize)
	fuzzSmallReadAhead = bufio.NewReaderSize(nil, MaxHeaderSize)
	fuzzSpare          = make([]byte, MaxBIOSize)
)

// countReads counts the Reads of r.
type countReads struct {
	r     io.Reader
	reads int
}

func (c *countReads) Read(p []byte) (int, error) {
	c.reads++
	return c.r.Read(p)
}

// readStream reads data to its end or first error with a Reader in the
// dialect sel picks, checking each packet against Decode and its
// re-encoding and the error against Decode's. If data ends inside a packet
// of at most fuzzPadMax bytes, it returns data with that packet completed
// by zero bytes, else nil. (Each require runs only once its check failed:
// see reencode.)
func readStream(t *testing.T, data []byte, sel uint8) []byte {
	d := fuzzDialect(sel)
	ahead := fuzzReadAhead
	if sel&0x80 != 0 {
		ahead = fuzzSmallReadAhead
	}
	src := &countReads{r: bytes.NewReader(data)}
	ahead.Reset(src)
	r := NewReader(ahead, func(n int) []byte {
		if n > MaxBIOSize || n <= 0 {
			panic(fmt.Sprintf("allocator asked for %d bytes", n))
		}
		if n > len(data) {
			// More than the stream holds: the read must fail, so
			// nobody sees these bytes, and making them was slow.
			return fuzzSpare[:n]
		}
		return make([]byte, n)
	})
	if err := r.SetDialect(d); err != nil {
		require.NoError(t, err)
	}
	off := 0
	for {
		complete, reads := r.Complete(), src.reads
		m, err := r.ReadMessage()
		if complete && src.reads != reads {
			t.Fatalf("Complete, yet ReadMessage read the stream (%v)", err)
		}
		pm, n, perr := Decode(d, data[off:])
		if err != nil {
			var pe *ProtocolError
			if errors.As(err, &pe) {
				if !errors.Is(perr, pe.Err) {
					require.ErrorIs(t, perr, pe.Err, "Decode rejects for the same reason as the Reader")
				}
				return nil
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("Reader: %v", err)
			}
			if off == len(data) {
				if !errors.Is(err, io.EOF) {
					require.ErrorIs(t, err, io.EOF)
				}
				return nil
			}
			if perr == nil {
				require.Error(t, perr)
			}
			h, err := ParseHeader(d, data[off:])
			if end := off + h.Format.Size() + int(h.Length); err == nil && end > len(data) && end-off <= fuzzPadMax {
				return append(slices.Clone(data), make([]byte, end-len(data))...)
			}
			return nil
		}
		if perr != nil {
			require.NoError(t, perr)
		}
		if !assert.ObjectsAreEqual(m, pm) {
			require.Equal(t, m, pm, "Reader and Decode agree")
		}
		if n <= 0 {
			require.Positive(t, n, "a packet consumes bytes")
		}
		reencode(t, d, m, data[off:off+n])
		off += n
		if f, ok := m.Packet.(*ConnectionFeatures); ok && !d.Agreed() {
			if agreed, err := Agree(ourOffer, *f); err == nil {
				d = agreed
				if err := r.SetDialect(d); err != nil {
					require.NoError(t, err)
				}
			}
		}
	}
}

// reencode requires that m encodes to raw, the bytes it was decoded from.
// A peer may use an h95 header where DRBD would use h80 (both decode), and
// an ignored packet's payload is not kept: those are compared as far as
// they are represented. (Each require runs only once its check failed, for
// the message: require and t.Helper walk the stack on every call, which
// was half the time FuzzReader took per input.)
func reencode(t *testing.T, d Dialect, m Message, raw []byte) {
	h, err := ParseHeader(d, raw)
	if err != nil {
		require.NoError(t, err)
	}
	enc, err := AppendMessage(nil, d, m)
	if err != nil {
		require.NoError(t, err, "a decoded %v re-encodes", m.Packet.Command())
	}
	eh, err := ParseHeader(d, enc)
	if err != nil {
		require.NoError(t, err)
	}
	if h.Cmd != eh.Cmd || h.Length != eh.Length || h.Volume != eh.Volume {
		require.Equal(t, h.Cmd, eh.Cmd)
		require.Equal(t, h.Length, eh.Length)
		require.Equal(t, h.Volume, eh.Volume)
	}
	if _, ok := m.Packet.(*Unknown); ok {
		return
	}
	if !assert.ObjectsAreEqual(raw[h.Format.Size():], enc[eh.Format.Size():]) {
		require.Equal(t, raw[h.Format.Size():], enc[eh.Format.Size():], "payload of %v", h.Cmd)
	}
	if h.Format == eh.Format && !assert.ObjectsAreEqual(raw, enc) {
		require.Equal(t, raw, enc)
	}
}

// FuzzDecodePayload runs every command's decoder on arbitrary payloads:
// no panics, and what decodes re-encodes to the same payload.
func FuzzDecodePayload(f *testing.F) {
	for i, d := range testDialects {
		for _, m := range smallSamples(d) {
			b, err := AppendMessage(nil, d, m)
			if err != nil {
				f.Fatal(err)
			}
			h, err := ParseHeader(d, b)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint16(h.Cmd), b[h.Format.Size():], uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, cmd uint16, payload []byte, sel uint8) {
		d := fuzzDialect(sel)
		h := d.HeaderFor(0, Cmd(cmd), uint32(len(payload)))
		if checkHeader(h) != nil {
			return // an h80 cannot say this length: no peer can send it
		}
		p, err := DecodePayload(d, h, payload)
		if err != nil {
			var pe *ProtocolError
			require.ErrorAs(t, err, &pe)
			return
		}
		if _, ok := p.(*Unknown); ok {
			require.True(t, Cmd(cmd).Ignorable())
			return
		}
		enc, err := AppendMessage(nil, d, Message{Packet: p})
		require.NoError(t, err, "%v", Cmd(cmd))
		require.Equal(t, append(mustHeader(h), payload...), enc)
	})
}

// smallSamples are samplePackets with data payloads cut to 64 bytes: the
// fuzzer minimizes every new input, which takes long for big ones.
func smallSamples(d Dialect) []Message {
	msgs := samplePackets(d)
	for i, m := range msgs {
		if dp, ok := m.Packet.(*Data); ok && len(dp.Payload) > 64 {
			short := *dp
			short.Payload = short.Payload[:64]
			msgs[i].Packet = &short
		}
	}
	return msgs
}

func mustHeader(h Header) []byte {
	b, err := AppendHeader(nil, h)
	if err != nil {
		panic(err)
	}
	return b
}

// TestUpdateFuzzCorpus writes the seed corpora in testdata/fuzz from the
// golden streams (go test -run TestUpdateFuzzCorpus -update-fuzz-corpus):
// each stream's first packets (its handshake, in the pre-agreement or agreed
// dialect) and one packet of each command it carries.
func TestUpdateFuzzCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("only with -update-fuzz-corpus")
	}
	streams := loadGolden(t)
	agreed := agreedDialects(t, streams)
	agreedSel := uint8(1) // testDialects[1] is {101, FeaturesAll}, what the trace agreed on
	require.Equal(t, agreed["1"], fuzzDialect(agreedSel))
	readerDir := filepath.Join("testdata", "fuzz", "FuzzReader")
	payloadDir := filepath.Join("testdata", "fuzz", "FuzzDecodePayload")
	for _, dir := range []string{readerDir, payloadDir} {
		require.NoError(t, os.RemoveAll(dir))
		require.NoError(t, os.MkdirAll(dir, 0o755))
	}
	write := func(dir, name string, args ...string) {
		body := "go test fuzz v1\n" + strings.Join(args, "\n") + "\n"
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	for _, s := range streams {
		base := strings.ReplaceAll(s.key(), " ", "-")
		base = strings.ReplaceAll(base, ">", "")
		msgs := decodeGolden(t, s, agreed[s.tcp])
		d := Dialect{}
		sel := uint8(0)
		if s.meta && !s.connector {
			d, sel = agreed[s.tcp], agreedSel
		}
		// The handshake: the packets from the start that fit into
		// fuzzStreamMax, in the dialect the stream starts with.
		var prefix []byte
		for _, m := range msgs {
			b, err := AppendMessage(nil, d, m)
			require.NoError(t, err)
			if len(prefix)+len(b) > fuzzStreamMax {
				break
			}
			prefix = append(prefix, b...)
			switch m.Packet.(type) {
			case *ConnectionFeatures:
				d = agreed[s.tcp]
			case *Initial:
				if s.meta {
					d = agreed[s.tcp]
				}
			}
		}
		write(readerDir, base+"-start", fmt.Sprintf("[]byte(%q)", prefix), fmt.Sprintf("byte(%d)", sel))
		seen := map[Cmd]bool{}
		for _, m := range msgs {
			c := m.Packet.Command()
			if seen[c] || c == CmdInitialData || c == CmdInitialMeta || c == CmdConnectionFeatures {
				continue
			}
			seen[c] = true
			if dp, ok := m.Packet.(*Data); ok && len(dp.Payload) > 64 {
				short := *dp
				short.Payload = short.Payload[:64] // keep seeds small, see smallSamples
				m.Packet = &short
			}
			b, err := AppendMessage(nil, agreed[s.tcp], m)
			require.NoError(t, err)
			name := fmt.Sprintf("%s-%s", base, strings.TrimPrefix(c.String(), "P_"))
			write(readerDir, name, fmt.Sprintf("[]byte(%q)", b), fmt.Sprintf("byte(%d)", agreedSel))
			write(payloadDir, name, fmt.Sprintf("uint16(%d)", uint16(c)), fmt.Sprintf("[]byte(%q)", b[16:]), fmt.Sprintf("byte(%d)", agreedSel))
		}
	}
}
