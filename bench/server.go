package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// ServerKind is a reference NBD server, an anchor for gdrbd's numbers. A
// plain value.
type ServerKind int

// The reference servers: both serve the very device gdrbd uses, with
// direct I/O, so the difference to gdrbd StandAlone is the server and the
// replication machinery, not the storage.
const (
	ServerNBDKit  ServerKind = 1 + iota // nbdkit file plugin, cache=none
	ServerQemuNBD                       // qemu-nbd --cache=none --aio=native
)

func (k ServerKind) String() string {
	switch k {
	case ServerNBDKit:
		return "nbdkit-file"
	case ServerQemuNBD:
		return "qemu-nbd"
	}
	return fmt.Sprintf("ServerKind(%d)", int(k))
}

// Server is a running reference NBD server on a unix socket, our child
// process. Safe for concurrent use; Close is idempotent.
type Server struct {
	Kind ServerKind
	URI  string
	Argv []string

	cmd    *exec.Cmd
	out    bytes.Buffer
	exited chan struct{}
	once   sync.Once
}

// StartServer serves file (a block device or file) with the given server
// on a socket in dir and returns once the socket accepts connections.
func StartServer(ctx context.Context, kind ServerKind, dir, file string) (*Server, error) {
	sock := filepath.Join(dir, kind.String()+".sock")
	os.Remove(sock)
	var argv []string
	switch kind {
	case ServerNBDKit:
		argv = []string{"nbdkit", "-f", "-U", sock, "file", "file=" + file, "cache=none"}
	case ServerQemuNBD:
		argv = []string{"qemu-nbd", "-t", "-k", sock, "-f", "raw", "--cache=none", "--aio=native", "-e", "16", file}
	default:
		return nil, fmt.Errorf("%w: unknown server %v", ErrSetup, kind)
	}
	s := &Server{Kind: kind, URI: "nbd+unix:///?socket=" + sock, Argv: argv, exited: make(chan struct{})}
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	// Its own process group: a ^C to the runner reaches us, and we stop
	// the server ourselves (by pid) after measuring.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrSetup, argv[0], err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
			return s, nil
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("%w: %v exited: %s", ErrSetup, argv, s.out.String())
		case <-ctx.Done():
			s.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Close()
			return nil, fmt.Errorf("%w: %v: socket %s not ready after 10 s", ErrSetup, argv, sock)
		}
	}
}

// Pid is the server's process id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Close stops the server (SIGTERM, then SIGKILL after 5 s) and waits for it.
func (s *Server) Close() error {
	s.once.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
	return nil
}
