package nbd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// LinkDRBD makes the names DRBD 8.4's udev rules would create point at
// the kernel device target (/dev/nbdX), so scripts written for DRBD
// (Heartbeat's Filesystem::/dev/drbd0, /dev/drbd/by-res/r0/0 in fstab)
// work unchanged:
//
//	DEVDIR/drbdMINOR            -> target
//	DEVDIR/drbd/by-res/RES/VOL  -> target
//
// devDir is /dev outside tests. Existing symlinks are replaced; anything
// else in the way (a real DRBD device node) is an error, never
// overwritten.
func LinkDRBD(devDir, target string, minor int, resource string, volume int) error {
	if resource == "" || resource != filepath.Base(resource) || resource == "." || resource == ".." {
		return fmt.Errorf("nbd: link: bad resource name %q", resource)
	}
	for _, l := range drbdLinks(devDir, minor, resource, volume) {
		if err := os.MkdirAll(filepath.Dir(l), 0o755); err != nil {
			return fmt.Errorf("nbd: link: %w", err)
		}
		if err := replaceSymlink(target, l); err != nil {
			return err
		}
	}
	return nil
}

// UnlinkDRBD removes the links LinkDRBD made, if they still point at
// target, and the then-empty by-res directories.
func UnlinkDRBD(devDir, target string, minor int, resource string, volume int) error {
	var errs []error
	for _, l := range drbdLinks(devDir, minor, resource, volume) {
		if dst, err := os.Readlink(l); err == nil && dst == target {
			if err := os.Remove(l); err != nil {
				errs = append(errs, fmt.Errorf("nbd: unlink: %w", err))
			}
		}
	}
	_ = os.Remove(filepath.Join(devDir, "drbd", "by-res", resource))
	return errors.Join(errs...)
}

func drbdLinks(devDir string, minor int, resource string, volume int) []string {
	return []string{
		filepath.Join(devDir, "drbd"+strconv.Itoa(minor)),
		filepath.Join(devDir, "drbd", "by-res", resource, strconv.Itoa(volume)),
	}
}

func replaceSymlink(target, link string) error {
	if st, err := os.Lstat(link); err == nil && st.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("nbd: link: %s exists and is not a symlink", link)
	}
	tmp := link + ".gdrbd-tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("nbd: link: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("nbd: link: %w", err)
	}
	return nil
}
