package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/blockdev"
	"github.com/gdrbd/gdrbd/blockdev/blockdevtest"
	"github.com/gdrbd/gdrbd/internal/tooltest"
	"github.com/gdrbd/gdrbd/metadata"
)

// mdConfig writes a drbd.conf with resource r0 on disk (internal
// metadata) and returns its path.
func mdConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "drbd.conf")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

func r0Config(t *testing.T, disk string) string {
	return mdConfig(t, fmt.Sprintf(`resource r0 {
  on node1 { device /dev/drbd7; disk %s; address 127.0.0.1:7788; meta-disk internal; }
  on node2 { device /dev/drbd7; disk /dev/null; address 127.0.0.2:7788; meta-disk internal; }
}
`, disk))
}

// gdrbd runs one command line in-process.
func gdrbd(t *testing.T, conf, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	env := &cliEnv{ConfigPath: conf, Node: "node1", RunDir: t.TempDir(), Stdout: &o, Stderr: &e, Stdin: strings.NewReader(stdin)}
	code = run(env, args)
	return o.String(), e.String(), code
}

// realDrbdmeta runs drbdmeta --force - v08 DEV LOC CMD.
var realDrbdmeta = tooltest.Drbdmeta

// body drops dump-md's header (time, host, command line).
var body = tooltest.DumpBody

// disks are a regular file and (as root) a loop device of size bytes.
func disks(t *testing.T, size int64) map[string]string {
	out := map[string]string{"file": blockdevtest.TempFile(t, size)}
	if os.Geteuid() == 0 || os.Getenv("CI") == "true" {
		out["loop"] = blockdevtest.Loop(t, blockdevtest.TempFile(t, size))
	}
	return out
}

func TestCreateMDAndReadBack(t *testing.T) {
	t.Parallel()
	for kind, disk := range disks(t, 600<<20) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			conf := r0Config(t, disk)
			out, errOut, code := gdrbd(t, conf, "", "create-md", "r0")
			require.Equal(t, 0, code, errOut)
			require.Equal(t, "initializing activity log\nWriting meta data...\nNew drbd meta data block successfully created.\n", out)

			// drbdmeta sees exactly what drbd84.md's reference dump shows.
			dm, errOut, code := realDrbdmeta(t, disk, "internal", "dump-md")
			require.Equal(t, 0, code, errOut)
			require.Contains(t, dm, "# md_size_sect 112\n# md_offset 629141504\n# al_offset 629108736\n# bm_offset 629088256\n")
			ours, _, code := gdrbd(t, conf, "", "dump-md", "r0")
			require.Equal(t, 0, code)
			require.Equal(t, body(dm), body(ours))
			require.Contains(t, ours, "# "+hostname()+"> drbdmeta 7 v08 "+disk+" internal dump-md\n")

			for _, verb := range []string{"get-gi", "show-gi"} {
				want, _, _ := realDrbdmeta(t, disk, "internal", verb)
				got, _, code := gdrbd(t, conf, "", verb, "r0")
				require.Equal(t, 0, code)
				require.Equal(t, want, got, verb)
			}
		})
	}
}

func TestCreateMDAsksBeforeOverwriting(t *testing.T) {
	t.Parallel()
	disk := blockdevtest.TempFile(t, 100<<20)
	conf := r0Config(t, disk)
	_, _, code := gdrbd(t, conf, "", "create-md", "r0")
	require.Equal(t, 0, code)
	out, errOut, code := gdrbd(t, conf, "", "create-md", "r0")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "There appears to be a v08 flexible-size internal meta data block\nalready in place on "+disk)
	require.Contains(t, errOut, "\nDo you really want to overwrite the existing meta-data?\n[need to type 'yes' to confirm] ")
	require.Equal(t, "Operation cancelled.\n", out)
	_, _, code = gdrbd(t, conf, "no\n", "create-md", "r0")
	require.Equal(t, 1, code)
	out, _, code = gdrbd(t, conf, "yes\n", "create-md", "r0")
	require.Equal(t, 0, code)
	require.Contains(t, out, "New drbd meta data block successfully created.")
	_, errOut, code = gdrbd(t, conf, "", "create-md", "--force", "r0")
	require.Equal(t, 0, code)
	require.Contains(t, errOut, "*** confirmation forced via --force option ***")
}

