package nbd

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/gdrbd/gdrbd/internal/tooltest"
)

// The kernel attach itself runs in the qemu guest (make e2e-kernel); these
// tests pin what can be checked on any host.

func TestConnectAttrsLayout(t *testing.T) {
	t.Parallel()
	opts := AttachOptions{Index: 3, BlockSize: 4096, Timeout: 5 * time.Second, DeadConnTimeout: 30 * time.Second}
	data, err := connectAttrs(1<<30, 0x1ed, opts, []int{7, 9}).Encode()
	require.NoError(t, err)
	ad, err := netlink.NewAttributeDecoder(data)
	require.NoError(t, err)
	got := map[uint16]uint64{}
	var fds []uint32
	for ad.Next() {
		switch ad.Type() {
		case nlAttrIndex:
			got[nlAttrIndex] = uint64(ad.Uint32())
		case nlAttrSockets:
			ad.Nested(func(s *netlink.AttributeDecoder) error {
				for s.Next() {
					require.Equal(t, uint16(nlSockItem), s.Type())
					s.Nested(func(i *netlink.AttributeDecoder) error {
						for i.Next() {
							require.Equal(t, uint16(nlSockFD), i.Type())
							fds = append(fds, i.Uint32())
						}
						return nil
					})
				}
				return nil
			})
		default:
			got[ad.Type()] = ad.Uint64() // every other CONNECT attribute is NLA_U64
		}
	}
	require.NoError(t, ad.Err())
	require.Equal(t, map[uint16]uint64{
		nlAttrIndex: 3, nlAttrSizeBytes: 1 << 30, nlAttrBlockSizeBytes: 4096,
		nlAttrTimeout: 5, nlAttrDeadConnTimeout: 30, nlAttrServerFlags: 0x1ed,
	}, got)
	require.Equal(t, []uint32{7, 9}, fds)

	// Index -1 leaves INDEX out: the kernel picks a free device.
	opts.Index = -1
	data, err = connectAttrs(1<<30, 1, opts, []int{7}).Encode()
	require.NoError(t, err)
	ad, err = netlink.NewAttributeDecoder(data)
	require.NoError(t, err)
	for ad.Next() {
		require.NotEqual(t, uint16(nlAttrIndex), ad.Type())
	}
}

func TestAttachOptionsChecked(t *testing.T) {
	t.Parallel()
	s, err := NewServer(Config{Backend: DeviceBackend{Dev: newMemDev(1 << 20)}, MinBlockSize: 4096})
	require.NoError(t, err)
	for _, bs := range []uint32{1000, 256, 2048, 1 << 20} {
		o := AttachOptions{BlockSize: bs}
		require.Error(t, o.defaults(s), "block size %d", bs)
	}
	o := AttachOptions{}
	require.NoError(t, o.defaults(s))
	require.Equal(t, uint32(4096), o.BlockSize)
	require.Equal(t, 2, o.Connections)
	require.Equal(t, 30*time.Second, o.DeadConnTimeout)
}

// TestNoKernelNBDIsTyped: without the module, Attach says so with a typed
// error and hands out no device path.
func TestNoKernelNBDIsTyped(t *testing.T) {
	t.Parallel()
	if present() {
		t.Skip("this host has the nbd module; the guest test covers attach")
	}
	require.ErrorIs(t, CheckKernelNBD(), ErrNoKernelNBD)
	s, err := NewServer(Config{Backend: DeviceBackend{Dev: newMemDev(1 << 20)}})
	require.NoError(t, err)
	d, err := Attach(context.Background(), s, AttachOptions{Index: -1})
	require.ErrorIs(t, err, ErrNoKernelNBD)
	var ke *KernelError
	require.ErrorAs(t, err, &ke)
	require.Nil(t, d)
	require.Zero(t, s.Connections(), "no socket left behind")
}

