package metadata

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Magic identifies the metadata format and state in the superblock.
type Magic uint32

// Superblock magics (DRBD_MAGIC 0x83740267 plus a format number).
const (
	MagicV07 Magic = 0x83740267 + 3
	// MagicV08 is clean v08 metadata: the activity log has been applied.
	MagicV08 Magic = 0x83740267 + 4
	// MagicV08Unclean (DRBD_MD_MAGIC_84_UNCLEAN) is written by DRBD 8.4
	// while attached; seeing it later means the activity log still needs
	// to be applied ("drbdadm apply-al").
	MagicV08Unclean Magic = 0x83740267 + 5
	// MagicV09 is DRBD 9 metadata, which gdrbd does not speak.
	MagicV09 Magic = 0x83740267 + 6
)

func (m Magic) String() string {
	switch m {
	case MagicV07:
		return "v07"
	case MagicV08:
		return "v08"
	case MagicV08Unclean:
		return "v08-unclean"
	case MagicV09:
		return "v09"
	}
	return fmt.Sprintf("Magic(%#08x)", uint32(m))
}

// Flags are the MDF_* superblock flags.
type Flags uint32

// Superblock flags (drbd_int.h MDF_*).
const (
	FlagConsistent     Flags = 1 << iota // data consistent (not mid-resync)
	FlagPrimaryInd                       // was Primary (AL must be applied after a crash)
	FlagConnectedInd                     // was connected
	FlagFullSync                         // setting all bits was in progress
	FlagWasUpToDate                      // data was UpToDate
	FlagPeerOutDated                     // the peer's disk was Outdated or Inconsistent
	FlagCrashedPrimary                   // crashed while Primary, peer not seen since
	FlagALClean                          // the activity log is applied
	FlagALDisabled                       // the activity log is not to be trusted
)

var flagNames = []string{
	"consistent", "primary-ind", "connected-ind", "full-sync", "was-up-to-date",
	"peer-out-dated", "crashed-primary", "al-clean", "al-disabled",
}

func (f Flags) String() string {
	if f == 0 {
		return "none"
	}
	var parts []string
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	if rest := f &^ (1<<len(flagNames) - 1); rest != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint32(rest)))
	}
	return strings.Join(parts, "|")
}

// Superblock is md_on_disk_08, the 4 KiB block that describes a volume's
// metadata. All fields are big-endian on disk:
//
//	off  size  field
//	  0  u64   la_size_sect        last agreed device size, sectors
//	  8  u64   uuid[0] current     generation UUIDs
//	 16  u64   uuid[1] bitmap
//	 24  u64   uuid[2] history[0]
//	 32  u64   uuid[3] history[1]
//	 40  u64   device_uuid
//	 48  u64   reserved
//	 56  u32   flags               MDF_*
//	 60  u32   magic
//	 64  u32   md_size_sect
//	 68  s32   al_offset           sectors from the superblock
//	 72  u32   al_nr_extents       al-extents when last attached
//	 76  s32   bm_offset           sectors from the superblock
//	 80  u32   bm_bytes_per_bit    4096
//	 84  u32   la_peer_max_bio_size
//	 88  u32   al_stripes          0 and 0 on disk mean 1 x 8 (32 KiB)
//	 92  u32   al_stripe_size_4k
//	 96  ...   zero up to 4096
//
// Superblock is a plain value, not safe for concurrent mutation.
type Superblock struct {
	LaSizeSect       uint64
	UUIDs            GenerationUUIDs
	DeviceUUID       uint64
	Flags            Flags
	Magic            Magic
	MDSizeSect       uint32
	ALOffset         int32
	ALNrExtents      uint32
	BMOffset         int32
	BMBytesPerBit    uint32
	LaPeerMaxBioSize uint32
	ALStripes        uint32
	ALStripeSize4k   uint32
}

var (
	// ErrNoMetadata is wrapped when no DRBD metadata is where it should be.
	ErrNoMetadata = errors.New("metadata: no valid meta data found")
	// ErrV09 is wrapped when the superblock is DRBD 9 metadata.
	ErrV09 = errors.New("metadata: DRBD 9 (v09) meta data found; gdrbd reads DRBD 8.4 (v08) meta data only: convert it with DRBD 9's drbdadm, or create-md anew")
	// ErrUnclean is wrapped when attaching metadata whose activity log has
	// not been applied.
	ErrUnclean = errors.New(`metadata: found unclean meta data. Did you "drbdadm apply-al"?`)
)

// InvalidError says which superblock field is wrong and what was expected
// (a plain value).
type InvalidError struct {
	Field     string
	Got, Want int64
	Hint      string
}

