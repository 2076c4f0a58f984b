package status

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/gdrbd/gdrbd/replication"
)

// Volume is what the daemon reports about one volume of a resource: the
// replication driver's status plus the resync mark the daemon keeps for
// the recent-speed estimate. It travels over the control socket (msgpack)
// and is the only input of the renderers, so every format is a pure
// function of a []Volume.
//
// A plain value; safe for concurrent reads.
type Volume struct {
	Resource string
	Volume   int
	Minor    int
	Device   string // /dev/drbdN as configured
	State    replication.State
	Protocol replication.Protocol
	Stats    replication.Stats
	Progress replication.SyncProgress
	// Mark is the resync progress some seconds ago (DRBD's rolling sync
	// mark, about 18 s back); zero means "at the start of the resync".
	Mark      SyncMark
	UUIDs     [4]uint64
	Attached  bool
	AsyncIO   bool // the backing device is driven through native AIO
	SizeBytes int64
	Flags     uint32 // metadata flags (metadata.Flag*)
	// WriteOrdering is the /proc/drbd "wo:" letter: 'f' flush, 'd' drain,
	// 'n' none; zero prints 'f'.
	WriteOrdering byte
	LocalAddress  string
	PeerAddress   string
	NBD           NBD
	// LastError is the replication core's last error-level event ("" if
	// none): why a connection keeps failing, for people.
	LastError string
}

// NBD describes the volume's NBD front end.
//
// A plain value; safe for concurrent reads.
type NBD struct {
	Socket            string // unix socket path ("" while not Primary)
	Device            string // kernel /dev/nbdN, "" without one
	KernelUnavailable string // why there is no kernel device
	Clients           int
	Reads, Writes     uint64
	Flushes, Trims    uint64
	Zeroes, FUA       uint64
}

// SyncMark is a sample of the resync progress.
//
// A plain value; safe for concurrent use.
type SyncMark struct {
	LeftKiB   uint64
	ElapsedMs int64 // milliseconds since the resync started
}

// Unconfigured reports whether DRBD would call the volume unconfigured:
// StandAlone without a disk (drbdsetup's role/cstate/dstate test).
func (v *Volume) Unconfigured() bool {
	return v.State.Conn == replication.StandAlone && v.State.Disk == replication.Diskless
}

// RoleText is what `drbdadm role` prints: "Primary/Secondary", or
// "Unconfigured".
func (v *Volume) RoleText() string {
	if v.Unconfigured() {
		return "Unconfigured"
	}
	return v.State.Role.String() + "/" + v.State.Peer.String()
}

// CStateText is what `drbdadm cstate` prints.
func (v *Volume) CStateText() string {
	if v.Unconfigured() {
		return "Unconfigured"
	}
	return v.State.Conn.String()
}

// DStateText is what `drbdadm dstate` prints.
func (v *Volume) DStateText() string {
	if v.Unconfigured() {
		return "Unconfigured"
	}
	return v.State.Disk.String() + "/" + v.State.PDsk.String()
}

// Sort orders volumes by resource name, then volume number: the order
// every renderer expects (drbdsetup sorts resources by name).
func Sort(vols []Volume) {
	sort.SliceStable(vols, func(i, j int) bool {
		if vols[i].Resource != vols[j].Resource {
			return vols[i].Resource < vols[j].Resource
		}
		return vols[i].Volume < vols[j].Volume
	})
}

// group splits vols (sorted) into runs of one resource each.
func group(vols []Volume) [][]Volume {
	var out [][]Volume
	for i := 0; i < len(vols); {
		j := i + 1
		for j < len(vols) && vols[j].Resource == vols[i].Resource {
			j++
		}
		out = append(out, vols[i:j])
		i = j
	}
	return out
}

// resourceRole is the resource's role as DRBD 9 style status shows it:
// the highest role of its volumes (Primary > Secondary > Unknown).
func resourceRole(vols []Volume) replication.Role {
	best := replication.RoleUnknown
	for _, v := range vols {
		switch {
		case v.State.Role == replication.RolePrimary:
			return replication.RolePrimary
		case v.State.Role == replication.RoleSecondary:
			best = replication.RoleSecondary
		}
	}
	return best
}

// connCState is the connection-wide state DRBD 8.4 keeps: per-device
// states above WFReportParams (Connected, the sync states) are the
// connection's WFReportParams, which drbdsetup shows as "Connected".
func connCState(c replication.ConnState) replication.ConnState {
	if c > replication.WFReportParams {
		return replication.WFReportParams
	}
	return c
}

