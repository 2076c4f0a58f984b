package metadata

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"strings"
	"time"
)

// This file prints what drbdmeta prints, byte for byte: dump-md, get-gi,
// show-gi (drbd-utils user/shared/drbdmeta.c and shared_tool.c).

// DumpHeader is the comment block dump-md starts with: the time, the host
// and the drbdmeta command line that produced the dump. drbdadm runs
// "drbdmeta MINOR v08 DEV LOCATION dump-md", so that is what gdrbd puts
// there too.
func DumpHeader(now time.Time, host string, argv []string) string {
	return fmt.Sprintf("# DRBD meta data dump\n# %s [%d]\n# %s> %s\n#\n\n",
		now.Format("2006-01-02 15:04:05 -0700"), now.Unix(), host, strings.Join(argv, " "))
}

// UncleanMessage is what dump-md says on stderr for unclean metadata (it
// then refuses unless forced).
const UncleanMessage = `Found meta data is "unclean", please apply-al first`

// ClippedMessage is printed (on stdout, before anything else) when the
// stored la-size-sect exceeds what the layout can hold.
func (m *Metadata) ClippedMessage() string {
	if m.ClippedFrom == 0 {
		return ""
	}
	return fmt.Sprintf("# la-size-sect was too big (%d), truncated (%d)!\n", m.ClippedFrom, m.SB.LaSizeSect)
}

// Dump writes drbdmeta's dump-md text after header (see DumpHeader):
// offsets, UUIDs, sizes and the run-length printed bitmap, read raw from
// disk. Unclean metadata gets drbdmeta's poison line, so that restore-md
// refuses the dump.
//
// NB: the uuid block prints "flags 0x00000000" whatever the superblock
// holds. drbdmeta's v08 dump prints the flags of its in-memory peer slot 0
// (md.peers[0].flags), a DRBD 9 field that the v08 reader
// (md_disk_08_to_cpu) never fills; the real v08 flags are in md.flags.
// The kernel-written superblock in the reference data holds 0x13 at offset
// 56 and its dump still says 0x00000000. We print the same, for byte
// equality; show-gi and get-gi show the real flags.
func (m *Metadata) Dump(w io.Writer, header string) error {
	bw := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(bw, format, a...) }
	p("%s", header)
	p("version \"v08\";\n\n")
	if !m.SB.Clean() {
		p("This_is_an_unclean_meta_data_dump._Don't_trust_the_bitmap.\n" +
			"# You should \"apply-al\" first, if you plan to restore this.\n\n")
	}
	l := m.Layout
	p("# md_size_sect %d\n", m.SB.MDSizeSect)
	p("# md_offset %d\n", l.MDOffset)
	p("# al_offset %d\n", l.ALByteOffset())
	p("# bm_offset %d\n", l.BMByteOffset())
	p("\n")
	u := m.SB.UUIDs
	p("uuid {\n")
	p("    0x%016X; 0x%016X; 0x%016X; 0x%016X;\n", u.Current, u.Bitmap, u.History[0], u.History[1])
	p("    flags 0x%08X;\n", 0)
	p("}\n")
	p("# al-extents %d;\n", m.SB.ALNrExtents)
	p("la-size-sect %d;\n", m.SB.LaSizeSect)
	p("bm-byte-per-bit %d;\n", m.SB.BMBytesPerBit)
	p("device-uuid 0x%016X;\n", m.SB.DeviceUUID)
	p("la-peer-max-bio-size %d;\n", int32(m.SB.LaPeerMaxBioSize))
	p("al-stripes %d;\n", m.SB.ALStripes)
	p("al-stripe-size-4k %d;\n", m.SB.ALStripeSize4k)
	p("# bm-bytes %d;\n", m.BitmapBytes())
	p("bm ")
	set, err := dumpBitmap(bw, m, m.BitmapBytes()/4)
	if err != nil {
		return err
	}
	p("# bits-set %d;\n", set)
	return bw.Flush()
}

// dumpChunkWords is drbdmeta's read buffer (32 MiB) in 32-bit words; the
// run detection restarts at its boundaries, so the output depends on it.
const dumpChunkWords = 32 << 20 / 4

