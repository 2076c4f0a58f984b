package config

import (
	"encoding/xml"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/gdrbd/gdrbd/internal/tooltest"
	"github.com/stretchr/testify/require"
)

// TestParseNumber follows drbd-utils' new_strtoll: a bare number is in the
// option's unit; K, M, G are powers of two; s is a 512-byte sector;
// converting to a larger unit rounds up.
func TestParseNumber(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in    string
		scale byte
		want  uint64
		err   numErr
	}{
		{"0", '1', 0, numOK},
		{"250", 'k', 250, numOK},      // resync-rate 250 = 250 KiB/s
		{"200M", 'k', 204800, numOK},  // the seed's rate
		{"200m", 'k', 204800, numOK},  // lower case too
		{"1G", 'k', 1 << 20, numOK},   // 1 GiB/s in KiB/s
		{"4K", 'k', 4, numOK},         // KiB in KiB
		{"1s", 'k', 1, numOK},         // 512 bytes rounds up to 1 KiB
		{"3s", 'k', 2, numOK},         // 1536 bytes -> 2 KiB
		{"1K", 's', 2, numOK},         // 1 KiB = 2 sectors
		{"1", 's', 1, numOK},          // bare = sectors
		{"1M", 's', 2048, numOK},      // c-fill-target 1M
		{"10G", 's', 20971520, numOK}, // size 10G
		{"512K", '1', 524288, numOK},  // sndbuf-size in bytes
		{"1s", '1', 512, numOK},
		{"2g", '1', 2 << 30, numOK},
		{"10T", 'k', 0, numInvalid}, // no T
		{"1.5M", 'k', 0, numInvalid},
		{"0x10", '1', 0, numInvalid},
		{"M", '1', 0, numInvalid},
		{"", '1', 0, numInvalid},
		{"-1", '1', 0, numInvalid},
		{"10MM", '1', 0, numInvalid},
		{"18446744073709551615", '1', math.MaxUint64, numOK},
		{"18446744073709551616", '1', 0, numOverflow},
		{"17179869184G", '1', 0, numOverflow},
	}
	for _, c := range cases {
		got, err := parseNumber(c.in, c.scale)
		require.Equal(t, c.err, err, "%q scale %c", c.in, c.scale)
		require.Equal(t, c.want, got, "%q scale %c", c.in, c.scale)
	}
}

// TestDefaults loads a resource that sets nothing and checks every typed
// default against drbd_limits.h.
func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := Parse("d.conf", []byte(`resource r0 { on a { device minor 0; disk /d; address 10.0.0.1:7788; meta-disk internal; } }`), fuzzOptions("a"))
	require.NoError(t, err)
	r, err := c.Resource("r0")
	require.NoError(t, err)
	n := r.Net
	require.Equal(t, ProtocolC, r.Protocol)
	require.Equal(t, 6*time.Second, n.Timeout)
	require.Equal(t, 10*time.Second, n.ConnectInt)
	require.Equal(t, 10*time.Second, n.PingInt)
	require.Equal(t, 500*time.Millisecond, n.PingTimeout)
	require.Equal(t, 7, n.KoCount)
	require.Equal(t, 2048, n.MaxBuffers)
	require.Equal(t, 2048, n.MaxEpochSize)
	require.Equal(t, 128, n.UnplugWatermark)
	require.Equal(t, 1237, n.CongestionExtents)
	require.Equal(t, ASBDisconnect, n.AfterSB0Pri)
	require.Equal(t, ASBDisconnect, n.AfterSB1Pri)
	require.Equal(t, ASBDisconnect, n.AfterSB2Pri)
	require.Equal(t, RRConflictDisconnect, n.RRConflict)
	require.Equal(t, CongestionBlock, n.OnCongestion)
	require.False(t, n.AllowTwoPrimaries)
	require.True(t, n.TCPCork)
	require.True(t, n.UseRLE)
	require.False(t, n.IsSet("timeout"))

	for _, d := range []DiskOptions{r.Disk, r.Volumes[0].DiskOptions} {
		require.Equal(t, IOErrorDetach, d.OnIOError)
		require.Equal(t, FencingDontCare, d.Fencing)
		require.Equal(t, int64(250*1024), d.ResyncRate)
		require.Equal(t, int64(250), d.ResyncRateKiB())
		require.Equal(t, 1237, d.ALExtents)
		require.Equal(t, 2*time.Second, d.CPlanAhead)
		require.Equal(t, time.Second, d.CDelayTarget)
		require.Equal(t, int64(100), d.CFillTarget)
		require.Equal(t, int64(102400*1024), d.CMaxRate)
		require.Equal(t, int64(250*1024), d.CMinRate)
		require.False(t, d.DiskBarrier)
		require.True(t, d.DiskFlushes)
		require.True(t, d.DiskDrain)
		require.True(t, d.MDFlushes)
		require.True(t, d.ALUpdates)
		require.True(t, d.DiscardZeroesIfAligned)
		require.Equal(t, ReadPreferLocal, d.ReadBalancing)
		require.Equal(t, -1, d.ResyncAfterMinor)
		require.Zero(t, d.Size)
	}
	require.Equal(t, OnNoDataIOError, r.Options.OnNoDataAccessible)
	require.Zero(t, r.Startup.WFCTimeout)
	require.Zero(t, r.Startup.DegrWFCTimeout)
	require.Equal(t, UsageCountAsk, c.Global.UsageCount)
	require.Equal(t, time.Second, c.Global.DialogRefresh)
	require.Equal(t, CompressionNone, r.Ext.Compression)
}

