package status

import (
	"encoding/json"
	"io"
	"math"

	"github.com/gdrbd/gdrbd/replication"
)

// JSONResource is one resource in `gdrbd status --json`. The field names
// follow drbdsetup's DRBD 9 `status --json` where one exists (role,
// disk-state, connection-state, replication-state, peer-disk-state,
// percent-in-sync) so tools written for it find what they expect; gdrbd's
// additions (nbd, uuids, sync progress) are extra fields.
//
// A plain value; safe for concurrent reads.
type JSONResource struct {
	Name        string           `json:"name"`
	Role        string           `json:"role"`
	Suspended   bool             `json:"suspended"`
	Devices     []JSONDevice     `json:"devices"`
	Connections []JSONConnection `json:"connections"`
}

// JSONDevice is one volume's local side.
//
// A plain value; safe for concurrent reads.
type JSONDevice struct {
	Volume        int       `json:"volume"`
	Minor         int       `json:"minor"`
	Device        string    `json:"device,omitempty"`
	DiskState     string    `json:"disk-state"`
	Attached      bool      `json:"attached"`
	Size          int64     `json:"size"` // KiB, as drbdsetup reports it
	Read          uint64    `json:"read"` // KiB
	Written       uint64    `json:"written"`
	ALWrites      uint64    `json:"al-writes"`
	BMWrites      uint64    `json:"bm-writes"`
	UpperPending  int       `json:"upper-pending"`
	LowerPending  int       `json:"lower-pending"`
	UUIDs         [4]string `json:"uuids"`
	MetadataFlags uint32    `json:"metadata-flags"`
	// DiskIO is how the backing device is driven while attached:
	// "native-aio" (io_submit) or "threads" (pread/pwrite in a pool).
	DiskIO string  `json:"disk-io,omitempty"`
	NBD    JSONNBD `json:"nbd"`
}

// JSONNBD is the NBD front end of one volume.
//
// A plain value; safe for concurrent reads.
type JSONNBD struct {
	Socket            string `json:"socket,omitempty"`
	Device            string `json:"device,omitempty"`
	KernelUnavailable string `json:"kernel-unavailable,omitempty"`
	Clients           int    `json:"clients"`
	Reads             uint64 `json:"reads"`
	Writes            uint64 `json:"writes"`
	Flushes           uint64 `json:"flushes"`
	Trims             uint64 `json:"trims"`
	Zeroes            uint64 `json:"zeroes"`
	FUA               uint64 `json:"fua"`
}

// JSONConnection is the resource's connection to its peer.
//
// A plain value; safe for concurrent reads.
type JSONConnection struct {
	PeerAddress     string           `json:"peer-address,omitempty"`
	LocalAddress    string           `json:"local-address,omitempty"`
	ConnectionState string           `json:"connection-state"`
	PeerRole        string           `json:"peer-role"`
	Protocol        string           `json:"protocol,omitempty"`
	LastError       string           `json:"last-error,omitempty"`
	PeerDevices     []JSONPeerDevice `json:"peer_devices"`
}

// JSONPeerDevice is one volume's replication to the peer.
//
// A plain value; safe for concurrent reads.
type JSONPeerDevice struct {
	Volume           int      `json:"volume"`
	ReplicationState string   `json:"replication-state"`
	PeerDiskState    string   `json:"peer-disk-state"`
	ResyncSuspended  string   `json:"resync-suspended"`
	Received         uint64   `json:"received"` // KiB
	Sent             uint64   `json:"sent"`
	OutOfSync        uint64   `json:"out-of-sync"` // KiB
	Pending          int      `json:"pending"`
	Unacked          int      `json:"unacked"`
	PercentInSync    float64  `json:"percent-in-sync"`
	Sync             *JSONRun `json:"sync,omitempty"`
}

// JSONRun is a running resync or verify.
//
// A plain value; safe for concurrent reads.
type JSONRun struct {
	Verify     bool    `json:"verify"`
	TotalKiB   uint64  `json:"total-kib"`
	LeftKiB    uint64  `json:"left-kib"`
	Done       float64 `json:"done"` // percent, as /proc/drbd's sync'ed
	FinishSec  uint64  `json:"finish-seconds"`
	SpeedKiBs  uint64  `json:"speed-kib-s"`
	AvgKiBs    uint64  `json:"average-kib-s"`
	WantKiBs   int     `json:"want-kib-s"`
	ElapsedSec float64 `json:"elapsed-seconds"`
}