// conn9 is drbdsetup's drbd_conn_str9: the connection state in DRBD 9
// words.
func conn9(c replication.ConnState) string {
	switch c {
	case replication.WFConnection:
		return "Connecting"
	case replication.WFReportParams:
		return "Connected"
	}
	return c.String()
}

// repl9 is drbdsetup's drbd_repl_str9: the replication state in DRBD 9
// words.
func repl9(c replication.ConnState) string {
	switch c {
	case replication.WFReportParams:
		return "Off"
	case replication.Connected:
		return "Established"
	}
	return c.String()
}

func suspText(s replication.State) string {
	var parts []string
	if s.Susp {
		parts = append(parts, "user")
	}
	if s.SuspNod {
		parts = append(parts, "no-data")
	}
	if s.SuspFen {
		parts = append(parts, "fencing")
	}
	if len(parts) == 0 {
		return "no"
	}
	return strings.Join(parts, ",")
}

func resyncSuspText(s replication.State) string {
	var parts []string
	if s.UserISP {
		parts = append(parts, "user")
	}
	if s.PeerISP {
		parts = append(parts, "peer")
	}
	if s.AftrISP {
		parts = append(parts, "dependency")
	}
	return strings.Join(parts, ",")
}

// DonePercent is DRBD 9 status' "done:" value: the share of the device
// that is in sync, 100 * (1 - out-of-sync / size).
func DonePercent(v *Volume) float64 {
	if v.SizeBytes <= 0 {
		return 0
	}
	return 100 * (1 - float64(v.Stats.OOS*1024)/float64(v.SizeBytes))
}

// WriteDRBD9 prints the volumes the way `drbdadm status` (drbdsetup-84
// status) prints them:
//
//	r0 role:Primary
//	  disk:UpToDate
//	  peer role:Secondary
//	    replication:SyncSource peer-disk:Inconsistent done:37.50
//	(blank line)
//
// A resource with more than one volume (or a volume other than 0) names
// each volume ("  volume:1 disk:UpToDate"). The peer appears only while a
// connection is configured (not StandAlone); its role and replication
// state only while connected.
func WriteDRBD9(w io.Writer, vols []Volume) error {
	vols = append([]Volume(nil), vols...)
	Sort(vols)
	var b strings.Builder
	for _, res := range group(vols) {
		single := len(res) == 1 && res[0].Volume == 0
		role := resourceRole(res)
		fmt.Fprintf(&b, "%s role:%s", res[0].Resource, role)
		for _, v := range res {
			if v.State.Susp || v.State.SuspNod || v.State.SuspFen {
				fmt.Fprintf(&b, " suspended:%s", suspText(v.State))
				break
			}
		}
		b.WriteString("\n")
		for _, v := range res {
			if single {
				fmt.Fprintf(&b, "  disk:%s\n", v.State.Disk)
			} else {
				fmt.Fprintf(&b, "  volume:%d disk:%s\n", v.Volume, v.State.Disk)
			}
		}
		// DRBD 8.4 has one connection per resource: every volume shares
		// its state, so the first volume speaks for it.
		c := res[0].State.Conn
		if c != replication.StandAlone {
			cs := connCState(c)
			b.WriteString("  peer")
			if cs < replication.WFReportParams {
				fmt.Fprintf(&b, " connection:%s", conn9(cs))
			}
			if cs == replication.WFReportParams {
				fmt.Fprintf(&b, " role:%s", res[0].State.Peer)
			}
			b.WriteString("\n")
			if cs == replication.WFReportParams {
				for _, v := range res {
					writePeerDevice(&b, &v, single)
				}
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writePeerDevice(b *strings.Builder, v *Volume, single bool) {
	var parts []string
	if !single {
		parts = append(parts, fmt.Sprintf("volume:%d", v.Volume))
	}
	repl := v.State.Conn
	if repl < replication.WFReportParams {
		repl = replication.WFReportParams
	}
	if repl > replication.WFReportParams {
		parts = append(parts, "replication:"+repl9(repl))
	}
	if repl != replication.WFReportParams || v.State.PDsk != replication.DUnknown {
		parts = append(parts, "peer-disk:"+v.State.PDsk.String())
		if repl.IsSyncing() {
			parts = append(parts, fmt.Sprintf("done:%.2f", DonePercent(v)))
		}
		if s := resyncSuspText(v.State); s != "" {
			parts = append(parts, "resync-suspended:"+s)
		}
	}
	// drbdsetup prints no indentation for an empty line.
	if len(parts) > 0 {
		b.WriteString("    " + strings.Join(parts, " "))
	}
	b.WriteString("\n")
}