func (e *InvalidError) Error() string {
	s := fmt.Sprintf("metadata: invalid superblock: %s is %d, expected %d", e.Field, e.Got, e.Want)
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

// Is makes errors.Is(err, ErrNoMetadata) true: a superblock that does not
// fit its location is no usable metadata (drbdmeta says "No valid meta
// data found" for both).
func (e *InvalidError) Is(target error) bool { return target == ErrNoMetadata }

// Encode writes the on-disk form into dst (SuperblockSize bytes), zeroing
// the reserved space.
func (s *Superblock) Encode(dst []byte) {
	b := dst[:SuperblockSize]
	clear(b)
	be := binary.BigEndian
	be.PutUint64(b[0:], s.LaSizeSect)
	be.PutUint64(b[8:], s.UUIDs.Current)
	be.PutUint64(b[16:], s.UUIDs.Bitmap)
	be.PutUint64(b[24:], s.UUIDs.History[0])
	be.PutUint64(b[32:], s.UUIDs.History[1])
	be.PutUint64(b[40:], s.DeviceUUID)
	be.PutUint32(b[56:], uint32(s.Flags))
	be.PutUint32(b[60:], uint32(s.Magic))
	be.PutUint32(b[64:], s.MDSizeSect)
	be.PutUint32(b[68:], uint32(s.ALOffset))
	be.PutUint32(b[72:], s.ALNrExtents)
	be.PutUint32(b[76:], uint32(s.BMOffset))
	be.PutUint32(b[80:], s.BMBytesPerBit)
	be.PutUint32(b[84:], s.LaPeerMaxBioSize)
	be.PutUint32(b[88:], s.ALStripes)
	be.PutUint32(b[92:], s.ALStripeSize4k)
}

// MarshalBinary returns the 4 KiB on-disk form.
func (s *Superblock) MarshalBinary() ([]byte, error) {
	b := make([]byte, SuperblockSize)
	s.Encode(b)
	return b, nil
}

// DecodeSuperblock parses and checks an on-disk superblock: the magic
// must be v08 (clean or unclean) and the self-describing fields
// plausible. Whether it fits a location is Layout's business (see Open).
func DecodeSuperblock(b []byte) (Superblock, error) {
	var s Superblock
	if len(b) < SuperblockSize {
		return s, fmt.Errorf("metadata: superblock of %d bytes, want %d: %w", len(b), SuperblockSize, ErrNoMetadata)
	}
	be := binary.BigEndian
	s.LaSizeSect = be.Uint64(b[0:])
	s.UUIDs.Current = be.Uint64(b[8:])
	s.UUIDs.Bitmap = be.Uint64(b[16:])
	s.UUIDs.History[0] = be.Uint64(b[24:])
	s.UUIDs.History[1] = be.Uint64(b[32:])
	s.DeviceUUID = be.Uint64(b[40:])
	s.Flags = Flags(be.Uint32(b[56:]))
	s.Magic = Magic(be.Uint32(b[60:]))
	s.MDSizeSect = be.Uint32(b[64:])
	s.ALOffset = int32(be.Uint32(b[68:]))
	s.ALNrExtents = be.Uint32(b[72:])
	s.BMOffset = int32(be.Uint32(b[76:]))
	s.BMBytesPerBit = be.Uint32(b[80:])
	s.LaPeerMaxBioSize = be.Uint32(b[84:])
	s.ALStripes = be.Uint32(b[88:])
	s.ALStripeSize4k = be.Uint32(b[92:])
	switch s.Magic {
	case MagicV08, MagicV08Unclean:
	case MagicV09:
		return s, ErrV09
	case MagicV07:
		return s, fmt.Errorf("metadata: DRBD 0.7 meta data found; convert it with drbdmeta create-md: %w", ErrNoMetadata)
	default:
		return s, fmt.Errorf("metadata: v08 magic number not found (%#08x): %w", uint32(s.Magic), ErrNoMetadata)
	}
	// Both zero: written before striping existed, the fixed 32 KiB log.
	if s.ALStripes == 0 && s.ALStripeSize4k == 0 {
		s.ALStripes, s.ALStripeSize4k = DefaultALStripes, DefaultALStripeSize4k
	}
	return s, s.Validate()
}

// Validate checks the fields a superblock must satisfy wherever it lives.
func (s *Superblock) Validate() error {
	if s.Magic != MagicV08 && s.Magic != MagicV08Unclean {
		return fmt.Errorf("metadata: superblock magic %v: %w", s.Magic, ErrNoMetadata)
	}
	if s.BMBytesPerBit != 4096 {
		return &InvalidError{Field: "bm_bytes_per_bit", Got: int64(s.BMBytesPerBit), Want: 4096}
	}
	n := uint64(s.ALStripes) * uint64(s.ALStripeSize4k)
	if s.ALStripes == 0 || s.ALStripeSize4k == 0 || n < 8 || n > 16<<20/4 {
		return &InvalidError{Field: "al_stripes*al_stripe_size_4k", Got: int64(n), Want: 8,
			Hint: "the activity log must be 8 .. 4194304 blocks of 4 KiB"}
	}
	if s.ALOffset < 0 {
		if s.BMOffset > s.ALOffset {
			return &InvalidError{Field: "bm_offset", Got: int64(s.BMOffset), Want: int64(s.ALOffset), Hint: "internal bitmap must lie below the activity log"}
		}
		if -int64(s.ALOffset) != int64(n)*8 {
			return &InvalidError{Field: "al_offset", Got: int64(s.ALOffset), Want: -int64(n) * 8}
		}
	}
	if s.BMOffset%8 != 0 {
		return &InvalidError{Field: "bm_offset", Got: int64(s.BMOffset), Want: int64(s.BMOffset) &^ 7, Hint: "must be 4 KiB aligned"}
	}
	return nil
}

// Clean reports whether the activity log has been applied: the clean v08
// magic and the AL-clean flag (the kernel refuses to attach otherwise).
func (s *Superblock) Clean() bool {
	return s.Magic == MagicV08 && s.Flags&FlagALClean != 0
}
