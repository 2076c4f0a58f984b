package replication

import (
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/protocol"
)

// challenged is a node with cram-hmac-alg sha256 that got the peer's
// features and sent its challenge (returned), and then got the peer's.
func challenged(t *testing.T) (*Node, []byte) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.CramHMACAlg, cfg.SharedSecret = "sha256", "s3cret"
	r := rand.New(rand.NewSource(1))
	n := NewNode(cfg, Options{Rand: r.Uint64})
	require.NoError(t, n.Connect(false))
	n.Connected(false)
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.ConnectionFeatures{ProtocolMin: 86, ProtocolMax: 101}}))
	_, pks := step(n)
	var ours []byte
	for _, p := range pks {
		if a, ok := p.(*protocol.Auth); ok && a.Cmd == protocol.CmdAuthChallenge {
			ours = a.Data
		}
	}
	require.NotNil(t, ours)
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.Auth{Cmd: protocol.CmdAuthChallenge, Data: make([]byte, 64)}}))
	step(n)
	return n, ours
}

// A peer whose answer shows it does not know the secret (here: the right
// length, computed with another algorithm) is refused for good: StandAlone
// ("Discarding network configuration."), as DRBD's drbd_do_auth returns
// -1; an answer of the wrong size is DRBD's "try again". The right answer
// goes on to the parameters.
func TestAuthFailureOutcomes(t *testing.T) {
	n, ours := challenged(t)
	wrong, err := protocol.Response("sha256", "other", ours)
	require.NoError(t, err)
	require.ErrorIs(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.Auth{Cmd: protocol.CmdAuthResponse, Data: wrong}}), ErrAuthFailed)
	drain(n)
	require.Equal(t, StandAlone, n.State().Conn)

	n, _ = challenged(t)
	require.ErrorIs(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.Auth{Cmd: protocol.CmdAuthResponse, Data: []byte{1}}}), ErrAuthFailed)
	drain(n)
	require.Equal(t, WFConnection, n.State().Conn, "tries again")

	n, ours = challenged(t)
	right, err := protocol.Response("sha256", "s3cret", ours)
	require.NoError(t, err)
	require.NoError(t, n.Receive(DataStream, protocol.Message{Packet: &protocol.Auth{Cmd: protocol.CmdAuthResponse, Data: right}}))
	require.Equal(t, WFReportParams, n.State().Conn)
}
