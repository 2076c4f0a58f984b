package metadata

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Activity log constants (drbd_int.h, drbd_limits.h).
const (
	// ALMagic starts every AL transaction block (DRBD_AL_MAGIC).
	ALMagic uint32 = 0x69cb65a2
	// ALTransactionSize is one transaction: one 4 KiB block.
	ALTransactionSize = 4096
	// ALUpdatesPerTransaction is the most slot changes one transaction
	// carries (AL_UPDATES_PER_TRANSACTION).
	ALUpdatesPerTransaction = 64
	// ALContextPerTransaction is how many slots of context one transaction
	// repeats: (4096 - 36 - 6*64) / 4.
	ALContextPerTransaction = 919
	// ALExtentShift: one AL extent covers 4 MiB of storage.
	ALExtentShift = 22
	// ALExtentBytes is the storage one extent covers.
	ALExtentBytes = 1 << ALExtentShift
	// BitsPerALExtent is the number of bitmap bits in one extent.
	BitsPerALExtent = ALExtentBytes / 4096
	// ALExtentsMin and ALExtentsMax bound the al-extents setting.
	ALExtentsMin = 67
	ALExtentsMax = 65534
	// ALExtentsDefault is DRBD 8.4's default al-extents.
	ALExtentsDefault = 1237
	// LCFree marks an empty slot (LC_FREE).
	LCFree uint32 = ^uint32(0)
	// noSlot marks an unused update entry.
	noSlot uint16 = 0xffff
)

// TransactionType is an AL transaction's type.
type TransactionType uint16

const (
	// TransactionUpdate records slot changes (AL_TR_UPDATE).
	TransactionUpdate TransactionType = 0
	// TransactionInitialized is written by drbdmeta to initialise the ring
	// (AL_TR_INITIALIZED); replay skips it.
	TransactionInitialized TransactionType = 0xffff
)

func (t TransactionType) String() string {
	switch t {
	case TransactionUpdate:
		return "update"
	case TransactionInitialized:
		return "initialized"
	}
	return fmt.Sprintf("TransactionType(%#04x)", uint16(t))
}

// SlotUpdate says that AL slot Slot now holds extent Extent (a plain value).
type SlotUpdate struct {
	Slot   uint16
	Extent uint32
}

// Transaction is al_transaction_on_disk, one 4 KiB block of the activity
// log ring, big-endian:
//
//	off   size        field
//	   0  u32         magic 0x69cb65a2
//	   4  u32         tr_number
//	   8  u32         crc32c of the block with this field zero
//	  12  u16         transaction_type (0 update, 0xffff initialized)
//	  14  u16         n_updates
//	  16  u16         context_size (al-extents)
//	  18  u16         context_start_slot_nr
//	  20  u32 x 4     reserved
//	  36  u16 x 64    update_slot_nr    (unused: 0xffff)
//	 164  u32 x 64    update_extent_nr  (unused: 0xffffffff)
//	 420  u32 x 919   context: extent of slots start .. start+918
//	4096
//
// A transaction applies its context first (slot start+i holds context[i],
// except LC_FREE entries past context_size), then its updates.
//
// A Transaction is a plain value, not safe for concurrent mutation.
type Transaction struct {
	Number       uint32
	Type         TransactionType
	Updates      []SlotUpdate
	ContextSize  uint16
	ContextStart uint16
	// Context holds ALContextPerTransaction entries (fewer are padded with
	// LCFree when encoding).
	Context []uint32

	// stray holds update entries past n_updates whose slot is not 0xffff.
	// The kernel never writes them, but drbdmeta's replay applies them, so
	// ours does too.
	stray []SlotUpdate
}

var (
	// ErrALMagic is wrapped when a block does not start with ALMagic.
	ErrALMagic = errors.New("metadata: not an activity log transaction (bad magic)")
	// ErrALChecksum is wrapped when a transaction's crc32c does not match
	// (a torn or corrupt block).
	ErrALChecksum = errors.New("metadata: activity log transaction checksum mismatch")
	// ErrALTransaction is wrapped for transactions that are well-formed
	// blocks but carry impossible values.
	ErrALTransaction = errors.New("metadata: invalid activity log transaction")
)

// blockError is DecodeTransaction's error for a block that is no
// transaction: a bad magic or checksum. It is formatted only when printed,
// not when made: ReplayAL drops one for every unused or torn ring block,
// and formatting the computed checksum made the fuzzer's coverage of each
// rejected block depend on a hash of all its 4096 bytes (the digits fmt
// prints), so that no shorter input kept it and minimizing one never ended.
type blockError struct {
	err              error  // ErrALMagic or ErrALChecksum
	stored, computed uint32 // the magic, or the checksum and what it should be
}

