// Package bitmap is DRBD's out-of-sync bitmap: one bit per 4 KiB block of
// the replicated device. A set bit means "this block may differ from the
// peer's copy"; resync copies exactly the set blocks and clears them.
//
// The same bits have three forms, all handled here:
//
//	in memory   []uint64, bit i of the device at words[i/64] bit i%64
//	on disk     4 KiB pages of little-endian 64-bit words (DRBD's bitmap
//	            area; 32768 bits per page; pages past the end zero-padded)
//
//	            page 0                      page 1
//	            +------+------+-----+------++------+----
//	            |word 0|word 1| ... |w 511 ||w 512 | ...
//	            +------+------+-----+------++------+----
//	             LE u64: byte 0 bit 0 = block 0, byte 0 bit 7 = block 7
//
//	on the wire P_BITMAP: the same little-endian words, a chunk per packet;
//	            P_COMPRESSED_BITMAP: run lengths as VLI codes (rle.go)
//
// Count is kept on every change, so it is O(1). Every change marks its
// on-disk page dirty; the metadata layer writes out DirtyPages and then
// calls ClearDirty (or ClearPageDirty per page written).
//
// # Usage
//
//	bm := bitmap.ForSectors(capacitySectors)    // 32 MiB per TiB
//	bm.SetSectors(sector, 8)                    // a 4 KiB write the peer did not get
//	for start, end := range bm.SetRuns(0, bm.Len()) {
//		// resync blocks [start, end)
//	}
//	bm.ClearSectors(sector, 8)                  // resync of that block done
//	for page := range bm.DirtyPages() {
//		bm.EncodePage(page, buf)                // write buf at bitmap offset + page*4096
//	}
//	bm.ClearDirty()
//
// Sending it to the peer, as the kernel does: try RLE, fall back to plain.
//
//	for off := uint64(0); off < bm.Len(); {
//		enc, n, next := bm.EncodeRLE(code, off)   // code: 4096 - header - 1 bytes
//		if n > 0 { send P_COMPRESSED_BITMAP{enc, code[:n]}; off = next; continue }
//		w := int(next / 64)                        // plain P_BITMAP from this word
//		c := bm.CopyWords(words, w)
//		send P_BITMAP{words[:c]}; off = min(uint64(w+c)*64, bm.Len())
//	}
//
// and receiving: bm.MergeRLE(enc, code, off) or bm.MergeWords(w, words),
// both OR-merging.
package bitmap