// JSON converts volumes (any order) into the JSON document's resources,
// sorted by name.
func JSON(vols []Volume) []JSONResource {
	vols = append([]Volume(nil), vols...)
	Sort(vols)
	out := []JSONResource{}
	for _, res := range group(vols) {
		r := JSONResource{Name: res[0].Resource, Role: resourceRole(res).String(),
			Devices: []JSONDevice{}, Connections: []JSONConnection{}}
		for i := range res {
			v := &res[i]
			if v.State.Susp || v.State.SuspNod || v.State.SuspFen {
				r.Suspended = true
			}
			d := JSONDevice{
				Volume: v.Volume, Minor: v.Minor, Device: v.Device, DiskState: v.State.Disk.String(),
				Attached: v.Attached, Size: v.SizeBytes / 1024, Read: v.Stats.DR, Written: v.Stats.DW,
				ALWrites: v.Stats.AL, BMWrites: v.Stats.BM, UpperPending: v.Stats.AP, LowerPending: v.Stats.LO,
				MetadataFlags: v.Flags, DiskIO: diskIO(v),
				NBD: JSONNBD{Socket: v.NBD.Socket, Device: v.NBD.Device, KernelUnavailable: v.NBD.KernelUnavailable,
					Clients: v.NBD.Clients, Reads: v.NBD.Reads, Writes: v.NBD.Writes, Flushes: v.NBD.Flushes,
					Trims: v.NBD.Trims, Zeroes: v.NBD.Zeroes, FUA: v.NBD.FUA},
			}
			for j, u := range v.UUIDs {
				d.UUIDs[j] = hex16(u)
			}
			r.Devices = append(r.Devices, d)
		}
		first := &res[0]
		if first.State.Conn != 0 && first.State.Conn != replication.StandAlone {
			c := JSONConnection{PeerAddress: first.PeerAddress, LocalAddress: first.LocalAddress,
				ConnectionState: conn9(connCState(first.State.Conn)), PeerRole: first.State.Peer.String(),
				LastError:   first.LastError,
				PeerDevices: []JSONPeerDevice{}}
			if first.Protocol != 0 {
				c.Protocol = first.Protocol.String()
			}
			for i := range res {
				v := &res[i]
				pd := JSONPeerDevice{Volume: v.Volume, ReplicationState: v.State.Conn.String(),
					PeerDiskState: v.State.PDsk.String(), ResyncSuspended: "no",
					Received: v.Stats.NR, Sent: v.Stats.NS, OutOfSync: v.Stats.OOS,
					Pending: v.Stats.PE, Unacked: v.Stats.UA, PercentInSync: round2(DonePercent(v))}
				if s := resyncSuspText(v.State); s != "" {
					pd.ResyncSuspended = s
				}
				if v.Progress.Running {
					p := ComputeProgress(v)
					pd.Sync = &JSONRun{Verify: v.Progress.Verify, TotalKiB: v.Progress.TotalKiB,
						LeftKiB: v.Progress.LeftKiB, Done: float64(p.PerMil) / 10, FinishSec: p.FinishSec,
						SpeedKiBs: p.RecentKiBs, AvgKiBs: p.AvgKiBs, WantKiBs: v.Progress.RateKiB,
						ElapsedSec: float64(v.Progress.ElapsedMs) / 1000}
				}
				c.PeerDevices = append(c.PeerDevices, pd)
			}
			r.Connections = append(r.Connections, c)
		}
		out = append(out, r)
	}
	return out
}

// WriteJSON prints JSON(vols) as an indented array.
func WriteJSON(w io.Writer, vols []Volume) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(JSON(vols))
}

func hex16(u uint64) string {
	const digits = "0123456789ABCDEF"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[u&15]
		u >>= 4
	}
	return string(b[:])
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

func diskIO(v *Volume) string {
	switch {
	case !v.Attached:
		return ""
	case v.AsyncIO:
		return "native-aio"
	}
	return "threads"
}
