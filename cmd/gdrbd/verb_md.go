package main

import (
	"bufio"
	crand "crypto/rand"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/gdrbd/gdrbd/blockdev"
	"github.com/gdrbd/gdrbd/config"
	"github.com/gdrbd/gdrbd/control"
	"github.com/gdrbd/gdrbd/metadata"
)

// The metadata verbs do what drbdadm-84 has drbdmeta (and, for
// new-current-uuid, the kernel) do, on each selected volume, and print what
// drbdmeta prints. Unlike drbdmeta they work on regular files without
// --force, and a "yes" answer may come from a pipe (drbdmeta only asks a
// terminal).

func init() {
	for _, v := range []*verb{
		{Name: "create-md", Args: "RES|all [--force] [--al-stripes N] [--al-stripe-size-kB K] [--peer-max-bio-size B]",
			Summary: "initialize the metadata (asks before overwriting metadata or a file system)", Run: runCreateMD},
		{Name: "wipe-md", Args: "RES|all [--force]", Summary: "destroy the metadata superblock", Run: runWipeMD},
		{Name: "dump-md", Args: "RES|all [--force]", Summary: "print the metadata as text (drbdmeta dump-md)", Run: runDumpMD},
		{Name: "get-gi", Args: "RES|all", Summary: "print the generation UUIDs and flags, one line", Run: runGetGI},
		{Name: "show-gi", Args: "RES|all", Summary: "print the generation UUIDs and flags, explained", Run: runShowGI},
		{Name: "apply-al", Args: "RES|all [--force]", Summary: "fold the activity log into the bitmap after a crash", Run: runApplyAL},
		{Name: "new-current-uuid", Args: "RES|all [--clear-bitmap]", Summary: "start a new data generation (--clear-bitmap: skip the initial sync)", Run: runNewCurrentUUID},
	} {
		register(v)
	}
}

// silent carries an exit code for a failure drbdmeta reports with its own
// words, already printed.
func silent(code int) error { return withExit(code, errors.New("")) }

// mdVolume is one volume's metadata location as the configuration gives it.
type mdVolume struct {
	env    *cliEnv
	res    *config.Resource
	vol    *config.Volume
	device string // the metadata device
	loc    metadata.Location
}

// argv is the drbdmeta command line drbdadm would run for this volume.
func (v *mdVolume) argv(force bool, cmd string) []string {
	a := []string{"drbdmeta"}
	if force {
		a = append(a, "--force")
	}
	return append(a, strconv.Itoa(v.vol.Minor), "v08", v.device, v.loc.DrbdmetaArg(), cmd)
}

// mdVolumes resolves RES|all|RES/VOL into the volumes that have a disk.
func mdVolumes(env *cliEnv, args []string) ([]*mdVolume, error) {
	_, targets, err := loadTargets(env, args)
	if err != nil {
		return nil, err
	}
	var out []*mdVolume
	for _, t := range targets {
		vols := t.Res.Volumes
		if t.Vol != nil {
			vols = []*config.Volume{t.Vol}
		}
		for _, v := range vols {
			if v.Disk == "" || v.Disk == "none" {
				continue // diskless: no metadata
			}
			mv := &mdVolume{env: env, res: t.Res, vol: v, device: v.MetaDevice()}
			switch {
			case v.MetaDisk == "internal":
				mv.loc = metadata.Internal()
			case v.Flexible || v.MetaIndex < 0:
				mv.loc = metadata.FlexExternal()
			default:
				mv.loc = metadata.Indexed(v.MetaIndex)
			}
			out = append(out, mv)
		}
	}
	return out, nil
}

// volumeBusy is the hook that keeps metadata verbs away from a volume in
// use: the daemon holding the resource (as drbdmeta refuses a configured
// minor), or anything else holding the backing device (an exclusive
// open: O_EXCL on a block device: mounted, DRBD, LVM; flock on a file).
func volumeBusy(v *mdVolume) error {
	if v.env != nil && daemonHolds(v.env, v.res.Name) {
		return inUseError(v.env, v.res.Name)
	}
	d, err := blockdev.Open(v.vol.Disk, blockdev.Options{Exclusive: true})
	if err != nil {
		if errors.Is(err, blockdev.ErrBusy) {
			return withExit(20, fmt.Errorf("%s: device busy: it is in use (attached by gdrbd, mounted, or held by another program): %w", v.vol.Disk, err))
		}
		return withExit(20, err)
	}
	return d.Close()
}

