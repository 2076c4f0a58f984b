package metadata_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"slices"
	"testing"

	"github.com/gdrbd/gdrbd/metadata"
)

// Fuzz inputs are prefixes of a 4 KiB block, not whole blocks: a short
// input is padded to the block size (the decoders must still refuse it
// as given), and the seeds are trimmed to their meaningful bytes.
//
// The reason is the fuzzer's minimizer. Every input that reaches new
// coverage is minimized before fuzzing goes on, and that costs up to
// len²/2 runs of the fuzz function when no shorter input keeps the
// coverage. With whole 4 KiB blocks no shorter input ever did (the
// decoders refuse anything under 4 KiB), so the first interesting input
// cost ~8M runs, which the default -fuzzminimizetime (60s) cut off: the
// workers reported a few hundred execs and then none for the rest of
// the run. Padded prefixes lose nothing the decoders read, and the
// minimizer cuts the tail off in a few runs. (For the same reason
// DecodeTransaction formats its checksum error only when it is printed:
// fmt is instrumented too, and the digits of the computed crc32c made
// the coverage of a rejected block depend on every one of its bytes.)
//
// What the fuzz function reads past the decoders' refusal is bounded
// the same way: see compactBlock.

// padBlock returns b as a 4 KiB block: b itself if it is long enough,
// else b followed by fill.
func padBlock(b []byte, fill byte) []byte {
	if len(b) >= 4096 {
		return b
	}
	blk := bytes.Repeat([]byte{fill}, 4096)
	copy(blk, b)
	return blk
}

// trimBlock is the inverse of padBlock: blk without its trailing fill
// bytes. (Not bytes.TrimRight, which takes "\xff" for U+FFFD and so
// trims any byte that is not UTF-8.)
func trimBlock(blk []byte, fill byte) []byte {
	n := len(blk)
	for n > 0 && blk[n-1] == fill {
		n--
	}
	return blk[:n]
}

// FuzzDecodeSuperblock: any input either fails cleanly or decodes to a
// superblock that re-encodes to the same fields; anything shorter than
// a superblock fails. A short input is also decoded zero-padded to 4 KiB
// (the reserved space a real superblock has).
func FuzzDecodeSuperblock(f *testing.F) {
	for _, tail := range []string{"after-apply-al.tail256k", "attached-after-writes.tail256k"} {
		b := gunzip(f, tail)
		f.Add(trimBlock(b[refMDOffset-refTailOff:][:metadata.SuperblockSize], 0))
	}
	f.Add([]byte{}) // an all-zero block
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < metadata.SuperblockSize {
			if _, err := metadata.DecodeSuperblock(b); err == nil {
				t.Fatalf("a %d-byte superblock decoded", len(b))
			}
		}
		sb, err := metadata.DecodeSuperblock(padBlock(b, 0))
		if err != nil {
			return
		}
		enc, err := sb.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		again, err := metadata.DecodeSuperblock(enc)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if again != sb {
			t.Fatalf("round trip changed %+v into %+v", sb, again)
		}
		_ = sb.Flags.String()
	})
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sealTransaction gives a ring block the AL magic and number n and makes
// its crc32c right (the kernel's: seed 0, no final inversion, the field
// itself zero), leaving every other byte as it is.
func sealTransaction(blk []byte, n uint32) {
	be := binary.BigEndian
	be.PutUint32(blk[0:], metadata.ALMagic)
	be.PutUint32(blk[4:], n)
	clear(blk[8:12])
	be.PutUint32(blk[8:], ^crc32.Update(0xffffffff, castagnoli, blk[:metadata.ALTransactionSize]))
}

// compactUpdates and compactContext are how many update and context
// entries a compact transaction (see compactBlock) sets; compactSize is
// its length.
const (
	compactUpdates = 4
	compactContext = 4
	compactSize    = 12 + 6*compactUpdates + 4*compactContext
)

// compactBlock makes a ring block, magic and crc32c right, from the first
// compactSize bytes of b (0xff where b is shorter) read as tr_number
// (u32), transaction_type, n_updates, context_size and
// context_start_slot_nr (u16 each), compactUpdates update entries (slot
// u16, extent u32) and compactContext context entries (u32). Every other
// entry is unused (0xff), the reserved words zero.
//
// Fuzzing this rather than a block's own bytes keeps every input that
// matters to the parser and the replay a few dozen bytes long, and
// minimizing one cheap (see above). No branch needs more entries: which
// of them are in range is up to the header's start and size, and an
// n_updates below compactUpdates makes the other set ones stray.
func compactBlock(b []byte) []byte {
	c := bytes.Repeat([]byte{0xff}, compactSize)
	copy(c, b)
	blk := bytes.Repeat([]byte{0xff}, metadata.ALTransactionSize)
	copy(blk[12:20], c[4:12])
	clear(blk[20:36])
	for i := range compactUpdates {
		copy(blk[36+2*i:][:2], c[12+6*i:])
		copy(blk[164+4*i:][:4], c[12+6*i+2:])
	}
	for i := range compactContext {
		copy(blk[420+4*i:][:4], c[12+6*compactUpdates+4*i:])
	}
	sealTransaction(blk, binary.BigEndian.Uint32(c[0:]))
	return blk
}

