package driver

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/config"
	"github.com/gdrbd/gdrbd/replication"
)

// The smaller disk decides the replicated size when both are fresh; a
// peer too small for data that is already in use is refused.
func TestSizeNegotiation(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	big, small := tempDisk(t, 32<<20), tempDisk(t, 24<<20)
	nodes := newPair(t, pairOpts{disks: [2]string{big, small}})
	a, b := nodes[alpha], nodes[bravo]
	up(t, ctx, nodes)
	initialSync(t, ctx, nodes)
	require.Equal(t, b.res.Status().SizeBytes, a.res.Status().SizeBytes, "the smaller disk wins")
	require.Less(t, a.res.Status().SizeBytes, int64(24<<20))
	size := a.res.Status().SizeBytes
	require.NoError(t, a.res.Down(ctx))
	require.NoError(t, b.res.Down(ctx))

	// alpha has UpToDate data of that size; a peer with an even smaller
	// disk (fresh metadata) must not shrink it.
	tiny := tempDisk(t, 16<<20)
	nodes2 := newPair(t, pairOpts{disks: [2]string{big, tiny}})
	a2, b2 := nodes2[alpha], nodes2[bravo]
	up(t, ctx, nodes2)
	waitState(t, ctx, a2, "StandAlone", func(s Status) bool { return s.State.Conn == replication.StandAlone })
	require.Contains(t, a2.res.Status().LastError, "too small")
	require.Equal(t, size, a2.res.Status().SizeBytes, "the data keeps its size")
	_ = b2
}

// allow-two-primaries is refused unless the protocol is C, as
// drbdsetup's net-options refuses it ("Protocol C required"): only under
// C are two Primaries' conflicting writes ordered.
func TestTwoPrimariesNeedProtocolC(t *testing.T) {
	t.Parallel()
	disks := [2]string{tempDisk(t, 24<<20), tempDisk(t, 24<<20)}
	for _, proto := range []string{"A", "B", "C"} {
		o := pairOpts{protocol: [2]string{proto, proto}, net: [2]string{"allow-two-primaries;", "allow-two-primaries;"}}
		cfg, err := config.Parse("drbd.conf", []byte(configText(o, alpha, disks, 7788)), config.Options{Node: nodeNames[alpha]})
		require.NoError(t, err)
		rc, err := cfg.Resource("r0")
		require.NoError(t, err)
		r, err := New(Options{Config: rc, RunDir: t.TempDir()})
		if proto != "C" {
			require.ErrorContains(t, err, "Protocol C required", "protocol %s", proto)
			continue
		}
		require.NoError(t, err)
		r.stop()
	}
}

// on-congestion other than block is parsed, not acted on: the daemon says
// so when the resource is created instead of leaving the user to believe
// the Primary pulls ahead of a slow link.
func TestOnCongestionNotImplementedIsLogged(t *testing.T) {
	t.Parallel()
	nodes := newPair(t, pairOpts{protocol: [2]string{"A", "A"}, net: [2]string{"on-congestion pull-ahead;", ""}})
	require.True(t, nodes[alpha].logged("on-congestion is not implemented"))
	require.False(t, nodes[bravo].logged("on-congestion is not implemented"))
}