func TestCreateMDRefusesFileSystem(t *testing.T) {
	t.Parallel()
	mkfs := tooltest.Require(t, "mkfs.ext4")
	disk := blockdevtest.TempFile(t, 100<<20)
	out, err := exec.Command(mkfs, "-q", "-F", disk).CombinedOutput()
	require.NoError(t, err, "%s", out)
	conf := r0Config(t, disk)
	stdout, _, code := gdrbd(t, conf, "", "create-md", "--force", "r0")
	require.Equal(t, 40, code, "a file system filling the device is refused even with --force, as drbdmeta does")
	require.Contains(t, stdout, "Found ext3 filesystem")
	require.Contains(t, stdout, "Operation refused.")
	want, _, wcode := realDrbdmeta(t, disk, "internal", "create-md")
	require.Equal(t, 40, wcode)
	require.Equal(t, want, stdout)
	_, err = os.Stat(disk)
	require.NoError(t, err)

	// A small file system below the metadata: asks, proceeds on yes.
	disk2 := blockdevtest.TempFile(t, 100<<20)
	out, err = exec.Command(mkfs, "-q", "-F", disk2, "50M").CombinedOutput()
	require.NoError(t, err, "%s", out)
	conf2 := r0Config(t, disk2)
	stdout, errOut, code := gdrbd(t, conf2, "", "create-md", "r0")
	require.Equal(t, 1, code)
	require.Contains(t, stdout, "unused space, you still need to confirm, as this is only a guess.\nOperation canceled.\n")
	require.Contains(t, errOut, "Do you want to proceed?")
	_, _, code = gdrbd(t, conf2, "yes\n", "create-md", "r0")
	require.Equal(t, 0, code)
}

func TestMDVerbsAfterCrash(t *testing.T) {
	t.Parallel()
	for kind, disk := range disks(t, 512<<20) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			conf := r0Config(t, disk)
			_, _, code := gdrbd(t, conf, "", "create-md", "r0")
			require.Equal(t, 0, code)
			// An attached Primary writes through the AL and crashes.
			d, err := blockdev.Open(disk, blockdev.Options{Direct: true})
			require.NoError(t, err)
			md, err := metadata.Open(d, metadata.Internal())
			require.NoError(t, err)
			md.SB.LaSizeSect = md.Layout.MaxUsableSectors()
			md.SB.Flags |= metadata.FlagConsistent | metadata.FlagPrimaryInd | metadata.FlagWasUpToDate
			al, err := md.NewActivityLog(67) // attach: clean metadata only
			require.NoError(t, err)
			require.NoError(t, md.MarkUnclean())
			bm, err := md.ReadBitmap()
			require.NoError(t, err)
			for i := uint32(0); i < 100; i++ {
				e := i * 7 % 120
				require.NotEqual(t, metadata.Wait, al.Begin(e, e).Decision)
				if tx := al.Seal(); tx != nil {
					require.NoError(t, md.CommitTransaction(tx, bm))
					al.Committed(tx)
				}
				bm.Set(uint64(e)*1024 + uint64(i))
				al.Complete(e, e)
			}
			require.NoError(t, d.Close())

			_, errOut, code := gdrbd(t, conf, "", "dump-md", "r0")
			require.Equal(t, 1, code)
			require.Equal(t, metadata.UncleanMessage+"\n", errOut)
			ours, _, code := gdrbd(t, conf, "", "dump-md", "--force", "r0")
			require.Equal(t, 0, code)
			theirs, _, code := realDrbdmeta(t, disk, "internal", "dump-md")
			require.Equal(t, 0, code)
			require.Equal(t, body(theirs), body(ours))
			require.Contains(t, ours, "This_is_an_unclean_meta_data_dump.")
			require.Contains(t, ours, "# al-extents 67;", "attach records al-extents")
			gi, _, _ := gdrbd(t, conf, "", "show-gi", "r0")
			require.Contains(t, gi, "flags: Primary, StandAlone, UpToDate\nmeta-data: need apply-al\n")

			_, errOut, code = gdrbd(t, conf, "", "apply-al", "r0")
			require.Equal(t, 0, code, errOut)
			require.Regexp(t, `^Marked additional \d+ [KM]B as out-of-sync based on AL.\n$`, errOut)
			ours, _, code = gdrbd(t, conf, "", "dump-md", "r0")
			require.Equal(t, 0, code)
			theirs, _, _ = realDrbdmeta(t, disk, "internal", "dump-md")
			require.Equal(t, body(theirs), body(ours))
			// Nothing left to apply: drbdmeta agrees it is clean.
			_, errOut, code = realDrbdmeta(t, disk, "internal", "apply-al")
			require.Equal(t, 0, code, errOut)
			again, _, _ := realDrbdmeta(t, disk, "internal", "dump-md")
			require.Equal(t, body(theirs), body(again))
		})
	}
}