func TestMountsOf(t *testing.T) {
	t.Parallel()
	mi := `22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
36 22 43:0 / /srv/data rw - ext4 /dev/nbd0 rw
37 22 43:1 / /mnt/with\040space rw - ext4 /dev/nbd0p1 rw
38 22 43:32 / /other rw - ext4 /dev/nbd1 rw
`
	devs := map[uint64]bool{unix.Mkdev(43, 0): true, unix.Mkdev(43, 1): true}
	require.Equal(t, []string{"/srv/data", "/mnt/with space"}, mountsOf(mi, devs))
	require.Empty(t, mountsOf(mi, map[uint64]bool{unix.Mkdev(8, 0): true}))
}

func TestLinkDRBD(t *testing.T) {
	t.Parallel()
	dev := t.TempDir()
	require.NoError(t, LinkDRBD(dev, "/dev/nbd3", 0, "r0", 0))
	for _, l := range []string{"drbd0", "drbd/by-res/r0/0"} {
		dst, err := os.Readlink(filepath.Join(dev, l))
		require.NoError(t, err)
		require.Equal(t, "/dev/nbd3", dst)
	}
	require.NoError(t, LinkDRBD(dev, "/dev/nbd4", 0, "r0", 0), "relinking replaces")
	dst, _ := os.Readlink(filepath.Join(dev, "drbd0"))
	require.Equal(t, "/dev/nbd4", dst)
	require.Error(t, LinkDRBD(dev, "/dev/nbd4", 1, "../x", 0))
	require.NoError(t, os.WriteFile(filepath.Join(dev, "drbd5"), nil, 0o600))
	require.Error(t, LinkDRBD(dev, "/dev/nbd4", 5, "r5", 0), "a real file is never overwritten")

	require.NoError(t, UnlinkDRBD(dev, "/dev/nbd3", 0, "r0", 0))
	_, err := os.Lstat(filepath.Join(dev, "drbd0"))
	require.NoError(t, err, "links to another target stay")
	require.NoError(t, UnlinkDRBD(dev, "/dev/nbd4", 0, "r0", 0))
	_, err = os.Lstat(filepath.Join(dev, "drbd0"))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = os.Lstat(filepath.Join(dev, "drbd/by-res/r0"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestDeviceUsageLoop checks the usage probe on a real block device (a
// loop device): idle, mounted, and opened by another process.
func TestDeviceUsageLoop(t *testing.T) {
	t.Parallel()
	tooltest.RequireRoot(t)
	losetup := tooltest.Require(t, "losetup")
	mkfs := tooltest.Require(t, "mkfs.ext4")
	img := filepath.Join(t.TempDir(), "loop.img")
	require.NoError(t, os.WriteFile(img, nil, 0o600))
	require.NoError(t, os.Truncate(img, 16<<20))
	out, err := exec.Command(losetup, "-f", "--show", img).CombinedOutput()
	if err != nil {
		tooltest.Missing(t, "loop devices unavailable: "+string(out))
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command(losetup, "-d", loop).Run() })

	u, err := DeviceUsage(loop)
	require.NoError(t, err)
	require.False(t, u.InUse(), "%s", u)

	out, err = exec.Command(mkfs, "-q", "-F", loop).CombinedOutput()
	require.NoError(t, err, "%s", out)
	mnt := t.TempDir()
	require.NoError(t, unix.Mount(loop, mnt, "ext4", 0, ""))
	u, err = DeviceUsage(loop)
	_ = unix.Unmount(mnt, 0)
	require.NoError(t, err)
	require.Equal(t, []string{mnt}, u.Mounted)
	require.True(t, u.Exclusive)
	require.True(t, u.InUse())
	require.Contains(t, u.String(), "mounted on "+mnt)

	hold := exec.Command("sleep", "30")
	f, err := os.Open(loop)
	require.NoError(t, err)
	hold.Stdin = f
	require.NoError(t, hold.Start())
	f.Close()
	t.Cleanup(func() { _ = hold.Process.Kill(); _ = hold.Wait() })
	u, err = DeviceUsage(loop)
	require.NoError(t, err)
	require.Equal(t, []int{hold.Process.Pid}, u.Openers)
	require.False(t, u.Exclusive, "a plain open is only visible in /proc/*/fd")

	_, err = DeviceUsage(img)
	require.Error(t, err, "not a block device")
}
