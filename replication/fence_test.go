package replication

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// handlers runs n's Readies like drain and returns the handlers asked for
// (and, in logged, the messages logged).
func handlers(n *Node, logged ...*[]string) []Handler {
	var hs []Handler
	o := pumpOpts{handlers: &hs}
	if len(logged) > 0 {
		o.logged = logged[0]
	}
	pump(n, o)
	return hs
}

func fencingPrimary(t *testing.T, f Fencing) *Node {
	t.Helper()
	n, _ := connectedNode(t, 64<<20, 0, RoleSecondary, func(*AttachParams) {})
	n.cfg.Fencing = f
	promote(t, n)
	return n
}

// A Primary that loses its UpToDate peer runs the fence-peer handler at
// once (DRBD's conn_disconnect → conn_try_outdate_peer_async), so
// crm-fence-peer.sh can keep the cluster from promoting the peer, which
// misses every write from now on. Before, the handler ran only when a
// node was promoted while disconnected: a Primary that lost its Secondary
// never placed the constraint.
func TestPrimaryFencesThePeerItLost(t *testing.T) {
	n := fencingPrimary(t, FencingResourceOnly)
	n.Disconnected("test")
	hs := handlers(n)
	require.Len(t, hs, 1)
	require.Equal(t, "fence-peer", hs[0].Name)
	require.True(t, hs[0].Wait)
	n.HandlerDone(hs[0].ID, fencePeerOutdated)
	handlers(n)
	require.Equal(t, Outdated, n.State().PDsk)
}

// resource-and-stonith: the I/O suspension shown while the handler runs
// ends when the peer is fenced.
func TestFencedPeerClearsSuspFen(t *testing.T) {
	n := fencingPrimary(t, FencingResourceAndStonith)
	n.Disconnected("test")
	hs := handlers(n)
	require.Len(t, hs, 1)
	require.True(t, n.State().SuspFen)
	n.HandlerDone(hs[0].ID, fencePeerStonithed)
	handlers(n)
	require.Equal(t, Outdated, n.State().PDsk)
	require.False(t, n.State().SuspFen)
}

// The handler's answer is ignored when the connection came back while it
// ran; nothing is fenced with fencing dont-care or on a Secondary.
func TestFencePeerAnswerAfterReconnectIsIgnored(t *testing.T) {
	n := fencingPrimary(t, FencingResourceOnly)
	n.Disconnected("test")
	hs := handlers(n)
	require.Len(t, hs, 1)
	n.Connected(false)
	sayHello(t, n, 0, RoleSecondary)
	handlers(n)
	require.GreaterOrEqual(t, n.State().Conn, Connected)
	pdsk := n.State().PDsk
	var logged []string
	n.HandlerDone(hs[0].ID, fencePeerOutdated)
	handlers(n, &logged)
	require.Contains(t, logged, "Ignoring fence-peer exit code")
	require.Equal(t, pdsk, n.State().PDsk)

	d := fencingPrimary(t, FencingDontCare)
	d.Disconnected("test")
	require.Empty(t, handlers(d))

	s, _ := connectedNode(t, 64<<20, 0, RolePrimary)
	s.cfg.Fencing = FencingResourceOnly
	s.Disconnected("test")
	require.Empty(t, handlers(s))
}