func TestNewCurrentUUIDAndWipe(t *testing.T) {
	t.Parallel()
	disk := blockdevtest.TempFile(t, 100<<20)
	conf := r0Config(t, disk)
	_, _, code := gdrbd(t, conf, "", "create-md", "r0")
	require.Equal(t, 0, code)
	d, err := blockdev.Open(disk, blockdev.Options{})
	require.NoError(t, err)
	md, err := metadata.Open(d, metadata.Internal())
	require.NoError(t, err)
	md.SB.LaSizeSect = md.Layout.MaxUsableSectors()
	md.SB.UUIDs = metadata.GenerationUUIDs{Current: 0xAAAA0, Bitmap: 0xBBBB0, History: [2]uint64{0xCCCC0}}
	require.NoError(t, md.WriteSuperblock())
	bm, err := md.ReadBitmap()
	require.NoError(t, err)
	bm.SetRange(0, 1000)
	require.NoError(t, md.WriteDirtyBitmap(bm))
	require.NoError(t, d.Close())

	_, errOut, code := gdrbd(t, conf, "", "new-current-uuid", "r0")
	require.Equal(t, 0, code, errOut)
	gi, _, _ := gdrbd(t, conf, "", "get-gi", "r0")
	parts := strings.Split(gi, ":")
	require.Equal(t, "00000000000AAAA0", parts[1], "bitmap UUID := old current")
	require.Equal(t, "00000000000BBBB0", parts[2], "old bitmap UUID into the history")
	require.Equal(t, "00000000000CCCC0", parts[3])
	require.NotEqual(t, "00000000000AAAA0", parts[0])
	dump, _, _ := gdrbd(t, conf, "", "dump-md", "r0")
	require.Contains(t, dump, "# bits-set 1000;")

	_, _, code = gdrbd(t, conf, "", "new-current-uuid", "--clear-bitmap", "r0")
	require.Equal(t, 0, code)
	dump, _, _ = gdrbd(t, conf, "", "dump-md", "r0")
	require.Contains(t, dump, "# bits-set 0;")

	out, errOut, code := gdrbd(t, conf, "", "wipe-md", "r0")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "Do you really want to wipe out the DRBD meta data?")
	require.Equal(t, "Operation cancelled.\n", out)
	out, _, code = gdrbd(t, conf, "yes\n", "wipe-md", "r0")
	require.Equal(t, 0, code)
	require.Equal(t, "Wiping meta data...\nDRBD meta data block successfully wiped out.\n", out)
	_, errOut, code = gdrbd(t, conf, "", "dump-md", "r0")
	require.Equal(t, 1, code)
	require.Equal(t, "No valid meta data found\n", errOut)
	_, errOut, code = gdrbd(t, conf, "", "wipe-md", "r0")
	require.Equal(t, 0, code)
	require.Equal(t, "There appears to be no drbd meta data to wipe out?\n", errOut)
}

// The hook that keeps metadata verbs off a volume in use: an exclusive
// holder of the backing device (today: anyone; later: the daemon) makes
// modifying verbs refuse with "device busy".
func TestMDVerbsRefuseBusyDevice(t *testing.T) {
	t.Parallel()
	for kind, disk := range disks(t, 100<<20) {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			conf := r0Config(t, disk)
			_, _, code := gdrbd(t, conf, "", "create-md", "r0")
			require.Equal(t, 0, code)
			holder, err := blockdev.Open(disk, blockdev.Options{Exclusive: true})
			require.NoError(t, err)
			for _, verb := range []string{"create-md", "apply-al", "wipe-md", "new-current-uuid"} {
				_, errOut, code := gdrbd(t, conf, "", verb, "--force", "r0")
				if verb == "new-current-uuid" {
					_, errOut, code = gdrbd(t, conf, "", verb, "r0")
				}
				require.Equal(t, 20, code, verb)
				require.Contains(t, errOut, "device busy", verb)
			}
			// Reading is still allowed.
			_, _, code = gdrbd(t, conf, "", "get-gi", "r0")
			require.Equal(t, 0, code)
			require.NoError(t, holder.Close())
			_, _, code = gdrbd(t, conf, "", "apply-al", "r0")
			require.Equal(t, 0, code)
		})
	}
}

