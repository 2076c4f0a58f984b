package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gdrbd/gdrbd/status"
)

// PairConfig varies the drbd.conf of a benchmark pair; the rest is the
// seed's r0 (heartbeat-drbd-nfs.txt). A plain value.
type PairConfig struct {
	Protocol   string // A, B or C ("" = C)
	MaxBuffers int    // net max-buffers (0 = the seed's 2048)
	// Disk is extra disk {} options ("c-plan-ahead 0; resync-rate 4000M;").
	Disk string
	// Syncer is a syncer {} body ("rate 200M;"), as the seed has it.
	Syncer string
}

// ConfigText is the drbd.conf of a pair of nodes a and b on 127.0.0.1,
// with the disks and ports given.
func (c PairConfig) ConfigText(devA, devB string, portA, portB int) string {
	proto := c.Protocol
	if proto == "" {
		proto = "C"
	}
	mb := c.MaxBuffers
	if mb == 0 {
		mb = 2048
	}
	var b strings.Builder
	fmt.Fprintf(&b, "resource r0 {\n  protocol %s;\n", proto)
	b.WriteString("  startup { wfc-timeout 0; degr-wfc-timeout 120; }\n")
	fmt.Fprintf(&b, "  disk { on-io-error detach; %s}\n", spaced(c.Disk))
	// connect-int 1 instead of the seed's 10: a reconnect after
	// `disconnect; connect` does not wait 10 s.
	fmt.Fprintf(&b, "  net { timeout 60; connect-int 1; ping-int 10; max-buffers %d; max-epoch-size 2048; }\n", mb)
	if c.Syncer != "" {
		fmt.Fprintf(&b, "  syncer { %s}\n", spaced(c.Syncer))
	}
	fmt.Fprintf(&b, "  on a { device /dev/drbd0; disk %s; address 127.0.0.1:%d; meta-disk internal; }\n", devA, portA)
	fmt.Fprintf(&b, "  on b { device /dev/drbd0; disk %s; address 127.0.0.1:%d; meta-disk internal; }\n", devB, portB)
	b.WriteString("}\n")
	return b.String()
}

func spaced(s string) string {
	if s = strings.TrimSpace(s); s == "" {
		return ""
	}
	return s + " "
}

// Node is one gdrbd node of a Pair: a node name, its run directory, and
// the daemon `up` started there. Safe for concurrent use.
type Node struct {
	Name   string
	RunDir string

	gdrbd, conf string
	mu          sync.Mutex
	pid         int
}

// Pair is two gdrbd daemons on this machine replicating over loopback,
// driven through the real CLI as a user would (create-md, up, primary,
// status). Node a is the one made Primary. Safe for concurrent use;
// Close is idempotent.
type Pair struct {
	Dir    string
	Config PairConfig
	A, B   *Node

	closeOnce sync.Once
	closeErr  error
}

// StartPair writes the configuration into dir, creates fresh metadata on
// both disks and brings both nodes up; it returns once they are
// Connected (both Inconsistent: the caller then skips or runs the initial
// sync).
func StartPair(ctx context.Context, gdrbd, dir string, disks [2]*Disk, cfg PairConfig) (*Pair, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "drbd.conf")
	if err := os.WriteFile(conf, []byte(cfg.ConfigText(disks[0].Dev, disks[1].Dev, ports[0], ports[1])), 0o600); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	p := &Pair{Dir: dir, Config: cfg}
	p.A = &Node{Name: "a", RunDir: filepath.Join(dir, "run-a"), gdrbd: gdrbd, conf: conf}
	p.B = &Node{Name: "b", RunDir: filepath.Join(dir, "run-b"), gdrbd: gdrbd, conf: conf}
	for _, n := range p.Nodes() {
		if _, err := n.Run(ctx, "create-md", "r0", "--force"); err != nil {
			p.Close()
			return nil, err
		}
	}
	for _, n := range p.Nodes() {
		if _, err := n.Run(ctx, "up", "r0"); err != nil {
			p.Close()
			return nil, err
		}
	}
	if _, err := p.A.Run(ctx, "wait-connect", "r0", "--timeout", "30"); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Nodes is a and b.
func (p *Pair) Nodes() [2]*Node { return [2]*Node{p.A, p.B} }

