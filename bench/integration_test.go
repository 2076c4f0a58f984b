package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/internal/tooltest"
)

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
	buildDir  string
)

// gdrbdBinary builds cmd/gdrbd once for the tests that run real daemons.
func gdrbdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "gbbin")
		if buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "gdrbd")
		var out []byte
		goCmd, err := exec.LookPath("go")
		if err != nil {
			goCmd = "/usr/local/go/bin/go" // where the CI image installs it
		}
		out, buildErr = exec.Command(goCmd, "build", "-o", buildBin, "../cmd/gdrbd").CombinedOutput()
		if buildErr != nil {
			buildErr = &buildError{buildErr, string(out)}
		}
	})
	require.NoError(t, buildErr)
	return buildBin
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// shortDir is a scratch directory with a short path (unix socket paths
// are limited to 108 bytes; t.TempDir's are long).
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "gbt")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// A pair on two small loop devices: full initial sync measured from the
// log, a fio point on the Primary, StandAlone, and a cleanup that leaves
// no daemon, run directory or loop device behind.
func TestPairEndToEnd(t *testing.T) {
	t.Parallel()
	tooltest.RequireRoot(t)
	tooltest.Require(t, "losetup")
	fio := tooltest.Require(t, "fio")
	bin := gdrbdBinary(t)
	ctx := testCtx(t)
	dir := shortDir(t)
	const size = 64 << 20
	var disks [2]*Disk
	for i, n := range []string{"a.img", "b.img"} {
		d, err := NewDisk(ctx, dir, n, size)
		require.NoError(t, err)
		t.Cleanup(func() { d.Close() })
		disks[i] = d
	}
	p, err := StartPair(ctx, bin, dir, disks, ResyncUnlimitedMB.Config)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	pa, pb := p.A.Pid(), p.B.Pid()
	require.NotZero(t, pa)
	require.NotZero(t, pb)
	require.NotEqual(t, pa, pb)

	rs, err := p.FullSync(ctx, fio, nil, time.Minute)
	require.NoError(t, err)
	st, err := p.A.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, st.Devices[0].Size, rs.Log.KiB, "the whole device was synced")
	require.Greater(t, rs.Log.Rate(), 0.0)
	require.Contains(t, rs.Log.DoneLine, "Resync done (total")
	require.Greater(t, rs.Usage.ProcCPU[pb], time.Duration(0), "the target's daemon worked")

	m := StartMeter(pa, pb)
	fr, err := RunFio(ctx, fio, dir, Rand4kJ1.Job(EngineNBD, p.URI(), size-8<<20, 500*time.Millisecond))
	u := m.Stop()
	require.NoError(t, err)
	require.Greater(t, fr.Ops, int64(0))
	require.Greater(t, fr.WriteP50, time.Duration(0))
	require.Equal(t, "fio", fr.Command[0])
	pt := Point{Target: TargetProtoC, Work: Rand4kJ1, Fio: fr, Usage: u, Primary: pa, Second: pb}
	require.Greater(t, pt.CPUPerIO(), 0.0)
	require.Greater(t, u.PeakRSS[pa], int64(1<<20))

	_, err = p.A.Run(ctx, "disconnect", "r0")
	require.NoError(t, err)
	require.NoError(t, p.A.WaitCState(ctx, "StandAlone", 10*time.Second))

	require.NoError(t, p.Close())
	require.False(t, alive(pa))
	require.False(t, alive(pb))
	require.NoDirExists(t, p.A.RunDir)
	for _, d := range disks {
		require.NoError(t, d.Close())
		out, err := exec.Command("losetup", "-j", d.File).CombinedOutput()
		require.NoError(t, err)
		require.Empty(t, strings.TrimSpace(string(out)))
		require.NoFileExists(t, d.File)
	}
}

// A reference server on a plain file: fio reaches it, Close stops it.
func TestServerQemuNBD(t *testing.T) {
	t.Parallel()
	tooltest.Require(t, "qemu-nbd")
	fio := tooltest.Require(t, "fio")
	ctx := testCtx(t)
	dir := shortDir(t)
	file := filepath.Join(dir, "f.img")
	require.NoError(t, writeThrough(file, 16<<20))
	s, err := StartServer(ctx, ServerQemuNBD, dir, file)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	fr, err := RunFio(ctx, fio, dir, Sync4k.Job(EngineNBD, s.URI, 8<<20, 300*time.Millisecond))
	require.NoError(t, err)
	require.Greater(t, fr.Ops, int64(0))
	require.InDelta(t, fr.Ops, fr.SyncOps, 1, "one flush per write (the run may end between the two)")
	pid := s.Pid()
	require.NoError(t, s.Close())
	require.False(t, alive(pid))
}

func TestCheckEnvSkips(t *testing.T) {
	t.Parallel()
	err := CheckEnv(Plan{Gdrbd: "/nonexistent/gdrbd", Fio: "fio"})
	require.ErrorIs(t, err, ErrSkip)
	if os.Geteuid() == 0 {
		err = CheckEnv(Plan{Gdrbd: os.Args[0], Fio: "no-such-fio-here"})
		require.ErrorIs(t, err, ErrSkip)
		require.Contains(t, err.Error(), "no-such-fio-here is not installed")
	}
}