// RES, RES/VOL and all select volumes; external metadata (indexed and
// flexible) is located as drbdadm-84 tells drbdmeta.
func TestMDVerbsSelectVolumes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := func(name string, size int64) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, nil, 0o600))
		require.NoError(t, os.Truncate(p, size))
		return p
	}
	a, b, c := file("a", 64<<20), file("b", 64<<20), file("c", 64<<20)
	shared, flex := file("md-shared", 2*128<<20), file("md-flex", 16<<20)
	conf := mdConfig(t, fmt.Sprintf(`resource r0 {
  volume 0 { device minor 10; disk %s; meta-disk %s[1]; }
  volume 1 { device minor 11; disk %s; meta-disk %s; }
  on node1 { address 127.0.0.1:7790; }
  on node2 { address 127.0.0.2:7790; }
}
resource r1 {
  on node1 { device minor 12; disk %s; address 127.0.0.1:7791; meta-disk internal; }
  on node2 { device minor 12; disk %s; address 127.0.0.2:7791; meta-disk internal; }
}
`, a, shared, b, flex, c, c))
	out, errOut, code := gdrbd(t, conf, "", "create-md", "r0/1")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, 1, strings.Count(out, "successfully created"))
	_, _, code = gdrbd(t, conf, "", "get-gi", "r0/0")
	require.Equal(t, 1, code, "volume 0 has no metadata yet")
	out, _, code = gdrbd(t, conf, "", "create-md", "--force", "all")
	require.Equal(t, 0, code)
	require.Equal(t, 3, strings.Count(out, "successfully created"))
	out, _, code = gdrbd(t, conf, "", "get-gi", "all")
	require.Equal(t, 0, code)
	require.Equal(t, 3, strings.Count(out, "0000000000000004:"))

	for _, c := range []struct{ sel, dev, loc string }{
		{"r0/0", shared, "1"}, {"r0/1", flex, "flex-external"}, {"r1", c, "internal"},
	} {
		ours, _, code := gdrbd(t, conf, "", "dump-md", c.sel)
		require.Equal(t, 0, code)
		theirs, errOut, code := realDrbdmeta(t, c.dev, c.loc, "dump-md")
		require.Equal(t, 0, code, errOut)
		require.Equal(t, body(theirs), body(ours), c.sel)
	}
	_, errOut, code = gdrbd(t, conf, "", "dump-md", "r9")
	require.NotEqual(t, 0, code)
	require.Contains(t, errOut, "'r9' not defined")
}

// On a block device drbdadm-84 itself can run dump-md (it runs drbdmeta
// without --force): the whole output is identical to gdrbd's except the
// time stamp line.
func TestDumpMDEqualsDrbdadm84(t *testing.T) {
	t.Parallel()
	drbdadm := tooltest.Require(t, "drbdadm-84")
	tooltest.Require(t, "drbdmeta")
	disk := blockdevtest.Loop(t, blockdevtest.TempFile(t, 300<<20))
	conf := r0Config(t, disk)
	_, errOut, code := gdrbd(t, conf, "", "create-md", "r0")
	require.Equal(t, 0, code, errOut)
	// Give the metadata some content first.
	d, err := blockdev.Open(disk, blockdev.Options{Direct: true})
	require.NoError(t, err)
	md, err := metadata.Open(d, metadata.Internal())
	require.NoError(t, err)
	md.SB.LaSizeSect = md.Layout.MaxUsableSectors()
	md.SB.UUIDs.Current = 0x5C8264059992925F
	md.SB.Flags |= metadata.FlagConsistent
	require.NoError(t, md.WriteSuperblock())
	bm, err := md.ReadBitmap()
	require.NoError(t, err)
	bm.SetRange(3, 70000)
	bm.Set(bm.Len() - 1)
	require.NoError(t, md.WriteDirtyBitmap(bm))
	require.NoError(t, d.Close())

	for _, verb := range []string{"dump-md", "get-gi", "show-gi"} {
		cmd := exec.Command(drbdadm, "-c", conf, verb, "r0")
		cmd.Env = append(os.Environ(), "__DRBD_NODE__=node1")
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		require.NoError(t, cmd.Run(), e.String())
		ours, _, code := gdrbd(t, conf, "", verb, "r0")
		require.Equal(t, 0, code)
		require.Equal(t, withoutTimestamp(o.String()), withoutTimestamp(ours), verb)
	}
}

// withoutTimestamp blanks dump-md's second line ("# 2026-... [unix]").
func withoutTimestamp(s string) string {
	lines := strings.SplitN(s, "\n", 3)
	if len(lines) == 3 && strings.HasPrefix(lines[0], "# DRBD meta data dump") {
		lines[1] = "# TIME"
	}
	return strings.Join(lines, "\n")
}
