package sim

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gdrbd/gdrbd/replication"
)

// dualDuringResync: n0 Primary writes during a partition; the nodes
// reconnect and n1 resyncs from n0; n1 is promoted while SyncTarget and
// both write the hot region (at base) during the resync. Checked: the
// disks converge byte for byte (checkConverged, LAST WRITER WINS), and
// nothing needed ko-count, a missing-ack timeout or a protocol error to
// get there (a deadlock between the resync and conflict resolution would).
func dualDuringResync(seed, base int64) (*Sim, error) {
	o := optionsFor(seed*7 + 6)
	o.DualBase = base
	o.DualOverlap = seed%2 == 0
	o.Trace = true
	o.Tweak = func(_ int, c *replication.Config) { c.ResyncRate = 40; c.CPlanAhead = 0 }
	s := New(o)
	a, b := s.nodes[0], s.nodes[1]
	s.boot(a)
	s.boot(b)
	s.runUntil(s.now+2_000_000, func() bool { return s.connUp && bothConnected(a, b) })
	s.admin(a, func(done func(error)) { a.core.NewCurrentUUID(true, done) })
	s.runUntil(s.now+2_000_000, func() bool { return upToDate(a) && upToDate(b) })
	s.admin(a, func(done func(error)) { a.core.Primary(false, done) })
	s.runUntil(s.now+2_000_000, func() bool { return a.core.State().Role == replication.RolePrimary })
	s.startApp(a)
	s.runUntil(s.now+50_000, func() bool { return false })
	s.partition(300_000)
	s.runUntil(s.now+2_000_000, func() bool {
		return a.core.State().Conn == replication.SyncSource && b.core.State().Conn == replication.SyncTarget
	})
	if s.err != nil {
		return s, s.err
	}
	if a.core.State().Conn != replication.SyncSource {
		return s, fmt.Errorf("no resync: %s / %s", a.core.State(), b.core.State())
	}
	s.admin(b, func(done func(error)) { b.core.Primary(false, done) })
	s.runUntil(s.now+2_000_000, func() bool { return b.core.State().Role == replication.RolePrimary || s.err != nil })
	if b.core.State().Role != replication.RolePrimary {
		return s, fmt.Errorf("%s not Primary: %s", b.name, b.core.State())
	}
	s.logf("%s Primary during %s", b.name, b.core.State())
	s.startApp(b)
	end := s.now + 2_000_000
	s.after(end-s.now, func() { s.stopApp() })
	s.runUntil(end, func() bool { return false })
	if s.err != nil {
		return s, s.err
	}
	s.runUntil(s.now+120_000_000, func() bool {
		return len(a.app.inflight) == 0 && len(b.app.inflight) == 0 && s.converged()
	})
	if s.err != nil {
		return s, s.err
	}
	if !s.converged() {
		return s, fmt.Errorf("did not converge: %s / %s, in flight %d / %d, oos %d / %d", s.state(a), s.state(b),
			len(a.app.inflight), len(b.app.inflight), a.core.OutOfSync(), b.core.OutOfSync())
	}
	s.checkConverged()
	if s.err != nil {
		return s, s.err
	}
	tr := s.Trace()
	for _, bad := range []string{"ko-count", "missing ack", "cs:Timeout", "protocol error"} {
		if strings.Contains(tr, bad) {
			return s, fmt.Errorf("the trace has %q", bad)
		}
	}
	return s, nil
}

// TestTwoPrimariesDuringResync runs dualDuringResync for a few seeds, with
// the hot region inside one AL extent and across the boundary of two, and
// every other seed with a node's own writes overlapping.
func TestTwoPrimariesDuringResync(t *testing.T) {
	t.Parallel()
	answers := 0
	for seed := int64(1); seed <= 8; seed++ {
		for _, base := range []int64{0, 1000} {
			s, err := dualDuringResync(seed, base)
			if err != nil {
				tr := s.Trace()
				if len(tr) > 6000 {
					tr = tr[len(tr)-6000:]
				}
				t.Fatalf("seed %d base %d: %v\n...%s", seed, base, err, tr)
			}
			answers += s.res.Superseded + s.res.Retried
		}
	}
	require := func(ok bool, msg string) {
		if !ok {
			t.Fatal(msg)
		}
	}
	require(answers > 0, "no write crossed: the test tested nothing")
	t.Logf("%d crossing writes resolved", answers)
}
