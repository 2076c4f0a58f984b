package driver

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRunInlineKeepsEachProducersOrder: goroutines that hand inputs to the
// core through runInline, falling back to post, see them run in the order
// they produced them, never two at once, and both paths are taken.
func TestRunInlineKeepsEachProducersOrder(t *testing.T) {
	nodes := newPair(t, pairOpts{})
	r := nodes[alpha].res
	r.ensureLoop()
	const producers, each = 4, 20000
	var seen [producers][]int // written only by inputs, under loopMu
	var running atomic.Int32
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				f := func() {
					if running.Add(1) != 1 {
						t.Error("two inputs ran at once")
					}
					seen[p] = append(seen[p], i)
					running.Add(-1)
				}
				if !r.runInline(f) && !r.post(f) {
					t.Error("loop gone")
					return
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, r.call(testCtx(t), func() {})) // the last posted ones ran
	require.NoError(t, r.call(testCtx(t), func() {
		for p := range producers {
			require.Len(t, seen[p], each)
			for i, v := range seen[p] {
				if v != i {
					t.Fatalf("producer %d: input %d ran as number %d", p, v, i)
				}
			}
		}
	}))
	inline := r.inlineRuns.Load()
	t.Logf("%d of %d inputs ran inline", inline, producers*each)
	require.Positive(t, inline)
	require.Less(t, inline, int64(producers*each))
}