// TestUnitsPerOption: the same written value means different things in
// different options, and Load converts each to its Go unit.
func TestUnitsPerOption(t *testing.T) {
	t.Parallel()
	src := `resource r0 {
		net  { timeout 60; ping-timeout 9; connect-int 15; ping-int 3; sndbuf-size 1M; congestion-fill 1M; socket-check-timeout 7; }
		disk { resync-rate 200M; c-max-rate 1G; c-min-rate 3s; c-fill-target 64K; c-plan-ahead 15; c-delay-target 25; size 2G; disk-timeout 12; al-extents 99999; rs-discard-granularity 1M; }
		startup { wfc-timeout 90; degr-wfc-timeout 120; outdated-wfc-timeout 7; }
		on a { device minor 0; disk /d; address 10.0.0.1:7788; meta-disk internal; }
	}`
	c, err := Parse("u.conf", []byte(src), fuzzOptions("a"))
	require.NoError(t, err)
	r := c.Resources[0]
	require.Equal(t, 6*time.Second, r.Net.Timeout)
	require.Equal(t, 900*time.Millisecond, r.Net.PingTimeout)
	require.Equal(t, 15*time.Second, r.Net.ConnectInt)
	require.Equal(t, 3*time.Second, r.Net.PingInt)
	require.Equal(t, int64(1<<20), r.Net.SndbufSize)
	require.Equal(t, int64(2048), r.Net.CongestionFill) // sectors
	require.Equal(t, 700*time.Millisecond, r.Net.SocketCheckTimeout)
	d := r.Disk
	require.Equal(t, int64(200<<20), d.ResyncRate) // bytes/s
	require.Equal(t, int64(204800), d.ResyncRateKiB())
	require.Equal(t, int64(1<<30), d.CMaxRate)
	require.Equal(t, int64(2048), d.CMinRate) // 3 sectors round up to 2 KiB
	require.Equal(t, int64(128), d.CFillTarget)
	require.Equal(t, 1500*time.Millisecond, d.CPlanAhead)
	require.Equal(t, 2500*time.Millisecond, d.CDelayTarget)
	require.Equal(t, int64(4<<20), d.Size) // sectors
	require.Equal(t, 1200*time.Millisecond, d.DiskTimeout)
	require.Equal(t, 65534, d.ALExtents) // clamped as the kernel does
	require.Equal(t, int64(1<<20), d.RsDiscardGranularity)
	require.Equal(t, 90*time.Second, r.Startup.WFCTimeout)
	require.Equal(t, 2*time.Minute, r.Startup.DegrWFCTimeout)
	require.Equal(t, 7*time.Second, r.Startup.OutdatedWFCTimeout)
	s, ok := d.Setting("resync-rate")
	require.True(t, ok)
	require.Equal(t, "200M", s.Value)
	require.Equal(t, "u.conf:3:10", s.Pos.String()) // tabs are one column
}

