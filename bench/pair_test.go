package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/config"
)

// The generated drbd.conf means what the benchmark says it measures,
// read by gdrbd's own parser as node a.
func TestConfigText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		cfg       PairConfig
		proto     config.Protocol
		maxBuf    int
		rateKiB   int64
		planAhead time.Duration
	}{
		{"default", PairConfig{}, config.ProtocolC, 2048, 250, 2 * time.Second},
		{"protocol A", PairConfig{Protocol: "A"}, config.ProtocolA, 2048, 250, 2 * time.Second},
		{"max-buffers 128", PairConfig{MaxBuffers: 128}, config.ProtocolC, 128, 250, 2 * time.Second},
		{"unlimited", ResyncUnlimited.Config, config.ProtocolC, 2048, 4000 << 10, 0},
		{"fixed 200M", ResyncFixed200MB.Config, config.ProtocolC, 32768, 200 << 10, 0},
		// The seed's syncer { rate 200M; } is 8.4's resync-rate.
		{"seed", ResyncSeed.Config, config.ProtocolC, 2048, 200 << 10, 2 * time.Second},
	} {
		src := tc.cfg.ConfigText("/dev/loop7", "/dev/loop8", 7001, 7002)
		cfg, err := config.Parse("drbd.conf", []byte(src), config.Options{Node: "a"})
		require.NoError(t, err, "%s:\n%s", tc.name, src)
		rc, err := cfg.Resource("r0")
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.proto, rc.Net.Protocol, tc.name)
		require.EqualValues(t, tc.maxBuf, rc.Net.MaxBuffers, tc.name)
		d := rc.Volumes[0].DiskOptions
		require.Equal(t, tc.rateKiB, d.ResyncRateKiB(), tc.name)
		require.Equal(t, tc.planAhead, d.CPlanAhead, tc.name)
		require.Equal(t, "/dev/loop7", rc.Volumes[0].Disk, tc.name)
		require.Equal(t, 7002, rc.Peer.Address.Port, tc.name)
	}
}