func (e *blockError) Error() string {
	if e.err == ErrALMagic {
		return fmt.Sprintf("metadata: AL block magic %#08x: %v", e.stored, e.err)
	}
	return fmt.Sprintf("metadata: AL block crc32c %#08x, computed %#08x: %v", e.stored, e.computed, e.err)
}

func (e *blockError) Unwrap() error { return e.err }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// alCRC is the kernel's crc32c(0, buf, 4096): CRC-32C with seed 0 and no
// final inversion. Go's crc32.Update inverts on entry and exit, so
// undo both.
func alCRC(b []byte) uint32 { return ^crc32.Update(0xffffffff, castagnoli, b) }

// Encode writes the transaction block into dst (4096 bytes), computing the
// checksum.
func (t *Transaction) Encode(dst []byte) error {
	if len(t.Updates) > ALUpdatesPerTransaction {
		return fmt.Errorf("metadata: %d updates in one transaction (max %d): %w", len(t.Updates), ALUpdatesPerTransaction, ErrALTransaction)
	}
	if len(t.Context) > ALContextPerTransaction {
		return fmt.Errorf("metadata: %d context entries (max %d): %w", len(t.Context), ALContextPerTransaction, ErrALTransaction)
	}
	b := dst[:ALTransactionSize]
	clear(b)
	be := binary.BigEndian
	be.PutUint32(b[0:], ALMagic)
	be.PutUint32(b[4:], t.Number)
	be.PutUint16(b[12:], uint16(t.Type))
	be.PutUint16(b[14:], uint16(len(t.Updates)))
	be.PutUint16(b[16:], t.ContextSize)
	be.PutUint16(b[18:], t.ContextStart)
	if t.Type != TransactionInitialized {
		for i := range ALUpdatesPerTransaction {
			slot, ext := noSlot, LCFree
			if i < len(t.Updates) {
				slot, ext = t.Updates[i].Slot, t.Updates[i].Extent
			}
			be.PutUint16(b[36+2*i:], slot)
			be.PutUint32(b[164+4*i:], ext)
		}
		for i := range ALContextPerTransaction {
			ext := LCFree
			if i < len(t.Context) {
				ext = t.Context[i]
			}
			be.PutUint32(b[420+4*i:], ext)
		}
	}
	be.PutUint32(b[8:], alCRC(b))
	return nil
}

// DecodeTransaction parses one ring block. A bad magic or a checksum
// mismatch is an error (the block is then ignored on replay); everything
// else is taken as written, exactly as drbdmeta reads it (n_updates above
// 64 just means all 64 entries).
func DecodeTransaction(b []byte) (Transaction, error) {
	var t Transaction
	if len(b) < ALTransactionSize {
		return t, fmt.Errorf("metadata: AL block of %d bytes: %w", len(b), ErrALTransaction)
	}
	b = b[:ALTransactionSize]
	be := binary.BigEndian
	if m := be.Uint32(b[0:]); m != ALMagic {
		return t, &blockError{err: ErrALMagic, stored: m}
	}
	want := be.Uint32(b[8:])
	// The checksum covers the block with its own field zeroed.
	var zero [4]byte
	c := crc32.Update(0xffffffff, castagnoli, b[:8])
	c = crc32.Update(c, castagnoli, zero[:])
	c = crc32.Update(c, castagnoli, b[12:])
	if got := ^c; got != want {
		return t, &blockError{err: ErrALChecksum, stored: want, computed: got}
	}
	t.Number = be.Uint32(b[4:])
	t.Type = TransactionType(be.Uint16(b[12:]))
	n := int(be.Uint16(b[14:]))
	t.ContextSize = be.Uint16(b[16:])
	t.ContextStart = be.Uint16(b[18:])
	if t.Type == TransactionInitialized {
		return t, nil
	}
	n = min(n, ALUpdatesPerTransaction)
	t.Updates = make([]SlotUpdate, 0, n)
	for i := range ALUpdatesPerTransaction {
		u := SlotUpdate{Slot: be.Uint16(b[36+2*i:]), Extent: be.Uint32(b[164+4*i:])}
		switch {
		case i < n:
			t.Updates = append(t.Updates, u)
		case u.Slot != noSlot:
			t.stray = append(t.stray, u)
		}
	}
	t.Context = make([]uint32, ALContextPerTransaction)
	for i := range t.Context {
		t.Context[i] = be.Uint32(b[420+4*i:])
	}
	return t, nil
}

// InitializedBlock returns the block drbdmeta writes into every ring slot
// when it initialises the activity log: magic, type 0xffff, all else zero
// (tr_number 0), and the checksum.
func InitializedBlock() []byte {
	b := make([]byte, ALTransactionSize)
	binary.BigEndian.PutUint32(b[0:], ALMagic)
	binary.BigEndian.PutUint16(b[12:], uint16(TransactionInitialized))
	binary.BigEndian.PutUint32(b[8:], alCRC(b))
	return b
}