// openMD opens the metadata device; modifying verbs check volumeBusy and
// open it exclusively (except a shared indexed device, as drbdmeta).
func openMD(v *mdVolume, modify bool) (*blockdev.File, error) {
	if v.env != nil && daemonHolds(v.env, v.res.Name) {
		return nil, inUseError(v.env, v.res.Name)
	}
	excl := false
	if modify {
		if v.device != v.vol.Disk || v.loc.Kind == metadata.KindIndexed {
			if err := volumeBusy(v); err != nil {
				return nil, err
			}
		}
		excl = v.loc.Kind != metadata.KindIndexed
	}
	d, err := blockdev.Open(v.device, blockdev.Options{Direct: true, Exclusive: excl})
	if err != nil {
		if errors.Is(err, blockdev.ErrBusy) {
			return nil, withExit(20, fmt.Errorf("%s: device busy: it is in use (attached by gdrbd, mounted, or held by another program): %w", v.device, err))
		}
		return nil, withExit(20, err)
	}
	return d, nil
}

// mdCmd is one invocation: its options, and stdin shared by all questions.
type mdCmd struct {
	env   *cliEnv
	force bool
	in    *bufio.Reader
}

func newMDCmd(env *cliEnv, force bool) *mdCmd {
	return &mdCmd{env: env, force: force, in: bufio.NewReader(env.Stdin)}
}

func (c *mdCmd) out(format string, a ...any)  { fmt.Fprintf(c.env.Stdout, format, a...) }
func (c *mdCmd) errf(format string, a ...any) { fmt.Fprintf(c.env.Stderr, format, a...) }

// confirmed asks as drbdmeta asks; --force answers yes, and so does a
// line "yes" on stdin (terminal or not).
func (c *mdCmd) confirmed(text string) bool {
	c.errf("\n%s\n", text)
	if c.force {
		c.errf("*** confirmation forced via --force option ***\n")
		return true
	}
	c.errf("[need to type 'yes' to confirm] ")
	line, _ := c.in.ReadString('\n')
	c.errf("\n")
	return strings.TrimSpace(line) == "yes"
}

// open reads the metadata of v. Missing metadata prints drbdmeta's "No
// valid meta data found" and exits 1; other errors carry their message.
func (c *mdCmd) open(v *mdVolume, modify bool) (*metadata.Metadata, *blockdev.File, error) {
	d, err := openMD(v, modify)
	if err != nil {
		return nil, nil, err
	}
	md, err := metadata.Open(d, v.loc)
	if err != nil {
		d.Close()
		if errors.Is(err, metadata.ErrV09) || errors.Is(err, metadata.ErrTooSmall) {
			return nil, nil, withExit(10, fmt.Errorf("%s: %w", v.device, err))
		}
		c.errf("No valid meta data found\n")
		if !errors.Is(err, metadata.ErrNoMetadata) {
			c.errf("%v\n", err)
		}
		return nil, nil, silent(1)
	}
	if s := md.ClippedMessage(); s != "" {
		c.out("%s", s)
	}
	return md, d, nil
}

func mdFlags(name string) (*flag.FlagSet, *bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	return fs, fs.Bool("force", false, "answer yes to every question; dump unclean metadata")
}

func forEachVolume(env *cliEnv, pos []string, fn func(*mdVolume) error) error {
	vols, err := mdVolumes(env, pos)
	if err != nil {
		return err
	}
	for _, v := range vols {
		if err := fn(v); err != nil {
			return err
		}
	}
	return nil
}

func runCreateMD(env *cliEnv, args []string) error {
	fs, force := mdFlags("create-md")
	stripes := fs.Uint("al-stripes", metadata.DefaultALStripes, "activity log stripes")
	stripeKB := fs.String("al-stripe-size-kB", "32", "activity log stripe size in KiB (k, M suffixes allowed)")
	peerBio := fs.Uint("peer-max-bio-size", 0, "initial la-peer-max-bio-size (0 .. 1M)")
	pos, err := parseVerbFlags(fs, args)
	if err != nil {
		return err
	}
	kb, err := parseKB(*stripeKB)
	if err != nil {
		return usagef("--al-stripe-size-kB: %v", err)
	}
	if *peerBio > 1<<20 {
		c := newMDCmd(env, *force)
		c.errf("peer-max-bio-size out of range (0...1M)\n")
		return silent(10)
	}
	size4k := uint32(kb / 4)
	if uint64(*stripes)*uint64(size4k) < 8 {
		fmt.Fprintf(env.Stderr, "invalid (too small) al-stripe* settings\n")
		return silent(10)
	}
	if uint64(*stripes)*uint64(size4k) > 8192 {
		fmt.Fprintf(env.Stderr, "invalid (too large) al-stripe* settings\n")
		return silent(10)
	}
	c := newMDCmd(env, *force)
	opts := metadata.CreateOptions{ALStripes: uint32(*stripes), ALStripeSize4k: size4k, PeerMaxBioSize: uint32(*peerBio)}
	return forEachVolume(env, pos, func(v *mdVolume) error { return c.createMD(v, opts) })
}

