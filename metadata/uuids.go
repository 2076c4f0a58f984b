package metadata

import (
	"fmt"
	"math/rand/v2"
)

// UUIDJustCreated is the current UUID of fresh metadata (UUID_JUST_CREATED):
// "no data generation yet". A handshake where one side has it means a
// full sync.
const UUIDJustCreated uint64 = 4

// UUIDNewBitmapOffset is added to the bitmap UUID when a sync source starts
// a new resync (UUID_NEW_BM_OFFSET), so both sides can tell the resync
// generation from the data generation it started from.
const UUIDNewBitmapOffset uint64 = 1 << 48

// uuidPrimaryBit is bit 0 of the current UUID: set while Primary ("was
// Primary"), masked in every comparison.
const uuidPrimaryBit uint64 = 1

// GenerationUUIDs are DRBD's data generation identifiers: the current
// generation, the generation the bitmap tracks changes against, and two
// older generations. Comparing them at handshake decides the resync
// direction. It is a plain value, not safe for concurrent mutation.
type GenerationUUIDs struct {
	Current uint64
	Bitmap  uint64
	History [2]uint64
}

func (g GenerationUUIDs) String() string {
	return fmt.Sprintf("%016X:%016X:%016X:%016X", g.Current, g.Bitmap, g.History[0], g.History[1])
}

// WasPrimary reports bit 0 of the current UUID.
func (g GenerationUUIDs) WasPrimary() bool { return g.Current&uuidPrimaryBit != 0 }

// SetCurrent stores v as the current UUID with bit 0 set exactly when
// primary (the kernel's __drbd_uuid_set for UI_CURRENT).
func (g *GenerationUUIDs) SetCurrent(v uint64, primary bool) {
	if primary {
		v |= uuidPrimaryBit
	} else {
		v &^= uuidPrimaryBit
	}
	g.Current = v
}

// MoveHistory shifts the history: the older entry is dropped and the
// younger becomes the older (drbd_uuid_move_history).
func (g *GenerationUUIDs) MoveHistory() { g.History[1] = g.History[0] }

// NewCurrent starts a new data generation, as the kernel does when a
// Primary writes without its peer or is promoted while disconnected: the
// bitmap UUID takes the current one, and the current one becomes random
// (from r) with the "was Primary" bit per primary. Callers clear an old
// bitmap UUID first when they mean to (see NewCurrentUUIDCommand).
func (g *GenerationUUIDs) NewCurrent(r rand.Source, primary bool) {
	g.Bitmap = g.Current
	g.SetCurrent(r.Uint64(), primary)
}

// SetBitmap sets the bitmap UUID (drbd_uuid_set_bm). Clearing it (v == 0)
// pushes the old value into the history; setting it stores v without bit 0.
func (g *GenerationUUIDs) SetBitmap(v uint64) {
	if g.Bitmap == 0 && v == 0 {
		return
	}
	if v == 0 {
		g.MoveHistory()
		g.History[0] = g.Bitmap
		g.Bitmap = 0
		return
	}
	g.Bitmap = v &^ uuidPrimaryBit
}

// RotateBitmap replaces the bitmap UUID with v, remembering a non-zero old
// one in the history (drbd_uuid_set for UI_BITMAP).
func (g *GenerationUUIDs) RotateBitmap(v uint64) {
	if g.Bitmap != 0 {
		g.MoveHistory()
		g.History[0] = g.Bitmap
	}
	g.Bitmap = v
}

// NewSyncUUID starts a resync generation on the sync source
// (drbd_gen_and_send_sync_uuid): the bitmap UUID advances by
// UUIDNewBitmapOffset (or becomes random when it was unset or fresh), the
// old one goes to the history. It returns the value to send in
// P_SYNC_UUID.
func (g *GenerationUUIDs) NewSyncUUID(r rand.Source) uint64 {
	u := g.Bitmap
	if u != 0 && u != UUIDJustCreated {
		u += UUIDNewBitmapOffset
	} else {
		u = r.Uint64()
	}
	g.RotateBitmap(u)
	return u
}

// NewCurrentUUIDCommand is what "new-current-uuid" does to the UUIDs on a
// StandAlone node (drbd_adm_new_c_uuid): the bitmap UUID is rotated into
// the history, then a new current UUID starts and the old current becomes
// the bitmap UUID. Offline the node counts as Secondary (bit 0 clear).
func (g *GenerationUUIDs) NewCurrentUUIDCommand(r rand.Source) {
	g.RotateBitmap(0)
	g.NewCurrent(r, false)
}
