package sim

import (
	"flag"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/gdrbd/gdrbd/replication"
)

var (
	flagSeeds = flag.Int("sim.seeds", 20, "number of seeds TestSimSeeds runs")
	flagSeed  = flag.Int64("seed", -1, "run only this seed, with a trace")
	flagFirst = flag.Int64("sim.first", 1, "first seed")
)

// optionsFor derives a run's options from its seed alone.
func optionsFor(seed int64) Options {
	o := Options{Seed: seed, Faults: seed%5 != 0, DiskSize: 16 << 20, Duration: 3_000_000, QueueDepth: 4}
	switch seed % 3 {
	case 0:
		o.Protocol = replication.ProtocolC
	case 1:
		o.Protocol = replication.ProtocolB
	default:
		o.Protocol = replication.ProtocolC
	}
	o.SkipInitialSync = seed%4 == 1
	if seed%4 == 3 {
		// More extents than al-extents (67): writes evict AL extents.
		o.DiskSize = 320 << 20
		o.SkipInitialSync = true
	}
	// Two Primaries writing the same blocks (protocol C, no faults); every
	// other such seed lets a node overlap its own writes, every third
	// writes across the 4 MiB boundary of two AL extents.
	o.TwoPrimaries = seed%7 == 6
	if o.TwoPrimaries {
		// The initial full sync runs with one Primary (the other seeds
		// cover it) and is the longest part of such a run.
		o.SkipInitialSync = true
	}
	o.DualOverlap = (seed/7)%2 == 1
	if (seed/7)%3 == 2 {
		o.DualBase = 1000
	}
	return o
}

// TestSimSeeds runs many seeded simulations; a failure prints its seed,
// and `go test ./replication/sim -run TestSimSeeds -seed N` replays it
// with a trace.
func TestSimSeeds(t *testing.T) {
	if *flagSeed >= 0 {
		o := optionsFor(*flagSeed)
		o.Trace = true
		s := New(o)
		res, err := s.Run()
		if err != nil {
			t.Log(s.Trace())
			t.Fatalf("%v", err)
		}
		if testing.Verbose() {
			t.Log(s.Trace())
		}
		t.Logf("seed %d: %+v", *flagSeed, res)
		return
	}
	seeds := make(chan int64)
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed := range seeds {
				s := New(optionsFor(seed))
				if _, err := s.Run(); err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%v (replay: go test ./replication/sim -run TestSimSeeds -seed %d)", err, seed))
					mu.Unlock()
				}
			}
		}()
	}
	for i := int64(0); i < int64(*flagSeeds); i++ {
		seeds <- *flagFirst + i
	}
	close(seeds)
	wg.Wait()
	for i, f := range failures {
		if i >= 10 {
			t.Errorf("... and %d more failures", len(failures)-10)
			break
		}
		t.Error(f)
	}
}

// TestSimDeterministic: the same seed gives the same run.
func TestSimDeterministic(t *testing.T) {
	t.Parallel()
	o := optionsFor(7)
	o.Trace = true
	a := New(o)
	_, errA := a.Run()
	b := New(o)
	_, errB := b.Run()
	if fmt.Sprint(errA) != fmt.Sprint(errB) || a.Trace() != b.Trace() {
		t.Fatalf("seed 7 ran differently twice")
	}
}

// regressionSeeds failed once; each runs in about a second. (A change to
// the simulator's use of its random numbers gives them other runs; the
// scenario tests pin the behaviours themselves.)
var regressionSeeds = []int64{
	404411, 407111, // double failure: the heal promoted the fenced node (split brain)
}

func TestSimRegressionSeeds(t *testing.T) {
	t.Parallel()
	for _, seed := range regressionSeeds {
		s := New(optionsFor(seed))
		if _, err := s.Run(); err != nil {
			t.Errorf("%v (replay: go test ./replication/sim -run TestSimSeeds -seed %d)", err, seed)
		}
	}
}
