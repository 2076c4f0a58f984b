package driver

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/gdrbd/gdrbd/config"
	"github.com/gdrbd/gdrbd/metadata"
	"github.com/gdrbd/gdrbd/replication"
)

// ErrNotSupported is wrapped by New for configurations gdrbd cannot run
// yet (several volumes, data-integrity-alg, TLS, lz4, DRBD Proxy).
var ErrNotSupported = errors.New("driver: not supported yet")

// tickMillis is the core's tick: DRBD's unit of 0.1 s.
const tickMillis = 100

// settings is everything the driver derives from the configuration once,
// in New. A plain value, read-only after New.
type settings struct {
	core       replication.Config
	vol        *config.Volume
	local      *net.TCPAddr
	peer       *net.TCPAddr // nil without a peer section
	peerFamily string
	peerNames  []string
	connectInt time.Duration
	pingTimeo  time.Duration
	sockCheck  time.Duration
	sndbuf     int
	rcvbuf     int
	metaLoc    metadata.Location
}

// ticks converts a duration to core ticks, at least 1.
func ticks(d time.Duration) int {
	return max(int(d/(tickMillis*time.Millisecond)), 1)
}

// coreProtocol maps drbd.conf's protocol onto the core's.
func coreProtocol(p config.Protocol) (replication.Protocol, error) {
	switch p {
	case config.ProtocolA:
		return replication.ProtocolA, nil
	case config.ProtocolB:
		return replication.ProtocolB, nil
	case config.ProtocolC:
		return replication.ProtocolC, nil
	}
	return 0, fmt.Errorf("driver: unknown protocol %v", p)
}

