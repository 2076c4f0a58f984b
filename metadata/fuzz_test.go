package metadata_test

import (
	"bytes"
	"testing"

	"github.com/gdrbd/gdrbd/metadata"
)

// FuzzDecodeSuperblock: any 4 KiB either fails cleanly or decodes to a
// superblock that re-encodes to the same fields.
func FuzzDecodeSuperblock(f *testing.F) {
	for _, tail := range []string{"after-apply-al.tail256k", "attached-after-writes.tail256k"} {
		b := gunzip(f, tail)
		f.Add(b[refMDOffset-refTailOff:][:4096])
	}
	f.Add(make([]byte, 4096))
	f.Fuzz(func(t *testing.T, b []byte) {
		sb, err := metadata.DecodeSuperblock(b)
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

// FuzzDecodeTransaction: any block either fails cleanly or decodes to a
// transaction whose re-encoding decodes to the same content.
func FuzzDecodeTransaction(f *testing.F) {
	tail := gunzip(f, "attached-after-writes.tail256k")
	for b := 0; b < 8; b += 3 {
		f.Add(tail[refALOffset-refTailOff+b*4096:][:4096])
	}
	f.Add(metadata.InitializedBlock())
	f.Fuzz(func(t *testing.T, b []byte) {
		tx, err := metadata.DecodeTransaction(b)
		if err != nil {
			return
		}
		out := make([]byte, 4096)
		if err := tx.Encode(out); err != nil {
			t.Fatal(err)
		}
		tx2, err := metadata.DecodeTransaction(out)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if tx2.Number != tx.Number || tx2.Type != tx.Type || len(tx2.Updates) != len(tx.Updates) {
			t.Fatalf("round trip changed the transaction")
		}
		// A ring made of this block replays without panicking.
		ring := bytes.Repeat(b[:4096], 8)
		_, _ = metadata.ReplayAL(ring, 1, 8)
	})
}