// compactOf is the compact form of a ring block (see compactBlock).
func compactOf(blk []byte) []byte {
	c := slices.Concat(blk[4:8], blk[12:20])
	for i := range compactUpdates {
		c = slices.Concat(c, blk[36+2*i:][:2], blk[164+4*i:][:4])
	}
	for i := range compactContext {
		c = slices.Concat(c, blk[420+4*i:][:4])
	}
	return c
}

// FuzzDecodeTransaction: any block either fails cleanly or decodes to a
// transaction whose re-encoding decodes to the same content, and
// anything shorter than a block fails; a short input is also decoded
// padded with 0xff (what unused entries hold). Random blocks almost never
// pass the magic and crc32c, so the input is also read as a compact
// transaction (see compactBlock), whose block must decode and round trip
// too. Every block that decodes must replay in a ring (see checkRing),
// and one that decodes as it is also as a ring of copies of it.
func FuzzDecodeTransaction(f *testing.F) {
	tail := gunzip(f, "attached-after-writes.tail256k")
	for b := 0; b < 8; b += 3 {
		blk := tail[refALOffset-refTailOff+b*4096:][:4096]
		f.Add(trimBlock(blk, 0xff))
		f.Add(compactOf(blk))
	}
	f.Add(metadata.InitializedBlock()) // valid as it is
	f.Add(compactOf(metadata.InitializedBlock()))
	f.Fuzz(fuzzTransaction)
}

// fuzzTransaction is FuzzDecodeTransaction's fuzz function.
func fuzzTransaction(t *testing.T, b []byte) {
	if len(b) < metadata.ALTransactionSize {
		if _, err := metadata.DecodeTransaction(b); err == nil {
			t.Fatalf("a %d-byte transaction decoded", len(b))
		}
	}
	raw := padBlock(b, 0xff)
	if tx, err := metadata.DecodeTransaction(raw); err == nil {
		checkTransactionRoundTrip(t, tx)
		checkCopiesRing(t, raw)
		checkRing(t, raw, tx)
	}

	blk := compactBlock(b)
	tx, err := metadata.DecodeTransaction(blk)
	if err != nil {
		t.Fatalf("a block with magic and checksum right: %v", err)
	}
	checkTransactionRoundTrip(t, tx)
	checkRing(t, blk, tx)
}

// initializedRing is a ring of eight blocks as drbdmeta initialises it.
var initializedRing = bytes.Repeat(metadata.InitializedBlock(), 8)

// checkCopiesRing: eight copies of blk, a valid block, replay without an
// error, all eight valid.
func checkCopiesRing(t *testing.T, blk []byte) {
	t.Helper()
	const slots = 8
	r, err := metadata.ReplayAL(bytes.Repeat(blk[:metadata.ALTransactionSize], slots), 1, slots)
	if err != nil {
		t.Fatalf("ring of copies of a valid block: %v", err)
	}
	if r.Valid != slots {
		t.Fatalf("ring of copies of a valid block: %d valid", r.Valid)
	}
}

// checkRing: an initialized ring of eight blocks with blk (which decodes
// to tx) in two slots, numbered tx.Number and tx.Number+1 (wrapping round
// the ring when tx.Number%8 is 7), replays without an error, all eight
// valid and, unless tx is an "initialized" block itself, both updates,
// oldest and newest right.
func checkRing(t *testing.T, blk []byte, tx metadata.Transaction) {
	t.Helper()
	const slots = 8
	ring := bytes.Clone(initializedRing)
	n := tx.Number
	for i := range uint32(2) {
		at := ring[(n+i)%slots*metadata.ALTransactionSize:]
		copy(at, blk[:metadata.ALTransactionSize])
		sealTransaction(at, n+i)
	}
	r, err := metadata.ReplayAL(ring, 1, slots)
	if err != nil {
		t.Fatalf("ring of valid blocks: %v", err)
	}
	if r.Valid != slots {
		t.Fatalf("ring of valid blocks: %d valid", r.Valid)
	}
	if tx.Type == metadata.TransactionInitialized {
		if r.Updates != 0 {
			t.Fatalf("ring of initialized blocks: %d updates", r.Updates)
		}
	} else if r.Updates != 2 || r.Oldest != n || r.Newest != n+1 {
		t.Fatalf("ring with updates %d and %d: %d updates from %d to %d", n, n+1, r.Updates, r.Oldest, r.Newest)
	}
	_ = r.HotExtents()
}

// checkTransactionRoundTrip: tx re-encodes to a block that decodes to the
// same content and re-encodes to the same bytes.
func checkTransactionRoundTrip(t *testing.T, tx metadata.Transaction) {
	t.Helper()
	out := make([]byte, metadata.ALTransactionSize)
	if err := tx.Encode(out); err != nil {
		t.Fatal(err)
	}
	tx2, err := metadata.DecodeTransaction(out)
	if err != nil {
		t.Fatalf("re-decode: %v", err)
	}
	if tx2.Number != tx.Number || tx2.Type != tx.Type || tx2.ContextSize != tx.ContextSize ||
		tx2.ContextStart != tx.ContextStart || !slices.Equal(tx2.Updates, tx.Updates) ||
		!slices.Equal(tx2.Context, tx.Context) {
		t.Fatalf("round trip changed %+v into %+v", tx, tx2)
	}
	again := make([]byte, metadata.ALTransactionSize)
	if err := tx2.Encode(again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, out) {
		t.Fatalf("re-encoding changed the block")
	}
}