// parseKB reads a size in KiB with an optional k/M/G suffix.
func parseKB(s string) (uint64, error) {
	mul := uint64(1)
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		s = s[:len(s)-1]
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		mul, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "G"), strings.HasSuffix(s, "g"):
		mul, s = 1<<20, s[:len(s)-1]
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, err
	}
	return n * mul, nil
}

func (c *mdCmd) createMD(v *mdVolume, opts metadata.CreateOptions) error {
	d, err := openMD(v, true)
	if err != nil {
		return err
	}
	defer d.Close()
	l, err := metadata.ComputeLayout(v.loc, d.Size(), opts.ALStripes, opts.ALStripeSize4k)
	if err != nil {
		c.errf("%s: %v\n", v.device, err)
		return silent(10)
	}
	if err := c.checkExistingMD(v, d, l, opts); err != nil {
		return err
	}
	existing, err := metadata.CheckExistingData(d)
	if err != nil {
		return err
	}
	if text, refuse := existing.Report(l); existing.Found {
		c.out("%s", text)
		if refuse {
			return silent(40)
		}
		if !c.confirmed("Do you want to proceed?") {
			c.out("Operation canceled.\n")
			return silent(1)
		}
	}
	c.out("initializing activity log\n")
	bmKB := uint64(metadata.BitmapBytes(uint64(d.Size())>>9)) >> 10
	c.errf("initializing bitmap (%s) to all zero\n", metadata.PPSize(bmKB))
	c.out("Writing meta data...\n")
	if _, err := metadata.Create(d, v.loc, opts); err != nil {
		c.errf("operation failed\n")
		return withExit(10, err)
	}
	c.out("New drbd meta data block successfully created.\n")
	return nil
}

// checkExistingMD asks before overwriting metadata that is already there,
// as drbdmeta's check_internal_md_flavours / check_external_md_flavours.
func (c *mdCmd) checkExistingMD(v *mdVolume, d blockdev.Device, l metadata.Layout, opts metadata.CreateOptions) error {
	md, err := metadata.Open(d, v.loc)
	v09 := errors.Is(err, metadata.ErrV09)
	if err != nil && !v09 {
		return nil // nothing valid there
	}
	if v.loc.Kind != metadata.KindInternal {
		if v09 {
			if !c.confirmed("So you want me to replace the v09 meta-data\nwith newly initialized v08 meta-data?") {
				c.out("Operation cancelled.\n")
				return silent(1)
			}
			return nil
		}
		if !c.confirmed("Valid meta data seems to be in place.\nDo you really want to overwrite?") {
			c.out("Operation cancelled.\n")
			return silent(1)
		}
		return nil
	}
	have := "v08"
	if v09 {
		have = "v09"
	}
	c.errf("You want me to create a v08 style flexible-size internal meta data block.\n")
	c.errf("There appears to be a %s flexible-size internal meta data block\nalready in place on %s at byte offset %d\n",
		have, v.device, l.MDOffset)
	if v09 {
		// drbdmeta would offer a conversion; gdrbd can only replace it.
		if !c.confirmed("So you want me to replace the v09 meta-data\nwith newly initialized v08 meta-data?") {
			c.out("Operation cancelled.\n")
			return silent(1)
		}
		return nil
	}
	if md.SB.ALStripes != opts.ALStripes || md.SB.ALStripeSize4k != opts.ALStripeSize4k {
		if c.confirmed("Do you want to change the activity log stripe settings *only*?") {
			c.errf("Sorry, not yet fully implemented\nTry dump-md > dump.txt; restore-md -s x -z y dump.txt\n")
			return silent(30)
		}
	}
	if !c.confirmed("Do you really want to overwrite the existing meta-data?") {
		c.out("Operation cancelled.\n")
		return silent(1)
	}
	return nil
}

func runWipeMD(env *cliEnv, args []string) error {
	fs, force := mdFlags("wipe-md")
	pos, err := parseVerbFlags(fs, args)
	if err != nil {
		return err
	}
	c := newMDCmd(env, *force)
	return forEachVolume(env, pos, func(v *mdVolume) error {
		d, err := openMD(v, true)
		if err != nil {
			return err
		}
		defer d.Close()
		md, err := metadata.Open(d, v.loc)
		if err != nil {
			c.errf("There appears to be no drbd meta data to wipe out?\n")
			return nil
		}
		if !c.confirmed("Do you really want to wipe out the DRBD meta data?") {
			c.out("Operation cancelled.\n")
			return silent(1)
		}
		c.out("Wiping meta data...\n")
		if err := md.Wipe(); err != nil {
			c.errf("operation failed\n")
			return withExit(10, err)
		}
		c.out("DRBD meta data block successfully wiped out.\n")
		return nil
	})
}

