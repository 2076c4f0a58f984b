package bitmap

import (
	"errors"
	"fmt"
)

// DRBD's P_COMPRESSED_BITMAP code (drbd_vli.h; the kernel's
// fill_bitmap_rle_bits encodes, recv_bm_rle_bits decodes). The bitmap is
// cut into alternating runs of clear and set bits; each run length (>= 1)
// is written as a variable-length integer into a little-endian bit stream
// (least significant bit first). The packet's encoding byte says which
// polarity the first run has:
//
//	encoding byte:  bit 7      bits 6..4       bits 3..0
//	                first run  pad bits at     code: 2 = RLE_VLI_Bits
//	                is set     the end of code
//
// A VLI code word starts with a prefix (read LSB first) that selects how
// many data bits follow; values are offset so no code space is wasted:
//
//	prefix      data bits  values
//	0           1          1..2
//	10          1          3..4
//	110         2          5..8
//	1110        3          9..16
//	11110       5          17..48
//	111110      8          49..304
//	11111100    13         305..8496
//	11111110    21         8497..2105648
//	11111101    34         2105649..17182025008
//	11111111    56         up to 2^56 + 17182025008
const RLEVLIBits = 2

var (
	// ErrEncoding is wrapped when a compressed bitmap uses an encoding
	// other than RLE_VLI_Bits.
	ErrEncoding = errors.New("bitmap: unknown bitmap encoding")
	// ErrCorrupt is wrapped when compressed bitmap code is malformed:
	// truncated code words or runs past the end of the bitmap.
	ErrCorrupt = errors.New("bitmap: corrupt compressed bitmap")
)

// vliLevel is one row of the code table: total bits, prefix bits, prefix.
type vliLevel struct{ total, prefixBits, prefix uint }

var vliLevels = [...]vliLevel{
	{2, 1, 0x00}, {3, 2, 0x01}, {5, 3, 0x03}, {7, 4, 0x07}, {10, 5, 0x0f},
	{14, 6, 0x1f}, {21, 8, 0x3f}, {29, 8, 0x7f}, {42, 8, 0xbf}, {64, 8, 0xff},
}

// vliEncode returns the code word for v >= 1 and its length in bits.
func vliEncode(v uint64) (code uint64, n uint, ok bool) {
	if v == 0 {
		return 0, 0, false
	}
	var max uint64
	adj := uint64(1)
	for _, l := range vliLevels {
		max += 1 << (l.total - l.prefixBits)
		if v <= max {
			return (v-adj)<<l.prefixBits | uint64(l.prefix), l.total, true
		}
		adj = max + 1
	}
	return 0, 0, false
}

// vliDecode decodes the code word in the low bits of in. Every 64-bit
// pattern starts with some valid prefix, so it cannot fail; the caller
// checks that the returned length was really available.
func vliDecode(in uint64) (v uint64, n uint) {
	adj := uint64(1)
	for _, l := range vliLevels {
		if in&(1<<l.prefixBits-1) == uint64(l.prefix) {
			return (in&(^uint64(0)>>(64-l.total)))>>l.prefixBits + adj, l.total
		}
		adj += 1 << (l.total - l.prefixBits)
	}
	panic("bitmap: VLI code table does not cover every prefix")
}

// bitWriter appends bits LSB-first to a zeroed buffer.
type bitWriter struct {
	buf []byte
	pos uint64 // bits written
}

// put appends the low n bits of v, or reports that they do not fit.
func (w *bitWriter) put(v uint64, n uint) bool {
	if n == 0 {
		return true
	}
	if (w.pos+uint64(n)-1)/8 >= uint64(len(w.buf)) {
		return false
	}
	if n < 64 {
		v &= 1<<n - 1
	}
	for n > 0 {
		i := w.pos / 8
		sh := uint(w.pos % 8)
		w.buf[i] |= byte(v << sh)
		k := min(8-sh, n)
		v >>= k
		n -= k
		w.pos += uint64(k)
	}
	return true
}

// bitReader reads bits LSB-first, stopping short of the pad bits.
type bitReader struct {
	buf   []byte
	pos   uint64
	limit uint64 // len(buf)*8 - pad
}

// get returns up to n (<= 64) bits and how many it could return.
func (r *bitReader) get(n uint) (uint64, uint) {
	avail := r.limit - min(r.pos, r.limit)
	if uint64(n) > avail {
		n = uint(avail)
	}
	var v uint64
	for got := uint(0); got < n; {
		i := r.pos / 8
		sh := uint(r.pos % 8)
		k := min(8-sh, n-got)
		v |= uint64(r.buf[i]>>sh) & (1<<k - 1) << got
		got += k
		r.pos += uint64(k)
	}
	return v, n
}

