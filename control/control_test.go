package control_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gdrbd/gdrbd/control"
	"github.com/gdrbd/gdrbd/replication"
	"github.com/gdrbd/gdrbd/status"
)

func serve(t *testing.T, h control.Handler) string {
	t.Helper()
	// Unix socket paths are short (108 bytes): keep them out of the
	// long test temp dir names.
	dir, err := os.MkdirTemp("", "gdctl")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "run", "gdrbd.sock")
	l, err := control.Listen(sock)
	require.NoError(t, err)
	srv := control.NewServer(h, nil)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		require.NoError(t, srv.Close())
		require.NoError(t, <-done)
	})
	return sock
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	vol := status.Volume{Resource: "r0", Minor: 3, Device: "/dev/drbd3",
		State:    replication.State{Role: replication.RolePrimary, Peer: replication.RoleSecondary, Conn: replication.SyncSource, Disk: replication.UpToDate, PDsk: replication.Inconsistent, UserISP: true},
		Protocol: replication.ProtocolC, Stats: replication.Stats{NS: 1 << 40, OOS: 77, PE: 3},
		Progress: replication.SyncProgress{Running: true, TotalKiB: 100, LeftKiB: 50, ElapsedMs: 1234},
		Mark:     status.SyncMark{LeftKiB: 60, ElapsedMs: 1000}, UUIDs: [4]uint64{1<<63 | 5, 2, 3, 4},
		SizeBytes: 1 << 30, NBD: status.NBD{Socket: "/x.nbd", Clients: 1, FUA: 9}}
	var got *control.Request
	sock := serve(t, control.HandlerFunc(func(_ context.Context, req *control.Request) *control.Response {
		got = req
		return &control.Response{Volumes: []status.Volume{vol}, Notes: []string{"hi"}, Pid: 42}
	}))
	req := &control.Request{Op: control.OpUp, Resource: "r0", ConfigPath: "/etc/drbd.conf", Node: "a",
		Force: true, DiscardMyData: true, Primary: true, Until: control.UntilSynced, TimeoutMs: 5}
	resp, err := control.Do(context.Background(), sock, req)
	require.NoError(t, err)
	require.NoError(t, resp.Err())
	require.Equal(t, req, got)
	require.Equal(t, []status.Volume{vol}, resp.Volumes)
	require.Equal(t, []string{"hi"}, resp.Notes)
	require.Equal(t, 42, resp.Pid)
}

func TestErrors(t *testing.T) {
	t.Parallel()
	sock := serve(t, control.HandlerFunc(func(_ context.Context, req *control.Request) *control.Response {
		return &control.Response{Kind: control.KindStateChange, StateCode: -12, Error: "Device is held open by someone"}
	}))
	resp, err := control.Do(context.Background(), sock, &control.Request{Op: control.OpSecondary, Resource: "r0"})
	require.NoError(t, err)
	var ce *control.Error
	require.ErrorAs(t, resp.Err(), &ce)
	require.Equal(t, control.KindStateChange, ce.Kind)
	require.Equal(t, int32(-12), ce.StateCode)
	require.EqualError(t, ce, "Device is held open by someone")
}

func TestNoDaemon(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := control.Do(context.Background(), filepath.Join(dir, "none.sock"), &control.Request{Op: control.OpPing})
	require.ErrorIs(t, err, control.ErrNoDaemon)
	require.False(t, control.Alive(filepath.Join(dir, "none.sock"), time.Second))

	// A socket file nobody listens on (a daemon killed with -9).
	short, err := os.MkdirTemp("", "gdctl")
	require.NoError(t, err)
	defer os.RemoveAll(short)
	stale := filepath.Join(short, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	require.NoError(t, err)
	l.SetUnlinkOnClose(false)
	require.NoError(t, l.Close())
	_, err = control.Do(context.Background(), stale, &control.Request{Op: control.OpPing})
	require.ErrorIs(t, err, control.ErrNoDaemon)
	// Listen replaces the stale file.
	l2, err := control.Listen(stale)
	require.NoError(t, err)
	l2.Close()
}

func TestSocketPermissions(t *testing.T) {
	t.Parallel()
	sock := serve(t, control.HandlerFunc(func(context.Context, *control.Request) *control.Response { return nil }))
	fi, err := os.Stat(sock)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	di, err := os.Stat(filepath.Dir(sock))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), di.Mode().Perm())
	require.True(t, control.Alive(sock, 5*time.Second))
}

// A client that goes away cancels its request in the daemon.
func TestCancelOnClientClose(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	cancelled := make(chan struct{})
	sock := serve(t, control.HandlerFunc(func(ctx context.Context, req *control.Request) *control.Response {
		close(started)
		<-ctx.Done()
		close(cancelled)
		return &control.Response{Kind: control.KindTimeout, Error: "gone"}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := control.Do(ctx, sock, &control.Request{Op: control.OpWait, Resource: "r0", Until: control.UntilConnected})
		errc <- err
	}()
	<-started
	cancel()
	<-cancelled
	require.ErrorIs(t, <-errc, context.Canceled)
}

// Lengths are checked before anything is allocated.
func TestOversizedMessage(t *testing.T) {
	t.Parallel()
	called := false
	sock := serve(t, control.HandlerFunc(func(context.Context, *control.Request) *control.Response {
		called = true
		return nil
	}))
	c, err := net.Dial("unix", sock)
	require.NoError(t, err)
	defer c.Close()
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], control.MaxMessage+1)
	_, err = c.Write(hdr[:])
	require.NoError(t, err)
	// The server drops the connection without answering.
	var b [1]byte
	_, err = c.Read(b[:])
	require.Error(t, err)
	require.False(t, called)
}

func TestEnumNames(t *testing.T) {
	t.Parallel()
	require.Equal(t, "ping", control.OpPing.String())
	require.Equal(t, "invalidate-remote", control.OpInvalidateRemote.String())
	require.Equal(t, "shutdown", control.OpShutdown.String())
	require.Equal(t, "Op(0)", control.Op(0).String())
	require.Equal(t, "synced", control.UntilSynced.String())
	require.Equal(t, "Until(0)", control.Until(0).String())
	require.Equal(t, "state-change", control.KindStateChange.String())
	require.Equal(t, "ErrKind(0)", control.ErrKind(0).String())
	require.True(t, errors.Is(control.ErrNoDaemon, control.ErrNoDaemon))
}

// Shutdown lets a request in progress deliver its reply.
func TestShutdownDeliversReplies(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "gdctl")
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "gdrbd.sock")
	l, err := control.Listen(sock)
	require.NoError(t, err)
	inside := make(chan struct{})
	release := make(chan struct{})
	srv := control.NewServer(control.HandlerFunc(func(context.Context, *control.Request) *control.Response {
		close(inside)
		<-release
		return &control.Response{Notes: []string{"done"}}
	}), nil)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	got := make(chan *control.Response, 1)
	go func() {
		r, err := control.Do(context.Background(), sock, &control.Request{Op: control.OpDown, Resource: "r0"})
		require.NoError(t, err)
		got <- r
	}()
	<-inside
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	close(release)
	require.Equal(t, []string{"done"}, (<-got).Notes)
	require.NoError(t, <-shut)
	require.NoError(t, <-served)
	require.False(t, control.Alive(sock, time.Second))
}
