package config

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// Options tune Load and Parse. A value; Load only calls its functions from
// the calling goroutine.
type Options struct {
	// Node is this machine's name, matched against `on NAME` sections the
	// way drbdadm matches `uname -n`. "" means $__DRBD_NODE__ if set (the
	// variable drbdadm-84 honours for the same purpose), else os.Hostname.
	Node string
	// ReadFile and Glob replace os.ReadFile and filepath.Glob for include
	// statements (tests and fuzzing); nil means the real file system.
	ReadFile func(path string) ([]byte, error)
	Glob     func(pattern string) ([]string, error)
	// HaveIP reports whether addr (of family "ipv4" or "ipv6") is
	// configured on this machine; a `floating ADDR:PORT` section is this
	// node's when it is (or when Node equals ADDR, as in drbdadm). nil means
	// the machine's interface addresses.
	HaveIP func(family, addr string) bool
}

// Config is one parsed and validated drbd.conf with all its includes.
//
// A Config is not modified after Load returns; it is safe for concurrent
// reads.
type Config struct {
	// File is the file Load read (Parse: the name it was given).
	File string
	// Node is the node name host sections were selected for.
	Node   string
	Global Global
	// Resources in file order (includes expanded where they stand),
	// including those this node has no section in (Local == nil).
	Resources []*Resource
	// Warnings are problems drbdadm-84 also only warns about (a global
	// section after resources, a deprecated ignore-on, a resync-after that
	// names an unknown resource and is therefore dropped).
	Warnings []string

	raw *rawConfig
}

// Global is the global {} section.
//
// A value filled by Load; safe for concurrent reads.
type Global struct {
	UsageCount            UsageCount
	MinorCount            int // 0 = not set (the kernel module's default, 32)
	DialogRefresh         time.Duration
	DisableIPVerification bool
	UdevAlwaysUseVnr      bool
	CmdTimeoutShort       time.Duration
	CmdTimeoutMedium      time.Duration
	CmdTimeoutLong        time.Duration
	// Ext holds the `# gdrbd:` directives written at file level; every
	// resource inherits them (see Resource.Ext).
	Ext Extensions
}

// Resource is one resource section with common {} merged in, as DRBD 8.4
// would configure it on this node.
//
// A value filled by Load; safe for concurrent reads.
type Resource struct {
	Name     string
	Pos      Position // where `resource NAME {` is
	Protocol Protocol // = Net.Protocol
	Net      NetOptions
	// Disk is the resource-level disk {} (with common's); each volume has
	// its own copy with per-volume overrides in Volume.DiskOptions, which
	// is what attach uses.
	Disk    DiskOptions
	Startup StartupOptions
	Options ResourceOptions
	// Handlers maps a handler name (fence-peer, split-brain, ...) to its
	// shell command. As in drbdadm, the first definition of a name wins.
	Handlers map[string]string
	// Hosts are all host sections in file order: on, floating,
	// stacked-on-top-of, _this_host, _remote_host.
	Hosts []*Host
	// Local is the host section selected for this node; nil if the node
	// has none (then Config.Resource reports an error for this resource).
	Local *Host
	// Peer is the other host section when there are exactly two, else nil
	// (8.4 then needs --peer).
	Peer *Host
	// Volumes are the local host's volumes sorted by number; a resource
	// without volume sections has one volume, number 0.
	Volumes []*Volume
	// Stacked is true when Local is a stacked-on-top-of section.
	Stacked bool
	// Ext are the gdrbd-only settings (`# gdrbd:` directives).
	Ext Extensions
}

// Host is one host section.
//
// A value filled by Load; safe for concurrent reads.
type Host struct {
	// Names are the names after `on` (several for `on a b {}`); for a
	// floating section the address as drbdadm names it ("10.0.0.1:7788");
	// for a stacked section the lower resource's host names.
	Names   []string
	Address Address
	// AltAddress is alternate-link-address (zero if none).
	AltAddress Address
	Volumes    []*Volume
	Floating   bool
	// StackedOn is the lower resource of a stacked-on-top-of section.
	StackedOn string
	// Proxy is the host's DRBD Proxy (nil without one). With a proxy,
	// 8.4 connects to the proxy's inside address instead of the peer.
	Proxy *Proxy
	Pos   Position
}

// Proxy is a `proxy on NAME { inside ...; outside ...; }` section. gdrbd
// does not run DRBD Proxy; the section is kept so such files load.
//
// A value filled by Load; safe for concurrent reads.
type Proxy struct {
	Names   []string
	Inside  Address
	Outside Address
}

// Address is a replication endpoint.
//
// A value; safe for concurrent use.
type Address struct {
	Family string // "ipv4", "ipv6", "ssocks" or "sdp"
	Host   string // without brackets
	Port   int
}

// String formats the address as drbd.conf writes it: "ipv4 1.2.3.4:7788",
// "ipv6 [fd00::1]:7788".
func (a Address) String() string {
	if a.Family == "ipv6" {
		return fmt.Sprintf("ipv6 [%s]:%d", a.Host, a.Port)
	}
	return fmt.Sprintf("%s %s:%d", a.Family, a.Host, a.Port)
}

// HostPort is the address for net.Dial/net.Listen.
func (a Address) HostPort() string { return net.JoinHostPort(a.Host, strconv.Itoa(a.Port)) }

// IsZero reports an unset address.
func (a Address) IsZero() bool { return a.Host == "" }

