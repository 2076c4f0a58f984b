package protocol

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var updateCorpus = flag.Bool("update-fuzz-corpus", false, "rewrite testdata/fuzz seed corpora from the golden streams")

// fuzzDialect picks the dialect for a fuzz input from its selector byte.
func fuzzDialect(sel uint8) Dialect { return testDialects[int(sel)%len(testDialects)] }

// ourOffer is what gdrbd offers in P_CONNECTION_FEATURES, for the fuzz
// targets' switch to the agreed dialect.
var ourOffer = ConnectionFeatures{ProtocolMin: ProtocolMin, FeatureFlags: FeaturesAll, ProtocolMax: ProtocolMax}

// FuzzReader feeds arbitrary bytes through the framed Reader: it must never
// panic, never ask the Allocator for more than MaxBIOSize, agree with the
// pure Decode, and every packet it accepts must re-encode to the bytes it
// came from. A P_CONNECTION_FEATURES read before agreement switches to the
// agreed dialect, so the seeds' handshakes lead into the rest.
func FuzzReader(f *testing.F) {
	for i, d := range testDialects {
		var b []byte
		for _, m := range smallSamples(d) {
			var err error
			if b, err = AppendMessage(b, d, m); err != nil {
				f.Fatal(err)
			}
		}
		f.Add(b, uint8(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, sel uint8) {
		d := fuzzDialect(sel)
		r := NewReader(bytes.NewReader(data), func(n int) []byte {
			if n > MaxBIOSize || n <= 0 {
				panic(fmt.Sprintf("allocator asked for %d bytes", n))
			}
			return make([]byte, n)
		})
		require.NoError(t, r.SetDialect(d))
		off := 0
		for {
			m, err := r.ReadMessage()
			pm, n, perr := Decode(d, data[off:])
			if err != nil {
				var pe *ProtocolError
				if errors.As(err, &pe) {
					require.ErrorIs(t, perr, pe.Err, "Decode rejects for the same reason as the Reader")
				} else {
					require.True(t, errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF), "%v", err)
					if off == len(data) {
						require.ErrorIs(t, err, io.EOF)
					} else {
						require.Error(t, perr)
					}
				}
				return
			}
			require.NoError(t, perr)
			require.Equal(t, m, pm, "Reader and Decode agree")
			require.Positive(t, n, "a packet consumes bytes")
			reencode(t, d, m, data[off:off+n])
			off += n
			if f, ok := m.Packet.(*ConnectionFeatures); ok && !d.Agreed() {
				if agreed, err := Agree(ourOffer, *f); err == nil {
					d = agreed
					require.NoError(t, r.SetDialect(d))
				}
			}
		}
	})
}

// reencode requires that m encodes to raw, the bytes it was decoded from.
// A peer may use an h95 header where DRBD would use h80 (both decode), and
// an ignored packet's payload is not kept: those are compared as far as
// they are represented.
func reencode(t *testing.T, d Dialect, m Message, raw []byte) {
	t.Helper()
	h, err := ParseHeader(d, raw)
	require.NoError(t, err)
	enc, err := AppendMessage(nil, d, m)
	require.NoError(t, err, "a decoded %v re-encodes", m.Packet.Command())
	eh, err := ParseHeader(d, enc)
	require.NoError(t, err)
	require.Equal(t, h.Cmd, eh.Cmd)
	require.Equal(t, h.Length, eh.Length)
	require.Equal(t, h.Volume, eh.Volume)
	if _, ok := m.Packet.(*Unknown); ok {
		return
	}
	require.Equal(t, raw[h.Format.Size():], enc[eh.Format.Size():], "payload of %v", h.Cmd)
	if h.Format == eh.Format {
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
		// The handshake: up to 12 packets from the start, in the
		// dialect the stream starts with.
		var prefix []byte
		for i, m := range msgs {
			if i == 12 || len(prefix) > 2048 {
				break
			}
			b, err := AppendMessage(nil, d, m)
			require.NoError(t, err)
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
