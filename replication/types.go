package replication

import (
	"fmt"

	"github.com/gdrbd/gdrbd/protocol"
)

// Protocol is the replication protocol (net option "protocol").
type Protocol uint8

const (
	// ProtocolA completes a write when it is on the local disk and handed
	// to the send buffer.
	ProtocolA Protocol = 1 + iota
	// ProtocolB completes a write when it is on the local disk and the
	// peer acknowledged receiving it (P_RECV_ACK).
	ProtocolB
	// ProtocolC completes a write only when it is on the local disk and
	// the peer acknowledged writing it to its disk (P_WRITE_ACK).
	ProtocolC
)

func (p Protocol) String() string {
	switch p {
	case ProtocolA:
		return "A"
	case ProtocolB:
		return "B"
	case ProtocolC:
		return "C"
	}
	return fmt.Sprintf("Protocol(%d)", uint8(p))
}

// Wire is the value of P_PROTOCOL's protocol field.
func (p Protocol) Wire() uint32 { return uint32(p) }

// OnIOError is the disk option on-io-error.
type OnIOError uint8

const (
	// IOErrorDetach detaches the disk and continues Diskless, serving I/O
	// through the peer (DRBD's default).
	IOErrorDetach OnIOError = 1 + iota
	// IOErrorPassOn reports the error to the upper layer and marks the
	// block out of sync.
	IOErrorPassOn
	// IOErrorCallHelper runs the local-io-error handler, then detaches.
	IOErrorCallHelper
)

func (o OnIOError) String() string {
	switch o {
	case IOErrorDetach:
		return "detach"
	case IOErrorPassOn:
		return "pass_on"
	case IOErrorCallHelper:
		return "call-local-io-error"
	}
	return fmt.Sprintf("OnIOError(%d)", uint8(o))
}

// Config is the replication core's view of one resource volume's
// configuration. The driver fills it from the parsed drbd.conf. Times are
// in ticks (Config.TickMillis long each).
type Config struct {
	Resource string
	Volume   int
	Minor    int

	// TickMillis is the length of one Tick in milliseconds (100 = DRBD's
	// 0.1 s unit).
	TickMillis int

	// net
	Protocol          Protocol
	AllowTwoPrimaries bool
	AfterSB0Pri       AfterSB
	AfterSB1Pri       AfterSB
	AfterSB2Pri       AfterSB
	RRConflict        AfterSB
	CramHMACAlg       string // "" = no authentication
	SharedSecret      string
	VerifyAlg         string
	CsumsAlg          string
	IntegrityAlg      string
	UseRLE            bool
	MaxEpochSize      int // writes per epoch before it is closed
	MaxBuffers        int // bound on writes in flight on the receiver
	KoCount           int
	PingIntTicks      int    // idle time before a P_PING
	PingTimeoutTicks  int    // P_PING_ACK must arrive within this
	TimeoutTicks      int    // a sent request must be answered within this (x ko-count)
	Features          uint32 // feature flags offered (protocol.Feature*)

	// disk
	OnIOError    OnIOError
	Fencing      Fencing
	DiskFlushes  bool // flush the backing device between epochs of peer writes (disk-flushes)
	MDFlushes    bool // flush after metadata writes (md-flushes)
	ResyncRate   int  // KiB/s (fixed rate, and the controller's seed)
	CPlanAhead   int  // ticks; 0 = fixed rate
	CDelayTarget int  // ticks
	CFillTarget  int  // sectors
	CMaxRate     int  // KiB/s
	CMinRate     int  // KiB/s
	ALExtents    int
}

// DefaultConfig returns DRBD 8.4's defaults (drbd_limits.h) with a 100 ms
// tick.
func DefaultConfig() Config {
	return Config{
		TickMillis:       100,
		Protocol:         ProtocolC,
		AfterSB0Pri:      ASBDisconnect,
		AfterSB1Pri:      ASBDisconnect,
		AfterSB2Pri:      ASBDisconnect,
		RRConflict:       ASBDisconnect,
		MaxEpochSize:     2048,
		MaxBuffers:       2048,
		KoCount:          7,
		PingIntTicks:     100,
		PingTimeoutTicks: 5,
		TimeoutTicks:     60,
		Features:         protocol.FeatureTrim | protocol.FeatureWZeroes,
		OnIOError:        IOErrorDetach,
		Fencing:          FencingDontCare,
		DiskFlushes:      true,
		MDFlushes:        true,
		ResyncRate:       250,
		CPlanAhead:       20,
		CDelayTarget:     10,
		CFillTarget:      100,
		CMaxRate:         102400,
		CMinRate:         250,
		ALExtents:        1237,
	}
}

// Op is the kind of an application request or disk operation.
type Op uint8

const (
	OpRead Op = 1 + iota
	OpWrite
	OpFlush
	OpTrim        // deallocate; reads back as zeroes
	OpWriteZeroes // zero the range
)

