package bench

import (
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// MachineFacts describes the machine and tools a run measured on, one
// fact per line ("cpu: AMD EPYC, 2 cores").
func MachineFacts(dir string) []string {
	var f []string
	model := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	f = append(f, "cpu: "+model+", "+strconv.Itoa(runtime.NumCPU())+" cores")
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		f = append(f, "memory: "+strconv.Itoa(int(uint64(si.Totalram)*uint64(si.Unit)>>20))+" MiB")
	}
	var un unix.Utsname
	if unix.Uname(&un) == nil {
		f = append(f, "kernel: "+unix.ByteSliceToString(un.Release[:]))
	}
	if out := firstLine("findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", dir); out != "" {
		f = append(f, "scratch filesystem ("+dir+"): "+out)
	}
	f = append(f, "go: "+runtime.Version())
	for _, t := range [][]string{{"fio", "--version"}, {"nbdkit", "--version"}, {"qemu-nbd", "--version"}, {"nbdinfo", "--version"}} {
		if out := firstLine(t[0], t[1:]...); out != "" {
			f = append(f, t[0]+": "+out)
		}
	}
	return f
}

func firstLine(prog string, args ...string) string {
	out, err := exec.Command(prog, args...).Output()
	if err != nil {
		return ""
	}
	l, _, _ := bytes.Cut(out, []byte("\n"))
	return strings.TrimSpace(string(l))
}