// SkipSync declares both disks in sync (new-current-uuid
// --clear-bitmap, as for disks that are both blank) and promotes a.
func (p *Pair) SkipSync(ctx context.Context) error {
	if _, err := p.A.Run(ctx, "new-current-uuid", "r0", "--clear-bitmap"); err != nil {
		return err
	}
	for _, n := range p.Nodes() {
		if err := n.WaitDState(ctx, "UpToDate/UpToDate", 30*time.Second); err != nil {
			return err
		}
	}
	_, err := p.A.Run(ctx, "primary", "r0")
	return err
}

// URI is the NBD URI of a's export (a is the Primary).
func (p *Pair) URI() string { return p.A.URI() }

// Close takes both nodes down (metadata clean, daemons exit) and kills,
// by pid, any daemon still running after that; then removes the run
// directories. The disks are the caller's.
func (p *Pair) Close() error {
	p.closeOnce.Do(func() {
		var errs []error
		for _, n := range p.Nodes() {
			errs = append(errs, n.stop())
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

// URI is the node's NBD export.
func (n *Node) URI() string {
	return "nbd+unix:///r0?socket=" + filepath.Join(n.RunDir, "r0.nbd")
}

// Run runs the gdrbd CLI as this node and returns its standard output.
func (n *Node) Run(ctx context.Context, args ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	argv := append([]string{"-c", n.conf, "--node", n.Name, "--run-dir", n.RunDir}, args...)
	cmd := exec.CommandContext(cctx, n.gdrbd, argv...)
	cmd.Env = append(os.Environ(), "GDRBD_KERNEL_NBD=0")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	n.notePid()
	if err != nil {
		return out.String(), fmt.Errorf("%w: gdrbd --node %s %s: %w: %s", ErrSetup, n.Name, strings.Join(args, " "), err,
			strings.TrimSpace(errb.String()+" "+out.String()))
	}
	return out.String(), nil
}

// notePid remembers the daemon's pid once it has written its pid file,
// so that Close can kill exactly that process if `down` fails.
func (n *Node) notePid() {
	b, err := os.ReadFile(filepath.Join(n.RunDir, "gdrbd.pid"))
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
		n.mu.Lock()
		n.pid = pid
		n.mu.Unlock()
	}
}

// Pid is the node's daemon process (0 before `up`).
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pid
}

// Status is the node's r0 from `status --json`.
func (n *Node) Status(ctx context.Context) (status.JSONResource, error) {
	out, err := n.Run(ctx, "status", "r0", "--json")
	if err != nil {
		return status.JSONResource{}, err
	}
	var rs []status.JSONResource
	if err := json.Unmarshal([]byte(out), &rs); err != nil || len(rs) != 1 {
		return status.JSONResource{}, fmt.Errorf("%w: status --json: %v: %q", ErrSetup, err, out)
	}
	return rs[0], nil
}

// WaitDState polls `dstate` until it prints want.
func (n *Node) WaitDState(ctx context.Context, want string, within time.Duration) error {
	return n.waitFor(ctx, "dstate", want, within)
}

// WaitCState polls `cstate` until it prints want.
func (n *Node) WaitCState(ctx context.Context, want string, within time.Duration) error {
	return n.waitFor(ctx, "cstate", want, within)
}

func (n *Node) waitFor(ctx context.Context, verb, want string, within time.Duration) error {
	deadline := time.Now().Add(within)
	var last string
	for {
		out, err := n.Run(ctx, verb, "r0")
		last = strings.TrimSpace(out)
		if err == nil && last == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: node %s: %s is %q after %v, want %q", ErrSetup, n.Name, verb, last, within, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop runs `down r0`; a daemon still alive 10 s later is killed by pid.
func (n *Node) stop() error {
	n.notePid()
	pid := n.Pid()
	var err error
	if pid != 0 && alive(pid) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err = n.Run(ctx, "down", "r0")
		cancel()
		if !waitExit(pid, 10*time.Second) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			waitExit(pid, 10*time.Second)
			err = errors.Join(err, fmt.Errorf("bench: daemon %d of node %s killed: it did not exit after down", pid, n.Name))
		}
	}
	return errors.Join(err, os.RemoveAll(n.RunDir))
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// waitExit polls until pid is gone (it is not our child, so it cannot be
// waited for).
func waitExit(pid int, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for alive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// freePorts returns n TCP ports free on 127.0.0.1 right now, so that two
// benchmark runs (or a benchmark and the demo on 7788) never collide.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSetup, err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