func runDumpMD(env *cliEnv, args []string) error {
	fs, force := mdFlags("dump-md")
	pos, err := parseVerbFlags(fs, args)
	if err != nil {
		return err
	}
	c := newMDCmd(env, *force)
	host := hostname()
	return forEachVolume(env, pos, func(v *mdVolume) error {
		md, d, err := c.open(v, false)
		if err != nil {
			return err
		}
		defer d.Close()
		if !md.SB.Clean() {
			c.errf("%s\n", metadata.UncleanMessage)
			if !c.force {
				return silent(1)
			}
		}
		header := metadata.DumpHeader(time.Now(), host, v.argv(c.force, "dump-md"))
		return md.Dump(env.Stdout, header)
	})
}

func runGetGI(env *cliEnv, args []string) error {
	return runGI(env, args, "get-gi", func(md *metadata.Metadata) string { return md.GI() })
}

func runShowGI(env *cliEnv, args []string) error {
	return runGI(env, args, "show-gi", func(md *metadata.Metadata) string { return md.ShowGI() })
}

func runGI(env *cliEnv, args []string, name string, text func(*metadata.Metadata) string) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	pos, err := parseVerbFlags(fs, args)
	if err != nil {
		return err
	}
	c := newMDCmd(env, false)
	return forEachVolume(env, pos, func(v *mdVolume) error {
		md, d, err := c.open(v, false)
		if err != nil {
			return err
		}
		defer d.Close()
		c.out("%s", text(md))
		return nil
	})
}

func runApplyAL(env *cliEnv, args []string) error {
	fs, force := mdFlags("apply-al")
	pos, err := parseVerbFlags(fs, args)
	if err != nil {
		return err
	}
	c := newMDCmd(env, *force)
	return forEachVolume(env, pos, func(v *mdVolume) error {
		md, d, err := c.open(v, true)
		if err != nil {
			return err
		}
		defer d.Close()
		res, err := md.ApplyAL()
		if res != nil {
			for _, w := range res.Warnings {
				c.errf("%s\n", w)
			}
		}
		var ae *metadata.ApplyError
		if errors.As(err, &ae) {
			return silent(ae.Code)
		}
		if err != nil {
			c.errf("update of super block flags failed\n")
			return withExit(10, err)
		}
		if res.Applied {
			if len(res.Extents) > 0 {
				c.errf("Marked additional %s as out-of-sync based on AL.\n", metadata.PPSize(res.BitsAdded*4))
			} else {
				c.errf("Nothing to do.\n")
			}
		}
		return nil
	})
}

// cryptoSource is a random source for new UUIDs, seeded from crypto/rand.
func cryptoSource() rand.Source {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		panic(fmt.Sprintf("gdrbd: no randomness: %v", err))
	}
	return rand.NewChaCha8(seed)
}

func runNewCurrentUUID(env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("new-current-uuid", flag.ContinueOnError)
	clearBM := fs.Bool("clear-bitmap", false, "also clear the bitmap (skip the initial sync)")
	pos, err := parseVerbFlags(fs, args)
	if err != nil {
		return err
	}
	// A resource that is up gets its new generation from the daemon
	// (the kernel's part in drbdadm); offline, the metadata is changed
	// directly.
	if _, targets, err := loadTargets(env, pos); err == nil {
		var up []string
		for _, t := range targets {
			if daemonHolds(env, t.Res.Name) {
				up = append(up, targetArg(t))
			}
		}
		if len(up) > 0 {
			if len(up) != len(targets) {
				return usagef("new-current-uuid: some of the resources are up and some are not; name them one at a time")
			}
			return adminOp(env, "new-current-uuid", pos, control.OpNewCurrentUUID, func(r *control.Request) { r.ClearBitmap = *clearBM })
		}
	}
	c := newMDCmd(env, false)
	src := cryptoSource()
	return forEachVolume(env, pos, func(v *mdVolume) error {
		md, d, err := c.open(v, true)
		if err != nil {
			return err
		}
		defer d.Close()
		if !md.SB.Clean() {
			return withExit(10, fmt.Errorf("%s: %w", v.device, metadata.ErrUnclean))
		}
		md.SB.UUIDs.NewCurrentUUIDCommand(src)
		// The new UUIDs go to disk BEFORE the bitmap is cleared: a crash
		// in between leaves stale bits (a needless resync), never a clear
		// bitmap under the old generation (a missed one).
		if err := md.WriteSuperblock(); err != nil {
			return withExit(10, err)
		}
		if *clearBM {
			bm, err := md.ReadBitmap()
			if err != nil {
				return withExit(10, err)
			}
			bm.ClearAll()
			bm.MarkAllDirty()
			if err := md.WriteDirtyBitmap(bm); err != nil {
				return withExit(10, err)
			}
		}
		return nil
	})
}
