package control

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/go-msgpack/v2/codec"

	"github.com/gdrbd/gdrbd/status"
)

// Op is what a request asks the daemon to do.
type Op uint8

const (
	// OpPing asks whether the daemon is alive; the reply carries its pid.
	OpPing Op = 1 + iota
	// OpUp creates the resource from the configuration file (re-read for
	// this request), attaches its disk and connects to the peer; with
	// Request.Primary it is also promoted. Already up: nothing changes.
	OpUp
	// OpDown demotes, disconnects and detaches the resource, writes its
	// metadata clean and forgets it. The daemon exits after the last one.
	OpDown
	OpAttach
	OpDetach
	OpConnect
	OpDisconnect
	OpPrimary
	OpSecondary
	OpInvalidate
	OpInvalidateRemote
	OpVerify
	OpPauseSync
	OpResumeSync
	OpOutdate
	OpNewCurrentUUID
	// OpStatus reports the volumes of one resource, or of every resource
	// the daemon holds when Resource is "".
	OpStatus
	// OpWait blocks until the resource meets Request.Until (or the
	// request's timeout passes, or the client goes away).
	OpWait
	// OpShutdown takes every resource down and ends the daemon.
	OpShutdown
)

var opNames = [...]string{"ping", "up", "down", "attach", "detach", "connect", "disconnect",
	"primary", "secondary", "invalidate", "invalidate-remote", "verify", "pause-sync",
	"resume-sync", "outdate", "new-current-uuid", "status", "wait", "shutdown"}

func (o Op) String() string {
	if o < OpPing || o > OpShutdown {
		return fmt.Sprintf("Op(%d)", uint8(o))
	}
	return opNames[o-1]
}

// Until is the condition OpWait waits for.
type Until uint8

const (
	// UntilConnected: the connection is established (Connected or any
	// state after it: sync, verify), as drbdsetup wait-connect.
	UntilConnected Until = 1 + iota
	// UntilSynced: connected and no resync running, as wait-sync.
	UntilSynced
	// UntilUpToDate: connected, no resync, both disks UpToDate.
	UntilUpToDate
)

func (u Until) String() string {
	switch u {
	case UntilConnected:
		return "connected"
	case UntilSynced:
		return "synced"
	case UntilUpToDate:
		return "uptodate"
	}
	return fmt.Sprintf("Until(%d)", uint8(u))
}

// Request is one command to the daemon. One request per connection.
//
// A plain value.
type Request struct {
	Op       Op
	Resource string
	// ConfigPath and Node locate the configuration OpUp (re)reads; the
	// daemon loads it itself so that it validates what it runs.
	ConfigPath string
	Node       string
	// Options of the verbs.
	Force         bool // primary --force
	DiscardMyData bool // connect --discard-my-data
	ClearBitmap   bool // new-current-uuid --clear-bitmap
	Primary       bool // up --primary
	Until         Until
	// TimeoutMs bounds OpWait; 0 waits until the client goes away.
	TimeoutMs int64
}

// ErrKind classifies a failed request so the CLI can answer with
// drbdadm's exit codes without reading error texts.
type ErrKind uint8

const (
	// KindOther is any other failure (I/O, metadata, configuration).
	KindOther ErrKind = 1 + iota
	// KindStateChange is a refused state change; Response.StateCode is
	// DRBD's SS_* value (negative), Error its text.
	KindStateChange
	// KindNoResource: the daemon does not hold the resource (DRBD's
	// "Device minor not allocated").
	KindNoResource
	// KindConfig: the configuration does not load or lacks the resource.
	KindConfig
	// KindTimeout: OpWait's timeout passed.
	KindTimeout
	// KindStopping: the daemon is exiting and takes no new resource;
	// start a new daemon once it is gone and ask that one.
	KindStopping
)

func (k ErrKind) String() string {
	switch k {
	case KindOther:
		return "other"
	case KindStateChange:
		return "state-change"
	case KindNoResource:
		return "no-resource"
	case KindConfig:
		return "config"
	case KindTimeout:
		return "timeout"
	case KindStopping:
		return "stopping"
	}
	return fmt.Sprintf("ErrKind(%d)", uint8(k))
}

// Response answers a Request. Kind is zero on success.
//
// A plain value.
type Response struct {
	Kind      ErrKind
	Error     string
	StateCode int32
	Volumes   []status.Volume
	Pid       int
	// Notes are messages for the user on success (e.g. "r0: already up").
	Notes []string
}

// Err converts a failed Response into an *Error (nil on success).
func (r *Response) Err() error {
	if r.Kind == 0 {
		return nil
	}
	return &Error{Kind: r.Kind, StateCode: r.StateCode, Msg: r.Error}
}

// Error is a request the daemon refused or failed.
type Error struct {
	Kind      ErrKind
	StateCode int32
	Msg       string
}

func (e *Error) Error() string { return e.Msg }

// Sentinel errors of the package.
var (
	// ErrNoDaemon: nothing listens on the control socket.
	ErrNoDaemon = errors.New("control: no gdrbd daemon is running")
	// ErrTooLarge: a message is longer than MaxMessage.
	ErrTooLarge = errors.New("control: message too large")
	// ErrNotPermitted: the peer is not root (or the daemon's own user).
	ErrNotPermitted = errors.New("control: permission denied")
)

// MaxMessage bounds one framed message; checked before allocating.
const MaxMessage = 16 << 20

// Framing on the socket, both directions:
//
//	+-----------------+---------------------------+
//	| u32 length (BE) | msgpack body (length B)   |
//	+-----------------+---------------------------+
func writeMsg(w io.Writer, v any) error {
	var body []byte
	if err := codec.NewEncoderBytes(&body, handle()).Encode(v); err != nil {
		return fmt.Errorf("control: encode: %w", err)
	}
	if len(body) > MaxMessage {
		return ErrTooLarge
	}
	buf := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[4:], body)
	_, err := w.Write(buf)
	return err
}

func readMsg(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxMessage {
		return ErrTooLarge
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return err
	}
	if err := codec.NewDecoderBytes(body, handle()).Decode(v); err != nil {
		return fmt.Errorf("control: decode: %w", err)
	}
	return nil
}

func handle() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.RawToString = true
	return h
}