// Volume is one volume of a host section.
//
// A value filled by Load; safe for concurrent reads.
type Volume struct {
	Number int
	Device string // "/dev/drbdN" (derived from the minor if only a minor was given)
	Minor  int
	// Disk is the backing device or file, or "none" for a diskless node.
	Disk string
	// MetaDisk is "internal" or the external metadata device.
	MetaDisk string
	// MetaIndex is -1 for internal and flexible external metadata and the
	// index (128 MiB slots) for indexed external metadata.
	MetaIndex int
	// Flexible is true for external metadata without an index
	// (`meta-disk DEV;` or `flexible-meta-disk DEV;`).
	Flexible bool
	// DiskOptions are the disk options attach uses for this volume: the
	// resource's, common's and the volume's own merged as 8.4 merges them.
	DiskOptions DiskOptions
	Pos         Position
}

// MetaIndexArg is the meta-disk index as drbdsetup attach and drbdmeta
// take it: "internal", "flexible" or the index.
func (v *Volume) MetaIndexArg() string {
	switch {
	case v.MetaDisk == "internal":
		return "internal"
	case v.Flexible:
		return "flexible"
	}
	return strconv.Itoa(v.MetaIndex)
}

// MetaDevice is the device holding the metadata (the backing disk itself
// for internal metadata), as drbdsetup attach takes it.
func (v *Volume) MetaDevice() string {
	if v.MetaDisk == "internal" {
		return v.Disk
	}
	return v.MetaDisk
}

// NetOptions are the net {} options (drbdsetup connect), defaults filled.
// Durations are already converted from drbd.conf's units (timeout and
// ping-timeout in 1/10 s, connect-int and ping-int in seconds).
//
// A value filled by Load; safe for concurrent reads.
type NetOptions struct {
	Protocol            Protocol
	Timeout             time.Duration
	MaxEpochSize        int
	MaxBuffers          int
	UnplugWatermark     int
	ConnectInt          time.Duration
	PingInt             time.Duration
	SndbufSize          int64 // bytes; 0 = kernel autotuning
	RcvbufSize          int64 // bytes; 0 = kernel autotuning
	KoCount             int
	AllowTwoPrimaries   bool
	CramHMACAlg         string
	SharedSecret        string
	AfterSB0Pri         AfterSBPolicy
	AfterSB1Pri         AfterSBPolicy
	AfterSB2Pri         AfterSBPolicy
	AlwaysASBP          bool
	RRConflict          RRConflictPolicy
	PingTimeout         time.Duration
	DataIntegrityAlg    string
	TCPCork             bool
	OnCongestion        OnCongestion
	CongestionFill      int64 // sectors; 0 = off
	CongestionExtents   int
	CsumsAlg            string
	CsumsAfterCrashOnly bool
	VerifyAlg           string
	UseRLE              bool
	SocketCheckTimeout  time.Duration
	settings
}

// DiskOptions are the disk {} options (drbdsetup attach), defaults filled.
//
// A value filled by Load; safe for concurrent reads.
type DiskOptions struct {
	Size        int64 // sectors; 0 = the whole backing device
	MaxBioBvecs int
	OnIOError   OnIOError
	Fencing     Fencing
	DiskBarrier bool
	DiskFlushes bool
	DiskDrain   bool
	MDFlushes   bool
	// ResyncRate is in bytes/s (drbd.conf: KiB/s; `rate 200M` is 200 MiB/s).
	// With CPlanAhead > 0 it only seeds the dynamic controller.
	ResyncRate int64
	// ResyncAfter is the resource (or resource/volume) this volume's resync
	// waits for, "" for none; ResyncAfterMinor is its minor (-1 none).
	ResyncAfter      string
	ResyncAfterMinor int
	// ALExtents is clamped into [67..65534] as the kernel clamps it; attach
	// clamps further to what the on-disk activity log holds (6433 for the
	// default 32 KiB ring).
	ALExtents              int
	ALUpdates              bool
	DiscardZeroesIfAligned bool
	DisableWriteSame       bool
	CPlanAhead             time.Duration
	CDelayTarget           time.Duration
	CFillTarget            int64 // sectors
	CMaxRate               int64 // bytes/s
	CMinRate               int64 // bytes/s
	DiskTimeout            time.Duration
	ReadBalancing          ReadBalancing
	RsDiscardGranularity   int64 // bytes
	settings
}

// ResyncRateKiB is the resync rate in drbd.conf's and drbdsetup's unit.
func (d *DiskOptions) ResyncRateKiB() int64 { return d.ResyncRate / 1024 }

// CMaxRateKiB is c-max-rate in KiB/s.
func (d *DiskOptions) CMaxRateKiB() int64 { return d.CMaxRate / 1024 }

// CMinRateKiB is c-min-rate in KiB/s.
func (d *DiskOptions) CMinRateKiB() int64 { return d.CMinRate / 1024 }

// StartupOptions are the startup {} options (drbdadm wait-connect and the
// init script), defaults filled.
//
// A value filled by Load; safe for concurrent reads.
type StartupOptions struct {
	WFCTimeout         time.Duration // 0 = wait forever
	DegrWFCTimeout     time.Duration
	OutdatedWFCTimeout time.Duration
	WaitAfterSB        bool
	// BecomePrimaryOn names the hosts (or "both") the init script promotes.
	BecomePrimaryOn []string
	StackedTimeouts bool
	settings
}

// ResourceOptions are the options {} section (drbdsetup new-resource).
//
// A value filled by Load; safe for concurrent reads.
type ResourceOptions struct {
	CPUMask            string
	OnNoDataAccessible OnNoData
	settings
}