// EncodeRLE encodes the bitmap from bit from onwards into code, fitting as
// many whole runs as code holds, exactly as DRBD's fill_bitmap_rle_bits
// does (so a kernel peer decodes it, and the bytes match the kernel's for
// the same bitmap and buffer size). It returns the packet's encoding byte,
// the number of code bytes used, and the bit where the next packet starts.
//
// n == 0 means "send this part as plain words instead" (RLE would be
// larger than the plain bits it covers, or nothing fit): next is then from
// rounded down to a 64-bit word, where the plain P_BITMAP words start.
// When from >= Len there is nothing to send: n == 0 and next == Len.
//
// For a P_COMPRESSED_BITMAP packet, code is the payload after the
// encoding byte: DRBD_SOCKET_BUFFER_SIZE (4096) minus the header (8 or 16
// bytes) minus 1.
func (b *Bitmap) EncodeRLE(code []byte, from uint64) (encoding byte, n int, next uint64) {
	if from >= b.nbits {
		return 0, 0, b.nbits
	}
	clear(code)
	w := bitWriter{buf: code}
	var plain uint64
	off := from
	first := true
	inSet := false // polarity of the run being encoded
	for off < b.nbits {
		var end uint64
		if inSet {
			end, _ = b.NextClear(off)
		} else {
			end, _ = b.NextSet(off)
		}
		rl := end - off
		if first {
			first = false
			if rl == 0 {
				// The first bit is set: record the polarity, and start
				// with a set run instead of a zero-length clear one.
				encoding |= 0x80
				inSet = true
				continue
			}
		}
		cw, bitsN, _ := vliEncode(rl)
		if !w.put(cw, bitsN) {
			break // buffer full; the next packet starts at off
		}
		inSet = !inSet
		plain += rl
		off = end
	}
	n = int((w.pos + 7) / 8)
	if n == 0 || plain < uint64(n)*8 {
		return 0, 0, from &^ 63
	}
	pad := byte((8 - w.pos%8) % 8)
	return encoding | pad<<4 | RLEVLIBits, n, off
}

// DecodeRLE decodes one P_COMPRESSED_BITMAP payload (encoding byte plus
// code) that starts at bit from of a bitmap of nbits bits, calling set
// for every run [start, end) of set bits, and returns the bit where the
// next packet continues (nbits when the bitmap is complete). It never
// allocates and never trusts lengths from the code: runs past nbits and
// truncated code words are ErrCorrupt, as in recv_bm_rle_bits.
func DecodeRLE(encoding byte, code []byte, from, nbits uint64, set func(start, end uint64)) (next uint64, err error) {
	if encoding&0x0f != RLEVLIBits {
		return from, fmt.Errorf("bitmap: encoding %#02x: %w", encoding, ErrEncoding)
	}
	if from > nbits {
		return from, fmt.Errorf("bitmap: compressed chunk starts at bit %d of %d: %w", from, nbits, ErrCorrupt)
	}
	pad := uint64(encoding>>4) & 7
	total := uint64(len(code)) * 8
	r := bitReader{buf: code, limit: total - min(pad, total)}
	inSet := encoding&0x80 != 0
	s := from
	look, have := r.get(64)
	for have > 0 {
		rl, used := vliDecode(look)
		if have < used {
			return s, fmt.Errorf("bitmap: code word of %d bits with %d left at bit %d: %w", used, have, s, ErrCorrupt)
		}
		if rl > nbits-s {
			return s, fmt.Errorf("bitmap: run of %d at bit %d overflows %d bits: %w", rl, s, nbits, ErrCorrupt)
		}
		if inSet {
			set(s, s+rl)
		}
		if used < 64 {
			look >>= used
		} else {
			look = 0
		}
		have -= used
		more, got := r.get(64 - have)
		if have < 64 {
			look |= more << have
		}
		have += got
		s += rl
		inSet = !inSet
	}
	return s, nil
}

// MergeRLE ORs one decoded P_COMPRESSED_BITMAP payload, starting at bit
// from, into b and returns where the next packet continues. On error the
// bitmap may hold the runs decoded before the corrupt part (harmless: a
// bit set too many only costs a block of resync).
func (b *Bitmap) MergeRLE(encoding byte, code []byte, from uint64) (next uint64, err error) {
	return DecodeRLE(encoding, code, from, b.nbits, func(s, e uint64) { b.SetRange(s, e) })
}
