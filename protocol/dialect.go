package protocol

import "fmt"

// Dialect says how packets are framed and laid out on one connection. The
// zero Dialect is the one before agreement: h80 headers, and only the
// packets of the first exchange (P_INITIAL_DATA, P_INITIAL_META,
// P_CONNECTION_FEATURES). After both sides' P_CONNECTION_FEATURES, Agree
// gives the dialect for everything else on both sockets.
//
// A Dialect is a plain value; copies are independent.
type Dialect struct {
	// Version is the agreed protocol version (86..101), 0 before agreement.
	// It picks the header (h100 from 100 on; h95 for payloads above 32 KiB
	// from 95 on; h80 otherwise) and version-dependent layouts (P_PROTOCOL's
	// integrity-alg from 87, P_SYNC_PARAM89 from 89, p_rs_param_95 from 95).
	Version int
	// Features are the agreed DRBD_FF_* flags: the AND of both offers.
	// FeatureWSame adds o_qlim to P_SIZES; P_TRIM, P_ZEROES, P_WSAME,
	// P_RS_THIN_REQ and P_RS_DEALLOCATED need their flag.
	Features uint32
	// IntegrityDigestSize is the digest size of the sender's
	// data-integrity-alg (P_PROTOCOL's integrity alg), 0 without one. Such a
	// digest precedes the data of P_DATA, P_DATA_REPLY, P_RS_DATA_REPLY and
	// P_WSAME. It is per direction: a Writer uses our algorithm's size, a
	// Reader the peer's.
	IntegrityDigestSize int
}

// Agree returns the dialect after exchanging P_CONNECTION_FEATURES, as
// drbd_do_features decides it: the version is the smaller of both maxima
// (a peer maximum of 0 means its minimum), the features are what both
// offer. Ranges that do not overlap give ErrIncompatible.
func Agree(ours, theirs ConnectionFeatures) (Dialect, error) {
	peerMax := theirs.ProtocolMax
	if peerMax == 0 {
		peerMax = theirs.ProtocolMin
	}
	if ours.ProtocolMax < theirs.ProtocolMin || ours.ProtocolMin > peerMax {
		return Dialect{}, fmt.Errorf("%w: I support %d-%d, peer supports %d-%d",
			ErrIncompatible, ours.ProtocolMin, ours.ProtocolMax, theirs.ProtocolMin, peerMax)
	}
	d := Dialect{Version: int(min(ours.ProtocolMax, peerMax)), Features: ours.FeatureFlags & theirs.FeatureFlags}
	if err := d.validate(); err != nil {
		return Dialect{}, fmt.Errorf("%w: agreed version %d is outside %d..%d", ErrIncompatible, d.Version, ProtocolMin, ProtocolMax)
	}
	return d, nil
}

// Agreed reports whether the dialect is one after P_CONNECTION_FEATURES.
func (d Dialect) Agreed() bool { return d.Version != 0 }

// HeaderSize is the size of every header in this dialect: 16 (h100) from
// version 100 on, else 8 (h80 and h95 have the same size).
func (d Dialect) HeaderSize() int {
	if d.Version >= 100 {
		return 16
	}
	return 8
}

func (d Dialect) validate() error {
	if d.Version != 0 && (d.Version < ProtocolMin || d.Version > ProtocolMax) {
		return fmt.Errorf("%w: version %d is not 0 or %d..%d", ErrDialect, d.Version, ProtocolMin, ProtocolMax)
	}
	if d.IntegrityDigestSize < 0 || d.IntegrityDigestSize > MaxDigestSize {
		return fmt.Errorf("%w: integrity digest size %d is not 0..%d", ErrDialect, d.IntegrityDigestSize, MaxDigestSize)
	}
	if d.IntegrityDigestSize > 0 && d.Version < 87 {
		return fmt.Errorf("%w: data-integrity-alg needs version 87", ErrDialect)
	}
	return nil
}

func (d Dialect) has(f uint32) bool { return d.Features&f == f }