// deriveSettings checks rc and maps it onto the core's configuration.
// Both enums of after-sb policies follow the kernel's enum
// drbd_after_sb_p plus one, so the values carry over unchanged.
func deriveSettings(rc *config.Resource) (settings, error) {
	var s settings
	if rc == nil {
		return s, errors.New("driver: Options.Config is nil")
	}
	if rc.Local == nil {
		return s, fmt.Errorf("driver: resource %s has no host section for this node", rc.Name)
	}
	if len(rc.Volumes) != 1 {
		return s, fmt.Errorf("driver: resource %s has %d volumes; more than one volume: %w", rc.Name, len(rc.Volumes), ErrNotSupported)
	}
	if rc.Stacked {
		return s, fmt.Errorf("driver: resource %s: stacked resources: %w", rc.Name, ErrNotSupported)
	}
	if rc.Net.DataIntegrityAlg != "" {
		return s, fmt.Errorf("driver: resource %s: data-integrity-alg %s: %w", rc.Name, rc.Net.DataIntegrityAlg, ErrNotSupported)
	}
	if rc.Ext.TLS {
		return s, fmt.Errorf("driver: resource %s: tls: %w", rc.Name, ErrNotSupported)
	}
	if rc.Ext.Compression == config.CompressionLZ4 {
		return s, fmt.Errorf("driver: resource %s: compression lz4: %w", rc.Name, ErrNotSupported)
	}
	if rc.Local.Proxy != nil {
		return s, fmt.Errorf("driver: resource %s: DRBD Proxy: %w", rc.Name, ErrNotSupported)
	}
	v := rc.Volumes[0]
	s.vol = v
	var err error
	if s.local, err = tcpAddr(rc.Local.Address); err != nil {
		return s, fmt.Errorf("driver: resource %s: local address: %w", rc.Name, err)
	}
	if rc.Peer != nil {
		if s.peer, err = tcpAddr(rc.Peer.Address); err != nil {
			return s, fmt.Errorf("driver: resource %s: peer address: %w", rc.Name, err)
		}
		s.peerFamily = rc.Peer.Address.Family
		s.peerNames = rc.Peer.Names
	}
	switch {
	case v.MetaDisk == "internal":
		s.metaLoc = metadata.Internal()
	case v.Flexible:
		s.metaLoc = metadata.FlexExternal()
	default:
		s.metaLoc = metadata.Indexed(v.MetaIndex)
	}

	n, d := rc.Net, v.DiskOptions
	c := replication.DefaultConfig()
	c.Resource, c.Volume, c.Minor = rc.Name, v.Number, v.Minor
	c.TickMillis = tickMillis
	if c.Protocol, err = coreProtocol(n.Protocol); err != nil {
		return s, err
	}
	if n.AllowTwoPrimaries && c.Protocol != replication.ProtocolC {
		// drbdsetup net-options refuses it (ERR_NOT_PROTO_C): only under
		// protocol C are two Primaries' conflicting writes ordered.
		return s, fmt.Errorf("driver: resource %s: allow-two-primaries needs protocol C (Protocol C required)", rc.Name)
	}
	c.AllowTwoPrimaries = n.AllowTwoPrimaries
	c.AfterSB0Pri = replication.AfterSB(n.AfterSB0Pri)
	c.AfterSB1Pri = replication.AfterSB(n.AfterSB1Pri)
	c.AfterSB2Pri = replication.AfterSB(n.AfterSB2Pri)
	c.RRConflict = replication.AfterSB(n.RRConflict)
	c.CramHMACAlg, c.SharedSecret = n.CramHMACAlg, n.SharedSecret
	c.VerifyAlg, c.CsumsAlg = n.VerifyAlg, n.CsumsAlg
	c.UseRLE = n.UseRLE
	c.MaxEpochSize, c.MaxBuffers, c.KoCount = n.MaxEpochSize, n.MaxBuffers, n.KoCount
	c.PingIntTicks = ticks(n.PingInt)
	c.PingTimeoutTicks = ticks(n.PingTimeout)
	c.TimeoutTicks = ticks(n.Timeout)

	switch d.OnIOError {
	case config.IOErrorPassOn:
		c.OnIOError = replication.IOErrorPassOn
	case config.IOErrorCallLocalIOError:
		c.OnIOError = replication.IOErrorCallHelper
	default:
		c.OnIOError = replication.IOErrorDetach
	}
	switch d.Fencing {
	case config.FencingResourceOnly:
		c.Fencing = replication.FencingResourceOnly
	case config.FencingResourceAndStonith:
		c.Fencing = replication.FencingResourceAndStonith
	default:
		c.Fencing = replication.FencingDontCare
	}
	c.DiskFlushes, c.MDFlushes = d.DiskFlushes, d.MDFlushes
	c.ResyncRate = int(d.ResyncRateKiB())
	c.CPlanAhead = int(d.CPlanAhead / (tickMillis * time.Millisecond))
	c.CDelayTarget = ticks(d.CDelayTarget)
	c.CFillTarget = int(d.CFillTarget)
	c.CMaxRate, c.CMinRate = int(d.CMaxRateKiB()), int(d.CMinRateKiB())
	c.ALExtents = d.ALExtents
	s.core = c

	s.connectInt = n.ConnectInt
	if s.connectInt <= 0 {
		s.connectInt = 10 * time.Second
	}
	s.pingTimeo = n.PingTimeout
	s.sockCheck = n.SocketCheckTimeout
	if s.sockCheck <= 0 {
		s.sockCheck = s.pingTimeo
	}
	s.sndbuf, s.rcvbuf = int(n.SndbufSize), int(n.RcvbufSize)
	return s, nil
}

// tcpAddr resolves a drbd.conf address; only ipv4 and ipv6 are spoken.
func tcpAddr(a config.Address) (*net.TCPAddr, error) {
	if a.IsZero() {
		return nil, errors.New("no address configured")
	}
	if a.Family != "" && a.Family != "ipv4" && a.Family != "ipv6" {
		return nil, fmt.Errorf("address family %s: %w", a.Family, ErrNotSupported)
	}
	return net.ResolveTCPAddr("tcp", a.HostPort())
}
