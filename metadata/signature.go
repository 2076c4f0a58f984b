package metadata

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/gdrbd/gdrbd/blockdev"
)

// signatureProbeBytes is how much of a device drbdmeta inspects for
// existing data (reiserfs keeps its superblock at 64 KiB).
const signatureProbeBytes = 68 << 10

// ExistingData is what create-md finds at the start of the device that
// will hold the metadata, as drbdmeta's check_for_existing_data sees it.
// A plain value.
type ExistingData struct {
	// Found is false when the first 68 KiB are all zero.
	Found bool
	// Type is "ext3 filesystem", "xfs filesystem", ..., or "some data".
	Type string
	// Bytes is the size the data claims (a file system's size), 0 unknown.
	Bytes uint64
	// Refuse: the data must never be overwritten (swap space), or its
	// size cannot be determined (an LVM physical volume).
	Refuse bool
	// sizeUnknown: Refuse because the size could not be determined.
	sizeUnknown bool
}

// CheckExistingData reads the start of dev and recognises what drbdmeta
// recognises: swap, LVM2 physical volumes, ext2/3/4, XFS, JFS, ReiserFS.
func CheckExistingData(dev blockdev.Device) (ExistingData, error) {
	n := min(signatureProbeBytes, dev.Size())
	d, err := readAt(dev, int(n), 0)
	if err != nil {
		return ExistingData{}, err
	}
	if len(d) < signatureProbeBytes {
		d = append(d, make([]byte, signatureProbeBytes-len(d))...)
	}
	if bytes.Count(d, []byte{0}) == len(d) {
		return ExistingData{}, nil
	}
	e := ExistingData{Found: true, Type: "some data"}
	le, be := binary.LittleEndian, binary.BigEndian
	at := func(off int, s string) bool { return string(d[off:off+len(s)]) == s }
	switch {
	case at(4096-10, "SWAP-SPACE") || at(4096-10, "SWAPSPACE2") || at(8192-10, "SWAP-SPACE") || at(8192-10, "SWAPSPACE2"):
		e.Type, e.Refuse = "swap space signature", true
	case at(0x218, "LVM2"):
		// drbdmeta asks pvs for the size; gdrbd does not run LVM tools, so
		// the size stays unknown and the answer is no, as drbdmeta's when
		// pvs fails.
		e.Type, e.Refuse, e.sizeUnknown = "LVM2 physical volume signature", true, true
	case le.Uint16(d[0x438:]) == 0xEF53:
		e.Type = "ext2 filesystem"
		if d[0x45c]&4 != 0 { // has_journal
			e.Type = "ext3 filesystem"
		}
		bsize := uint64(4096)
		switch le.Uint32(d[0x418:]) {
		case 0:
			bsize = 1024
		case 1:
			bsize = 2048
		}
		e.Bytes = uint64(le.Uint32(d[0x404:])) * bsize
	case be.Uint32(d[0:]) == 0x58465342:
		e.Type = "xfs filesystem"
		e.Bytes = uint64(be.Uint32(d[4:])) * be.Uint64(d[8:])
	case at(0x8000, "JFS1"):
		e.Type = "JFS filesystem"
		e.Bytes = le.Uint64(d[0x8008:]) * uint64(le.Uint32(d[0x8018:]))
	case at(0x10034, "ReIsErFs") || at(0x10034, "ReIsEr2Fs"):
		e.Type = "reiser filesystem"
		e.Bytes = uint64(le.Uint32(d[0x10000:])) * uint64(le.Uint16(d[0x1002c:]))
	}
	return e, nil
}

// Report is drbdmeta's explanation of what it found (for stdout), and
// whether create-md must refuse outright (exit code 40) rather than ask
// "Do you want to proceed?".
func (e ExistingData) Report(l Layout) (text string, refuse bool) {
	if !e.Found {
		return "", false
	}
	var b strings.Builder
	fmt.Fprintf(&b, "md_offset %d\nal_offset %d\nbm_offset %d\n", l.MDOffset, l.ALByteOffset(), l.BMByteOffset())
	fmt.Fprintf(&b, "\nFound %s\n", e.Type)
	const refusal = "If you want me to do this, you need to zero out the first part\n" +
		"of the device (destroy the content).\n" +
		"You should be very sure that you mean it.\n" +
		"Operation refused.\n\n"
	known := e.Bytes != 0 || e.Refuse
	if !known {
		b.WriteString("\n ==> This might destroy existing data! <==\n")
		return b.String(), false
	}
	if l.Location.Kind != KindInternal {
		b.WriteString("\nThis would corrupt existing data.\n" + refusal)
		return b.String(), true
	}
	fsKB := (e.Bytes + 1023) >> 10
	if !e.Refuse {
		fmt.Fprintf(&b, "%12d kB data area apparently used\n", fsKB)
	}
	maxKB := l.MaxUsableSectors() >> 1
	fmt.Fprintf(&b, "%12d kB left usable by current configuration\n", maxKB)
	if e.sizeUnknown {
		b.WriteString("Could not determine the size of the actually used data area.\n\n")
	}
	if e.Refuse {
		b.WriteString("Device size would be truncated, which\n" +
			"would corrupt data and result in\n" +
			"'access beyond end of device' errors.\n" + refusal)
		return b.String(), true
	}
	if fsKB > maxKB {
		b.WriteString("\nDevice size would be truncated, which\n" +
			"would corrupt data and result in\n" +
			"'access beyond end of device' errors.\n" +
			"You need to either\n" +
			"   * use external meta data (recommended)\n" +
			"   * shrink that filesystem first\n" +
			"   * zero out the device (destroy the filesystem)\n" +
			"Operation refused.\n\n")
		return b.String(), true
	}
	b.WriteString("\nEven though it looks like this would place the new meta data into\n" +
		"unused space, you still need to confirm, as this is only a guess.\n")
	return b.String(), false
}
