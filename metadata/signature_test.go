package metadata_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/blockdev"
	"github.com/gdrbd/gdrbd/blockdev/blockdevtest"
	"github.com/gdrbd/gdrbd/internal/tooltest"
	"github.com/gdrbd/gdrbd/metadata"
)

func TestExistingDataZero(t *testing.T) {
	t.Parallel()
	e, err := metadata.CheckExistingData(blockdev.NewMem(1 << 20))
	require.NoError(t, err)
	require.False(t, e.Found)
	text, refuse := e.Report(metadata.Layout{})
	require.Empty(t, text)
	require.False(t, refuse)
	m := blockdev.NewMem(1 << 20)
	_, err = m.WriteAt([]byte("hello"), 1000)
	require.NoError(t, err)
	e, err = metadata.CheckExistingData(m)
	require.NoError(t, err)
	require.Equal(t, "some data", e.Type)
	text, refuse = e.Report(metadata.Layout{Location: metadata.Internal()})
	require.Contains(t, text, "==> This might destroy existing data! <==")
	require.False(t, refuse)
}

// The report matches what drbdmeta create-md prints for the same device:
// a file system that fits below the metadata needs confirmation, one that
// fills the device is refused (exit 40), and so is swap.
func TestExistingDataLikeDrbdmeta(t *testing.T) {
	t.Parallel()
	mkfs := tooltest.Require(t, "mkfs.ext4")
	mkswap := tooltest.Require(t, "mkswap")
	cases := []struct {
		name   string
		mk     []string
		typ    string
		refuse bool
	}{
		{"ext4-small", []string{mkfs, "-q", "-F", "FILE", "100M"}, "ext3 filesystem", false},
		{"ext4-full", []string{mkfs, "-q", "-F", "FILE"}, "ext3 filesystem", true},
		{"swap", []string{mkswap, "FILE"}, "swap space signature", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path := blockdevtest.TempFile(t, 200<<20)
			args := append([]string(nil), c.mk[1:]...)
			for i, a := range args {
				if a == "FILE" {
					args[i] = path
				}
			}
			out, err := exec.Command(c.mk[0], args...).CombinedOutput()
			require.NoError(t, err, "%s", out)
			dev := openDev(t, path)
			e, err := metadata.CheckExistingData(dev)
			require.NoError(t, err)
			require.Equal(t, c.typ, e.Type)
			l, err := metadata.ComputeLayout(metadata.Internal(), dev.Size(), 1, 8)
			require.NoError(t, err)
			text, refuse := e.Report(l)
			require.Equal(t, c.refuse, refuse)
			stdout, _, code := drbdmeta(t, path, metadata.Internal(), "create-md")
			require.True(t, strings.HasPrefix(stdout, text), "drbdmeta said:\n%s\nwe say:\n%s", stdout, text)
			if c.refuse {
				require.Equal(t, 40, code)
			} else {
				require.Equal(t, 0, code)
			}
		})
	}
}