func (o Op) String() string {
	switch o {
	case OpRead:
		return "read"
	case OpWrite:
		return "write"
	case OpFlush:
		return "flush"
	case OpTrim:
		return "trim"
	case OpWriteZeroes:
		return "write-zeroes"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Request is an application I/O request on the replicated volume.
//
// Data: for OpWrite the bytes to write, for OpRead the buffer to fill;
// the caller owns it and must not touch it until the request's Completion.
// Offset and length are multiples of 512; a request spans at most
// MaxRequestSize bytes (the caller splits larger ones).
type Request struct {
	ID     uint64 // chosen by the caller, unique among requests in flight
	Op     Op
	Offset int64
	Length int64 // OpTrim/OpWriteZeroes: the range; OpRead/OpWrite: len(Data)
	Data   []byte
	FUA    bool // OpWrite: durable on every disk before completion
}

// MaxRequestSize is the largest read or write the core takes in one
// Request: DRBD's largest data packet (1 MiB).
const MaxRequestSize = protocol.MaxBIOSize

// MaxDiscardSize is the largest trim or write-zeroes range in one Request.
const MaxDiscardSize = 128 << 20

// Completion reports the end of an application request. Err is nil on
// success.
type Completion struct {
	ID  uint64
	Err error
}

// DiskOp is an operation on the local backing device's data area.
//
// For OpWrite, Data is written at Offset. For OpRead, the caller reads
// Length bytes at Offset into Data, or, when Data is nil, into a buffer it
// allocates and returns in DiskDone. OpFlush makes every write that
// completed before it was issued durable. FUA asks for a write that is
// durable when it completes.
type DiskOp struct {
	ID     uint64
	Op     Op
	Offset int64
	Length int64
	Data   []byte
	FUA    bool
}

// MetaWrite is a write to the metadata area (superblock, activity-log
// transaction or bitmap page) at an absolute byte offset of the metadata
// device. The caller writes Data and makes it durable (flush, unless
// md-flushes is off) BEFORE reporting MetaDone: the core relies on that
// to order the activity log BEFORE the data writes it covers.
type MetaWrite struct {
	ID     uint64
	Offset int64
	Data   []byte
	What   string // "superblock", "al", "bitmap" (for logs)
}

// Stream names one of the two TCP connections to the peer.
type Stream uint8

const (
	DataStream Stream = 1 + iota // the data socket
	MetaStream                   // the meta socket (acks, pings)
)

func (s Stream) String() string {
	switch s {
	case DataStream:
		return "data"
	case MetaStream:
		return "meta"
	}
	return fmt.Sprintf("Stream(%d)", uint8(s))
}

// Send is a packet for the peer. Messages of one stream are sent in the
// order given. When Token is non-zero the caller reports Sent(Token) once
// the packet is handed to the socket (protocol A completes writes then).
// Payloads may alias application buffers: they stay valid until the
// request that owns them completes.
type Send struct {
	Stream Stream
	Msg    protocol.Message
	Token  uint64
}

// NetCmd tells the driver what to do with the network.
type NetCmd uint8

const (
	// NetConnect: keep trying to establish the two sockets to the peer
	// (connect and accept), report Connected when done.
	NetConnect NetCmd = 1 + iota
	// NetDisconnect: close both sockets (if any) and stop trying; report
	// nothing further.
	NetDisconnect
	// NetReconnect: close both sockets, report Disconnected, then keep
	// trying as NetConnect.
	NetReconnect
)

func (c NetCmd) String() string {
	switch c {
	case NetConnect:
		return "connect"
	case NetDisconnect:
		return "disconnect"
	case NetReconnect:
		return "reconnect"
	}
	return fmt.Sprintf("NetCmd(%d)", uint8(c))
}

// Level is the severity of an Event.
type Level uint8

const (
	LevelDebug Level = 1 + iota
	LevelInfo
	LevelWarn
	LevelError
)

// Event is something worth logging: a state change or a notable decision
// (DRBD's kernel log lines). Events are facts for the log; nothing must
// depend on their text.
type Event struct {
	Level Level
	Msg   string
	// Old and New are set for state changes.
	Old, New *State
}

// Handler is a request to run a drbd.conf handler (split-brain,
// pri-lost-after-sb, local-io-error, before-resync-target, ...). The
// driver runs the configured command with DRBD's environment and reports
// the exit code with HandlerDone when Wait is set.
type Handler struct {
	ID   uint64
	Name string
	Wait bool
}

// Ready is the work the core hands to its caller after a Step. The caller
// carries out every part, then calls Advance.
//
// Ordering contract:
//   - MetaWrites are independent of each other and of the DiskOps in the
//     same Ready; each must be durable BEFORE MetaDone is reported. The
//     core withholds any data write that needs an activity-log
//     transaction until that transaction's MetaDone: AL BEFORE DATA.
//   - DiskOps are independent and may run in parallel, in any order. The
//     core withholds an operation until it is allowed to run (a write of
//     the next epoch on a Secondary waits for the previous epoch's flush).
//   - Messages go out in order per stream; both streams are independent.
//   - Completions may be delivered at once: the core only emits one when
//     DRBD's rules allow (protocol C: local write done AND peer's
//     P_WRITE_ACK received).
//   - Net, when set, is carried out after the Messages of this Ready were
//     handed to the sockets.
type Ready struct {
	MetaWrites  []MetaWrite
	DiskOps     []DiskOp
	Messages    []Send
	Completions []Completion
	Handlers    []Handler
	Events      []Event
	Net         NetCmd // zero: no change
	// DropDialect, when true, asks the driver to switch its codecs to
	// Dialect for every packet read and written after this point.
	Dialect *protocol.Dialect
}

// Empty reports whether r holds no work.
func (r *Ready) Empty() bool {
	return len(r.MetaWrites) == 0 && len(r.DiskOps) == 0 && len(r.Messages) == 0 &&
		len(r.Completions) == 0 && len(r.Handlers) == 0 && len(r.Events) == 0 &&
		r.Net == 0 && r.Dialect == nil
}