// TestRanges checks both ends of every numeric option's range: the limit
// itself loads, one past it is an error naming the range.
func TestRanges(t *testing.T) {
	t.Parallel()
	for _, d := range optDefs {
		if d.kind != kindNumeric {
			continue
		}
		load := func(v int64) error {
			src := fmt.Sprintf("resource r0 { %s { %s %d; } on a { device minor 0; disk /d; address 10.0.0.1:7788; meta-disk internal; } }", d.sec, d.name, v)
			_, err := Parse("r.conf", []byte(src), fuzzOptions("a"))
			return err
		}
		require.NoError(t, load(d.min), d.name)
		require.NoError(t, load(d.max), d.name)
		if d.clamp {
			require.NoError(t, load(d.max+1), d.name)
			continue
		}
		err := load(d.max + 1)
		require.ErrorIs(t, err, ErrInvalid, d.name)
		require.Contains(t, err.Error(), fmt.Sprintf("%s %d is out of range [%d..%d]", d.name, d.max+1, d.min, d.max))
		if d.min > 0 {
			require.Error(t, load(d.min-1), d.name)
		}
	}
}

type xmlHelp struct {
	Options []struct {
		Name     string   `xml:"name,attr"`
		Type     string   `xml:"type,attr"`
		Min      string   `xml:"min"`
		Max      string   `xml:"max"`
		Default  string   `xml:"default"`
		Unit     string   `xml:"unit_prefix"`
		Handlers []string `xml:"handler"`
	} `xml:"option"`
}

// TestOptionTableMatchesDrbdsetup compares the option table with what
// drbdsetup-84 says about each option (`drbdsetup-84 xml-help CMD`): type,
// range, default, unit prefix and enum spellings.
func TestOptionTableMatchesDrbdsetup(t *testing.T) {
	t.Parallel()
	setup := tooltest.Require(t, "drbdsetup-84")
	for cmd, sec := range map[string]section{"connect": secNet, "attach": secDisk, "resource-options": secOptions} {
		out, err := exec.Command(setup, "xml-help", cmd).Output()
		require.NoError(t, err)
		var h xmlHelp
		require.NoError(t, xml.Unmarshal(out, &h))
		seen := 0
		for _, o := range h.Options {
			d := lookupOpt(sec, o.Name)
			if d == nil {
				// connect's command-only flags and addresses, set-defaults
				require.Contains(t, []string{"tentative", "discard-my-data", "alternate-address", "alternate-peer-address", "set-defaults"}, o.Name)
				continue
			}
			seen++
			if o.Name == "resync-after" {
				// drbdsetup takes the minor (-1 none); drbd.conf names the
				// resource and drbdadm resolves it (ResyncAfterMinor).
				require.Equal(t, []string{"-1", "1048575", "-1"}, []string{o.Min, o.Max, o.Default})
				continue
			}
			switch o.Type {
			case "numeric":
				require.Equal(t, kindNumeric, d.kind, o.Name)
				require.Equal(t, o.Min, strconv.FormatInt(d.min, 10), o.Name)
				require.Equal(t, o.Max, strconv.FormatInt(d.max, 10), o.Name)
				require.Equal(t, o.Default, strconv.FormatInt(d.def, 10), o.Name)
				require.Equal(t, o.Unit, string(d.scale), o.Name)
			case "boolean":
				require.Equal(t, kindBool, d.kind, o.Name)
				require.Equal(t, o.Default, d.describeDefault(), o.Name)
			case "handler":
				require.Equal(t, kindEnum, d.kind, o.Name)
				var names []string
				for _, v := range d.values {
					if v != "" {
						names = append(names, v)
					}
				}
				require.Equal(t, o.Handlers, names, o.Name)
			case "string":
				require.Equal(t, kindString, d.kind, o.Name)
			default:
				t.Fatalf("%s: unexpected type %s", o.Name, o.Type)
			}
		}
		var want int
		for _, d := range optDefs {
			if d.sec == sec {
				want++
			}
		}
		require.Equal(t, want, seen, "options of %s not offered by drbdsetup-84 %s", sec, cmd)
	}
}