// dumpBitmap is drbdmeta's fprintf_bm for one peer: 32-bit little-endian
// words, printed as 64-bit values four to a line (the high word second),
// with a "# at NkB" comment every 64 words, and runs of at least 16 equal
// 32-bit words starting at a line start printed as "N times 0x...;".
func dumpBitmap(w *bufio.Writer, m *Metadata, n int64) (uint64, error) {
	var buf []uint32
	var chunkOff int64
	load := func(fromWord int64) error {
		words := min(n-fromWord, dumpChunkWords)
		raw, err := readAt(m.dev, int(words*4), m.Layout.BMByteOffset()+chunkOff)
		if err != nil {
			return err
		}
		chunkOff += words * 4
		buf = buf[:0]
		for i := int64(0); i < words; i++ {
			buf = append(buf, binary.LittleEndian.Uint32(raw[i*4:]))
		}
		return nil
	}
	eol := func(r int64) {
		if r&63 == 0 {
			fmt.Fprintf(w, "\n   # at %dkB\n   ", 128*r)
		} else {
			w.WriteString("\n   ")
		}
	}
	var (
		i, r    int64
		count   int64
		cw, lw  uint32
		bitsSet uint64
	)
	w.WriteString("{")
	if r < n {
		if err := load(r); err != nil {
			return 0, err
		}
	}
outer:
	for r < n {
		if i >= dumpChunkWords {
			i -= dumpChunkWords
			if err := load(r); err != nil {
				return 0, err
			}
		}
		nb := int64(len(buf))
		for { // drbdmeta's "next:" label
			if count == 0 {
				cw = buf[i]
			}
			if i%8 != 0 {
				break
			}
			if count == 0 {
				eol(r)
			}
			j := i
			for j < nb && buf[j] == cw {
				j++
			}
			if tmp := (j - i) / 8 * 8; tmp > 8 {
				count += tmp
				r += tmp
				i += tmp
				if j >= nb && r < n {
					continue outer
				}
			}
			if count == 0 {
				break
			}
			fmt.Fprintf(w, " %d times 0x%08X%08X;", count/2, cw, cw)
			bitsSet += uint64(count) * uint64(bits.OnesCount32(cw))
			count = 0
			if r >= n {
				break outer
			}
		}
		if i&1 == 0 {
			lw = buf[i]
		} else {
			fmt.Fprintf(w, " 0x%08X%08X;", buf[i], lw)
		}
		bitsSet += uint64(bits.OnesCount32(buf[i]))
		r++
		i++
	}
	w.WriteString("\n}\n")
	return bitsSet, nil
}

// GI is get-gi's line: the four UUIDs and seven flag bits.
func (m *Metadata) GI() string {
	u, f := m.SB.UUIDs, m.SB.Flags
	b := func(x Flags) int {
		if f&x != 0 {
			return 1
		}
		return 0
	}
	return fmt.Sprintf("%016X:%016X:%016X:%016X:%d:%d:%d:%d:%d:%d:%d\n",
		u.Current, u.Bitmap, u.History[0], u.History[1],
		b(FlagConsistent), b(FlagWasUpToDate), b(FlagPrimaryInd), b(FlagConnectedInd),
		b(FlagFullSync), b(FlagPeerOutDated), b(FlagCrashedPrimary))
}

// ShowGI is show-gi's annotated output.
func (m *Metadata) ShowGI() string {
	var sb strings.Builder
	sb.WriteString("\n" +
		"       +--<  Current data generation UUID  >-\n" +
		"       |               +--<  Bitmap's base data generation UUID  >-\n" +
		"       |               |                 +--<  younger history UUID  >-\n" +
		"       |               |                 |         +-<  older history  >-\n" +
		"       V               V                 V         V\n")
	sb.WriteString(m.GI())
	sb.WriteString("" +
		"                                                                    ^ ^ ^ ^ ^ ^ ^\n" +
		"                                      -<  Data consistency flag  >--+ | | | | | |\n" +
		"                             -<  Data was/is currently up-to-date  >--+ | | | | |\n" +
		"                                  -<  Node was/is currently primary  >--+ | | | |\n" +
		"                                  -<  Node was/is currently connected  >--+ | | |\n" +
		"         -<  Node was in the progress of setting all bits in the bitmap  >--+ | |\n" +
		"                        -<  The peer's disk was out-dated or inconsistent  >--+ |\n" +
		"      -<  This node was a crashed primary, and has not seen its peer since   >--+\n" +
		"\n")
	f := m.SB.Flags
	pick := func(x Flags, yes, no string) string {
		if f&x != 0 {
			return yes
		}
		return no
	}
	state := "Inconsistent"
	if f&FlagConsistent != 0 {
		state = pick(FlagWasUpToDate, "UpToDate", "Outdated")
	}
	fmt.Fprintf(&sb, "flags:%s %s, %s, %s%s%s\n",
		pick(FlagCrashedPrimary, " crashed", ""),
		pick(FlagPrimaryInd, "Primary", "Secondary"),
		pick(FlagConnectedInd, "Connected", "StandAlone"),
		state,
		pick(FlagFullSync, ", need full sync", ""),
		pick(FlagPeerOutDated, ", peer Outdated", ""))
	fmt.Fprintf(&sb, "meta-data: %s\n", pick(FlagALClean, "clean", "need apply-al"))
	if la := m.SB.LaSizeSect; la != 0 {
		fmt.Fprintf(&sb, "last agreed size: %s (%d sectors)\n", PPSize(la>>1), la)
		fmt.Fprintf(&sb, "last agreed max bio size: %d Byte\n", m.SB.LaPeerMaxBioSize)
	} else {
		sb.WriteString("zero size device -- never seen peer yet?\n")
	}
	return sb.String()
}

// PPSize formats a size given in KiB as drbd-utils' ppsize does ("600 MB",
// "2048 KB": scaled by 1024 while at least 10000, rounding half up).
func PPSize(kb uint64) string {
	units := []byte{'K', 'M', 'G', 'T', 'P', 'E'}
	base := 0
	for kb >= 10000 && base < len(units)-1 {
		r := uint64(0)
		if kb&(1<<9) != 0 {
			r = 1
		}
		kb = kb>>10 + r
		base++
	}
	return fmt.Sprintf("%d %cB", uint32(kb), units[base])
}
