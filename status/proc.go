package status

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/gdrbd/gdrbd/replication"
)

// VersionLine is the first line of /proc/drbd for the DRBD release gdrbd
// speaks (8.4.11, genetlink API 1, wire protocols 86..101).
const VersionLine = "version: 8.4.11 (api:1/proto:86-101)"

// buildTag is the second line, where the kernel prints its build tag; an
// in-tree (non-module) DRBD prints "built-in", and gdrbd is not a module
// either.
const buildTag = "built-in"

// stalledAfterSec is when the kernel calls a resync stalled: no progress
// measured over a mark window older than this.
const stalledAfterSec = 180

// WriteProc prints the volumes as DRBD 8.4's /proc/drbd does
// (drbd_proc.c), ordered by minor:
//
//	version: 8.4.11 (api:1/proto:86-101)
//	built-in
//	 0: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----
//	    ns:180441216 nr:0 dw:0 dr:180441216 al:16 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:794704668
//		[==>.................] sync'ed: 18.6% (776076/952288)M
//		finish: 5:27:02 speed: 40,480 (39,870) K/sec
//
// A gap in the minor numbers is marked with an empty line, as the kernel
// does.
func WriteProc(w io.Writer, vols []Volume) error {
	vols = append([]Volume(nil), vols...)
	sort.SliceStable(vols, func(i, j int) bool { return vols[i].Minor < vols[j].Minor })
	var b strings.Builder
	b.WriteString(VersionLine + "\n" + buildTag + "\n")
	prev := -1
	for i := range vols {
		v := &vols[i]
		if prev != v.Minor-1 {
			b.WriteString("\n")
		}
		prev = v.Minor
		b.WriteString(ProcDevice(v))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ProcDevice is one minor's block of /proc/drbd: the state line, the
// counters, and while a resync or verify runs its two progress lines.
func ProcDevice(v *Volume) string {
	s := v.State
	if s.Conn == replication.StandAlone && s.Disk == replication.Diskless && s.Role == replication.RoleSecondary {
		return fmt.Sprintf("%2d: cs:Unconfigured\n", v.Minor)
	}
	// No net configuration (StandAlone) prints a blank protocol letter.
	proto := " "
	if s.Conn != replication.StandAlone && v.Protocol != 0 {
		proto = v.Protocol.String()
	}
	wo := v.WriteOrdering
	if wo == 0 {
		wo = 'f'
	}
	st := v.Stats
	out := fmt.Sprintf("%2d: cs:%s ro:%s/%s ds:%s/%s %s %s\n"+
		"    ns:%d nr:%d dw:%d dr:%d al:%d bm:%d lo:%d pe:%d ua:%d ap:%d ep:%d wo:%c oos:%d\n",
		v.Minor, s.Conn, s.Role, s.Peer, s.Disk, s.PDsk, proto, s.Flags(),
		uint32(st.NS), uint32(st.NR), uint32(st.DW), uint32(st.DR), uint32(st.AL), uint32(st.BM),
		st.LO, st.PE, st.UA, st.AP, st.EP, wo, st.OOS)
	switch s.Conn {
	case replication.SyncSource, replication.SyncTarget, replication.VerifyS, replication.VerifyT:
		out += SyncProgressLines(v)
	}
	return out
}

// Progress is the resync arithmetic of drbd_proc.c, in bitmap bits
// (4 KiB) as the kernel counts.
type Progress struct {
	PerMil     uint64 // done, in tenths of a percent
	TotalBits  uint64
	LeftBits   uint64
	FinishSec  uint64 // estimated seconds to go, from the recent speed
	RecentKiBs uint64 // speed over the mark window, KiB/s
	AvgKiBs    uint64 // speed since the resync started, KiB/s
	Stalled    bool   // the mark window is older than 180 s
}

// ComputeProgress does the kernel's progress arithmetic for v.
func ComputeProgress(v *Volume) Progress {
	p := v.Progress
	var r Progress
	r.TotalBits = p.TotalKiB / 4
	r.LeftBits = p.LeftKiB / 4
	if r.LeftBits > r.TotalBits {
		// A race between the state change and the reset of the total,
		// the kernel says; show it as not started (or done if empty).
		r.LeftBits = r.TotalBits
		if r.TotalBits == 0 {
			r.PerMil = 1000
		}
	} else {
		shift := uint(10)
		if r.TotalBits > 1<<32-1 {
			shift = 16
		}
		left := r.LeftBits >> shift
		total := 1 + r.TotalBits>>shift
		r.PerMil = 1000 - left*1000/total
	}

	// Recent speed: progress since the rolling mark.
	markLeft := r.TotalBits
	markMs := int64(0)
	if v.Mark != (SyncMark{}) {
		markLeft = v.Mark.LeftKiB / 4
		markMs = v.Mark.ElapsedMs
	}
	dt := uint64(0)
	if p.ElapsedMs > markMs {
		dt = uint64(p.ElapsedMs-markMs) / 1000
	}
	if dt > stalledAfterSec {
		r.Stalled = true
	}
	if dt == 0 {
		dt = 1
	}
	db := uint64(0)
	if markLeft > r.LeftBits {
		db = markLeft - r.LeftBits
	}
	r.FinishSec = dt * (r.LeftBits / (db/100 + 1)) / 100
	r.RecentKiBs = db / dt * 4

	// Long-term average since the resync started.
	dt = 0
	if p.ElapsedMs > 0 {
		dt = uint64(p.ElapsedMs) / 1000
	}
	if dt == 0 {
		dt = 1
	}
	r.AvgKiBs = (r.TotalBits - r.LeftBits) / dt * 4
	return r
}

// SyncProgressLines are the two tab-indented lines /proc/drbd shows while
// a resync or verify runs:
//
//	[==>.................] sync'ed: 18.6% (776076/952288)M
//	finish: 5:27:02 speed: 40,480 (39,870) K/sec
//
// Sizes are in MiB once the resync covers more than 4 GiB, else KiB.
func SyncProgressLines(v *Volume) string {
	r := ComputeProgress(v)
	var b strings.Builder
	b.WriteString("\t" + ProgressBar(r.PerMil) + " ")
	verify := v.State.Conn == replication.VerifyS || v.State.Conn == replication.VerifyT
	if verify {
		b.WriteString("verified:")
	} else {
		b.WriteString("sync'ed:")
	}
	fmt.Fprintf(&b, "%3d.%d%% ", r.PerMil/10, r.PerMil%10)
	if r.TotalBits > 4<<(30-12) {
		fmt.Fprintf(&b, "(%d/%d)M", (r.LeftBits>>10)*4, (r.TotalBits>>10)*4)
	} else {
		fmt.Fprintf(&b, "(%d/%d)K", r.LeftBits*4, r.TotalBits*4)
	}
	b.WriteString("\n\t")
	fmt.Fprintf(&b, "finish: %d:%02d:%02d", r.FinishSec/3600, r.FinishSec%3600/60, r.FinishSec%60)
	b.WriteString(" speed: " + Thousands(r.RecentKiBs) + " (" + Thousands(r.AvgKiBs) + ")")
	if v.State.Conn == replication.SyncTarget || v.State.Conn == replication.VerifyS {
		rate := uint64(0)
		if v.Progress.RateKiB > 0 {
			rate = uint64(v.Progress.RateKiB)
		}
		b.WriteString(" want: " + Thousands(rate))
	}
	b.WriteString(" K/sec")
	if r.Stalled {
		b.WriteString(" (stalled)")
	}
	b.WriteString("\n")
	return b.String()
}

// ProgressBar is the kernel's 20-column bar for perMil tenths of a
// percent done: "[==>.................]".
func ProgressBar(perMil uint64) string {
	x := int(perMil / 50)
	y := 20 - x
	var b strings.Builder
	b.WriteByte('[')
	for i := 1; i < x; i++ {
		b.WriteByte('=')
	}
	b.WriteByte('>')
	for i := 0; i < y; i++ {
		b.WriteByte('.')
	}
	b.WriteByte(']')
	return b.String()
}

// Thousands groups a KiB/s figure with commas as /proc/drbd does
// (40480 -> "40,480", 1234567 -> "1,234,567").
func Thousands(v uint64) string {
	switch {
	case v >= 1000000:
		return fmt.Sprintf("%d,%03d,%03d", v/1000000, v%1000000/1000, v%1000)
	case v >= 1000:
		return fmt.Sprintf("%d,%03d", v/1000, v%1000)
	}
	return fmt.Sprintf("%d", v)
}
