package nbd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Usage says who holds a block device. The replication layer refuses to
// demote (`secondary`) while a kernel device is in use, as DRBD refuses
// while /dev/drbdN is open.
type Usage struct {
	// Mounted lists mount points of the device or its partitions.
	Mounted []string
	// Holders are stacked devices on top of it (device-mapper, md).
	Holders []string
	// Exclusive is set when an O_EXCL open fails with EBUSY: something
	// (a mount, mkfs, another exclusive opener) claims the device.
	Exclusive bool
	// Openers are PIDs (other than this process) with the device open.
	Openers []int
}

// InUse reports whether anything at all holds the device.
func (u Usage) InUse() bool {
	return len(u.Mounted) > 0 || len(u.Holders) > 0 || u.Exclusive || len(u.Openers) > 0
}

func (u Usage) String() string {
	if !u.InUse() {
		return "not in use"
	}
	var parts []string
	if len(u.Mounted) > 0 {
		parts = append(parts, "mounted on "+strings.Join(u.Mounted, ","))
	}
	if len(u.Holders) > 0 {
		parts = append(parts, "held by "+strings.Join(u.Holders, ","))
	}
	if u.Exclusive {
		parts = append(parts, "claimed exclusively")
	}
	if len(u.Openers) > 0 {
		ps := make([]string, len(u.Openers))
		for i, p := range u.Openers {
			ps[i] = strconv.Itoa(p)
		}
		parts = append(parts, "open by pid "+strings.Join(ps, ","))
	}
	return strings.Join(parts, "; ")
}

// DeviceUsage looks at a block device from four angles, because none
// sees everything: mounts (/proc/self/mountinfo, by device number),
// stacked holders (/sys/class/block/X/holders), an O_EXCL open probe
// (fails with EBUSY while mounted or exclusively claimed), and the open
// file descriptors of every process (/proc/*/fd), which is the only way
// to see a plain open such as dd's.
func DeviceUsage(path string) (Usage, error) {
	var u Usage
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return u, fmt.Errorf("nbd: usage of %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return u, fmt.Errorf("nbd: usage of %s: not a block device", path)
	}
	devs := map[uint64]bool{st.Rdev: true}
	sysDir := fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	if ents, err := os.ReadDir(sysDir); err == nil {
		for _, e := range ents {
			// Partitions are subdirectories with their own dev file.
			if b, err := os.ReadFile(filepath.Join(sysDir, e.Name(), "dev")); err == nil {
				if d, ok := parseDevNum(strings.TrimSpace(string(b))); ok {
					devs[d] = true
				}
			}
		}
	}
	if ents, err := os.ReadDir(filepath.Join(sysDir, "holders")); err == nil {
		for _, e := range ents {
			u.Holders = append(u.Holders, e.Name())
		}
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		u.Mounted = mountsOf(string(b), devs)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	switch {
	case err == nil:
		unix.Close(fd)
	case errors.Is(err, unix.EBUSY):
		u.Exclusive = true
	default:
		return u, fmt.Errorf("nbd: usage of %s: exclusive open probe: %w", path, err)
	}
	u.Openers = openers(devs)
	return u, nil
}

func parseDevNum(s string) (uint64, bool) {
	maj, min, ok := strings.Cut(s, ":")
	if !ok {
		return 0, false
	}
	a, err1 := strconv.ParseUint(maj, 10, 32)
	b, err2 := strconv.ParseUint(min, 10, 32)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return unix.Mkdev(uint32(a), uint32(b)), true
}

// mountsOf returns the mount points in a mountinfo text whose device
// number (field 3, "major:minor") is one of devs.
func mountsOf(mountinfo string, devs map[uint64]bool) []string {
	var out []string
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if d, ok := parseDevNum(f[2]); ok && devs[d] {
			out = append(out, unescapeMount(f[4]))
		}
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// openers scans /proc/*/fd for descriptors on one of devs.
func openers(devs map[uint64]bool) []int {
	self := os.Getpid()
	procs, _ := os.ReadDir("/proc")
	var out []int
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		fdDir := filepath.Join("/proc", p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue // gone, or a kernel thread
		}
		for _, fd := range fds {
			var st unix.Stat_t
			if unix.Stat(filepath.Join(fdDir, fd.Name()), &st) != nil {
				continue
			}
			if st.Mode&unix.S_IFMT == unix.S_IFBLK && devs[st.Rdev] {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}
