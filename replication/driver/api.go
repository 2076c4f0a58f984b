package driver

import (
	"go.uber.org/zap"

	"github.com/gdrbd/gdrbd/config"
	"github.com/gdrbd/gdrbd/replication"
)

// Options configure a Resource. A plain value.
type Options struct {
	// Config is the resource with its local host selected (config.Load
	// with the node name).
	Config *config.Resource
	// Logger receives one Info line per state change; nil logs nothing.
	Logger *zap.Logger
	// RunDir holds the NBD socket RunDir/<res>.nbd (unless the resource
	// sets `# gdrbd: nbd-socket`).
	RunDir string
	// KernelNBD attaches /dev/nbdX on promotion when the module exists.
	KernelNBD bool
	// Rand returns random 64-bit values (UUIDs, auth challenges); nil
	// means crypto/rand.
	Rand func() uint64
	// SyncIO keeps every disk request on the worker pool's synchronous
	// pread/pwrite, never native AIO (the daemon: GDRBD_AIO=0).
	SyncIO bool
}

// Status is a snapshot of a Resource. A plain value.
type Status struct {
	Name          string
	Volume, Minor int
	Device        string // the config's device path (/dev/drbdN)
	State         replication.State
	Protocol      replication.Protocol
	Stats         replication.Stats
	Progress      replication.SyncProgress
	UUIDs         [4]uint64
	Attached      bool
	// AsyncIO: the data device's reads and writes go through native
	// AIO (else a pool of threads doing pread/pwrite).
	AsyncIO      bool
	SizeBytes    int64
	Flags        uint32 // metadata flags (MDF_*) as last written
	LocalAddress string
	PeerAddress  string
	NBD          NBDStatus
	// LastError is the text of the core's last error-level event
	// ("incompatible protocol settings", "Authentication of peer
	// failed, trying again.", ...), "" if none since New.
	LastError string
}

// NBDStatus describes the NBD export of a Primary. A plain value.
type NBDStatus struct {
	Socket            string // unix socket path when exported
	Device            string // /dev/nbdX when the kernel device is attached
	KernelUnavailable string // why there is no kernel device ("" if none was asked for or it works)
	Clients           int
	Reads, Writes     uint64
	Flushes, Trims    uint64
	Zeroes, FUA       uint64
}
