package metadata

import (
	"errors"
	"fmt"
	"slices"

	"github.com/gdrbd/gdrbd/bitmap"
)

var (
	// ErrNoUsableAL is returned by ReplayAL when no ring block is valid
	// (drbdmeta: "No usable activity log found. Do you need to create-md?").
	ErrNoUsableAL = errors.New("metadata: no usable activity log found; do you need to create-md?")
	// ErrNoValidALUpdate is returned when some blocks are valid but none of
	// them is an update and the corrupt ones are not explained by a torn
	// first transaction (drbdmeta: "No valid AL update transaction found.").
	ErrNoValidALUpdate = errors.New("metadata: no valid AL update transaction found")
)

// Replay is the activity log reconstructed from the on-disk ring (a plain
// value, not safe for concurrent mutation).
type Replay struct {
	// Blocks is the ring size; Valid blocks passed magic and crc32c;
	// Updates of those are update transactions (not "initialized").
	Blocks, Valid, Updates int
	// Oldest and Newest are the transaction numbers at the ends of the
	// replayed range (meaningful when Updates > 0).
	Oldest, Newest uint32
	// Slots[i] is the extent slot i held after the newest transaction
	// (LCFree for none).
	Slots []uint32
	// Warnings are drbdmeta's diagnostics for odd rings, worded as it
	// prints them.
	Warnings []string
}

// Corrupt is the number of ring blocks that failed magic or checksum.
func (r *Replay) Corrupt() int { return r.Blocks - r.Valid }

// NextNumber is the transaction number a writer continues with so that
// its transactions sort after everything in the ring.
func (r *Replay) NextNumber() uint32 {
	if r.Updates == 0 {
		return 0
	}
	return r.Newest + 1
}

// HotExtents are the distinct extents the log says were active, sorted.
func (r *Replay) HotExtents() []uint32 {
	var out []uint32
	for _, e := range r.Slots {
		if e != LCFree {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ReplayAL reconstructs the active set from a raw ring (stripes *
// stripeSize4k blocks) exactly as drbdmeta's replay_al_84 does: find the
// valid update transactions, take the oldest and newest by transaction
// number (signed 32-bit difference, so numbers may wrap), and walk the ring
// from oldest to newest applying each valid transaction's context, then its
// updates. The kernel writes every transaction durably before the data it
// covers, so the result covers every write that may have reached the disk.
//
// The error is ErrNoUsableAL or ErrNoValidALUpdate for rings that cannot
// be interpreted; a ring of only "initialized" blocks replays to nothing.
func ReplayAL(ring []byte, stripes, stripeSize4k uint32) (*Replay, error) {
	mx := stripes * stripeSize4k
	if mx == 0 || uint64(len(ring)) < uint64(mx)*ALTransactionSize {
		return nil, fmt.Errorf("metadata: activity log ring of %d bytes for %d x %d blocks: %w", len(ring), stripes, stripeSize4k, ErrALTransaction)
	}
	r := &Replay{Blocks: int(mx)}
	txs := make([]*Transaction, mx)
	var oldest, newest uint32 // ring indexes
	for b := range mx {
		o := ringBlock(b, stripes, stripeSize4k)
		t, err := DecodeTransaction(ring[int(o)*ALTransactionSize:])
		if err != nil {
			continue
		}
		r.Valid++
		if t.Type == TransactionInitialized {
			continue
		}
		txs[b] = &t
		r.Updates++
		if r.Updates == 1 {
			oldest, newest = b, b
			continue
		}
		if int32(t.Number-txs[oldest].Number) < 0 {
			oldest = b
		}
		if int32(t.Number-txs[newest].Number) > 0 {
			newest = b
		}
	}
	if r.Valid == 0 {
		return r, ErrNoUsableAL
	}
	if r.Valid != int(mx) {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d corrupt AL transactions found", int(mx)-r.Valid))
	}
	if r.Updates == 0 {
		if r.Valid == int(mx) {
			return r, nil
		}
		// Only the first transaction torn: a crash while writing it.
		if _, err := DecodeTransaction(ring[int(ringBlock(0, stripes, stripeSize4k))*ALTransactionSize:]); err != nil && r.Valid == int(mx)-1 {
			return r, nil
		}
		return r, ErrNoValidALUpdate
	}
	r.Oldest, r.Newest = txs[oldest].Number, txs[newest].Number
	end := newest
	if end < oldest {
		end += mx
	}
	set := func(slot int, ext uint32) {
		if slot >= len(r.Slots) {
			// In one go: slots run up to ALExtentsMax.
			r.Slots = append(r.Slots, slices.Repeat([]uint32{LCFree}, slot+1-len(r.Slots))...)
		}
		r.Slots[slot] = ext
	}
	for b := oldest; b <= end; b++ {
		idx := b % mx
		t := txs[idx]
		if t == nil {
			continue
		}
		for i, ext := range t.Context {
			slot := int(t.ContextStart) + i
			if ext == LCFree && slot >= int(t.ContextSize) {
				continue
			}
			if slot >= ALExtentsMax {
				r.Warnings = append(r.Warnings, fmt.Sprintf("slot number out of range: tr:%d slot:%d", idx, slot))
				continue
			}
			set(slot, ext)
		}
		for _, u := range slices.Concat(t.Updates, t.stray) {
			if int(u.Slot) >= ALExtentsMax {
				r.Warnings = append(r.Warnings, fmt.Sprintf("update slot number out of range: tr:%d slot:%d", idx, u.Slot))
				continue
			}
			set(int(u.Slot), u.Extent)
		}
	}
	return r, nil
}

// MarkHotExtents sets the bits of every extent in the bitmap (what
// applying the activity log means), ignoring extents past its end, and
// returns how many bits were newly set.
func MarkHotExtents(bm *bitmap.Bitmap, extents []uint32) uint64 {
	var added uint64
	for _, e := range extents {
		from := uint64(e) * BitsPerALExtent
		if from >= bm.Len() {
			continue
		}
		added += bm.SetRange(from, min(from+BitsPerALExtent, bm.Len()))
	}
	return added
}
