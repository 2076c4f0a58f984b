package bench

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Reports of real fio 3.33 runs against gdrbd's NBD export.
func TestParseFioFsync(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/fio-nbd-fsync.json")
	require.NoError(t, err)
	r, err := ParseFio(b)
	require.NoError(t, err)
	require.InDelta(t, 956.808638, r.IOPS, 1e-6)
	require.InDelta(t, 3919088, r.BW, 1e-6)
	require.Equal(t, int64(4785), r.Ops)
	require.Equal(t, 444416*time.Nanosecond, r.WriteP50)
	require.Equal(t, 2637824*time.Nanosecond, r.WriteP99)
	require.Equal(t, int64(4785), r.SyncOps)
	require.Equal(t, 387072*time.Nanosecond, r.SyncP50)
	require.Equal(t, 3424256*time.Nanosecond, r.SyncP99)
	require.Equal(t, 5001*time.Millisecond, r.Runtime)
}

func TestParseFioNoSync(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/fio-nbd-randwrite-qd16.json")
	require.NoError(t, err)
	r, err := ParseFio(b)
	require.NoError(t, err)
	require.InDelta(t, 4087.764894, r.IOPS, 1e-6)
	require.Equal(t, int64(20447), r.Ops)
	require.Equal(t, 3555328*time.Nanosecond, r.WriteP50)
	require.Zero(t, r.SyncOps)
	require.Zero(t, r.SyncP50)
}

func TestParseFioErrors(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]string{
		"not json": "fio: connected to NBD server\n{",
		"no jobs":  `{"jobs": []}`,
		"two jobs": `{"jobs": [{}, {}]}`,
		"failed":   `{"jobs": [{"error": 5}]}`,
	} {
		_, err := ParseFio([]byte(in))
		require.ErrorIs(t, err, ErrFio, name)
	}
}

func TestFioArgs(t *testing.T) {
	t.Parallel()
	j := Seq1MJ4.Job(EngineNBD, "nbd+unix:///r0?socket=/x", 1<<30, 8*time.Second)
	require.Equal(t, []string{
		"--name=seq1m-j4", "--ioengine=nbd", "--rw=write", "--bs=1048576", "--iodepth=4", "--numjobs=4",
		"--group_reporting", "--time_based", "--runtime=8000ms", "--randrepeat=0",
		"--output-format=json", "--output=out.json",
		// Four sequential writers side by side, a quarter each.
		"--offset_increment=268435456", "--size=268435456",
		"--uri=nbd+unix:///r0?socket=/x",
	}, j.Args("out.json"))

	j = Sync4k.Job(EnginePsync, "/dev/loop9", 1<<30, time.Second)
	a := j.Args("o.json")
	require.Contains(t, a, "--fsync=1")
	require.Contains(t, a, "--size=1073741824")
	require.Contains(t, a, "--filename=/dev/loop9")
	require.Contains(t, a, "--direct=1")
	require.Contains(t, a, "--ioengine=psync")
}

func TestEngineString(t *testing.T) {
	t.Parallel()
	require.Equal(t, "libaio", EngineLibaio.String())
	require.Equal(t, "Engine(0)", Engine(0).String())
	require.Equal(t, "qemu-nbd", ServerQemuNBD.String())
	require.Equal(t, "ServerKind(0)", ServerKind(0).String())
	require.Equal(t, "gdrbd protocol C", TargetProtoC.String())
	require.Equal(t, "Target(0)", Target(0).String())
}
