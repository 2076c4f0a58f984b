package bench

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseMem(t *testing.T) {
	t.Parallel()
	m, err := ParseMem("Name:\tgdrbd\nVmPeak:\t 1251924 kB\nVmHWM:\t   24776 kB\nVmRSS:\t   16912 kB\nThreads:\t9\n")
	require.NoError(t, err)
	require.Equal(t, Mem{RSS: 16912 << 10, HWM: 24776 << 10}, m)
	_, err = ParseMem("Name:\tx\n")
	require.Error(t, err)
	_, err = ParseMem("VmRSS:\t 12 MB\nVmHWM:\t 1 kB\n")
	require.Error(t, err)
}

func TestMeterSelf(t *testing.T) {
	t.Parallel()
	pid := os.Getpid()
	m := StartMeter(pid, 0)
	// Burn CPU until /proc shows at least one clock tick of it.
	c0, err := ProcCPU(pid)
	require.NoError(t, err)
	x := 0
	for {
		for i := range 1 << 20 {
			x += i
		}
		if c, _ := ProcCPU(pid); c > c0 {
			break
		}
	}
	u := m.Stop()
	require.NotZero(t, x)
	require.Greater(t, u.ProcCPU[pid], time.Duration(0))
	require.Greater(t, u.PeakRSS[pid], int64(0))
	// VmHWM lags VmRSS (per-CPU RSS counters), so only its presence is checked.
	require.Greater(t, u.HWM[pid], int64(0))
	require.GreaterOrEqual(t, u.Total, u.Busy)
	require.GreaterOrEqual(t, u.OtherBusy(0), 0.0)
	require.Len(t, u.ProcCPU, 1, "pid 0 is not watched")
	c, err := ReadCounts(pid)
	require.NoError(t, err)
	require.Greater(t, c.Syscalls, int64(0), "this test read /proc files")
	require.Greater(t, c.CtxSwitches, int64(0))
	require.Contains(t, u.Counts, pid)
}

func TestWaitQuietGivesUp(t *testing.T) {
	t.Parallel()
	// Nothing is ever less than 0% busy: it returns after one window.
	share := WaitQuiet(context.Background(), -1, 0)
	require.GreaterOrEqual(t, share, 0.0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.Equal(t, -1.0, WaitQuiet(ctx, 0.5, time.Minute))
}
