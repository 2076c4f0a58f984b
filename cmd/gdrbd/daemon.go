package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/gdrbd/gdrbd/config"
	"github.com/gdrbd/gdrbd/control"
	"github.com/gdrbd/gdrbd/replication"
	"github.com/gdrbd/gdrbd/replication/driver"
	"github.com/gdrbd/gdrbd/status"
)

// Files of a run directory:
//
//	RUNDIR/gdrbd.lock   flock'ed by the one daemon of this run dir
//	RUNDIR/gdrbd.pid    its pid
//	RUNDIR/gdrbd.sock   the control socket (0600)
//	RUNDIR/gdrbd.log    its log when started detached by `gdrbd up`
//	RUNDIR/RES.nbd      a Primary's NBD socket (the driver's)
const (
	lockFile = "gdrbd.lock"
	pidFile  = "gdrbd.pid"
	sockFile = "gdrbd.sock"
	logFile  = "gdrbd.log"
)

func socketPath(runDir string) string { return filepath.Join(runDir, sockFile) }

// resourceDriver is what the daemon needs of a replication/driver
// Resource; tests substitute a fake.
type resourceDriver interface {
	Attach(ctx context.Context) error
	Detach(ctx context.Context) error
	Connect(ctx context.Context, discardMyData bool) error
	Disconnect(ctx context.Context) error
	Primary(ctx context.Context, force bool) error
	Secondary(ctx context.Context) error
	NewCurrentUUID(ctx context.Context, clearBitmap bool) error
	Invalidate(ctx context.Context) error
	InvalidateRemote(ctx context.Context) error
	Verify(ctx context.Context) error
	PauseSync(ctx context.Context) error
	ResumeSync(ctx context.Context) error
	Outdate(ctx context.Context) error
	Status() driver.Status
	Wait(ctx context.Context, cond func(driver.Status) bool) error
	Down(ctx context.Context) error
}

func newRealDriver(opts driver.Options) (resourceDriver, error) { return driver.New(opts) }

// syncMarks is DRBD's ring of resync marks: a sample every markStep, the
// oldest (about 18 s back) gives the recent speed.
const (
	markStep  = 3 * time.Second
	markCount = 6
)

// held is one resource the daemon holds.
type held struct {
	name string
	drv  resourceDriver
	// admin serializes the administrative requests on this resource, as
	// DRBD's adm_mutex does; Status and Wait do not take it.
	admin sync.Mutex

	mu    sync.Mutex // guards marks
	marks []status.SyncMark
	total uint64 // TotalKiB the marks belong to
}

// daemon holds the node's resources and answers the control socket.
//
// Safe for concurrent use: Handle runs on one goroutine per request.
type daemon struct {
	runDir    string
	node      string
	log       *zap.Logger
	kernelNBD bool
	syncIO    bool // no native AIO (daemon --aio=false, $GDRBD_AIO=0)
	newDriver func(driver.Options) (resourceDriver, error)
	loadCfg   func(path, node string) (*config.Config, error)

	mu   sync.Mutex
	res  map[string]*held
	busy int // requests in progress that may add a resource
	// stopping is set once the daemon decided to exit: requests that
	// would add a resource are turned away (KindStopping) instead of
	// being started in a process about to end.
	stopping bool
	// empty is signalled (non-blocking) whenever a request leaves the
	// daemon without resources; run decides whether to exit.
	empty chan struct{}
}

func newDaemon(runDir, node string, log *zap.Logger) *daemon {
	return &daemon{
		runDir: runDir, node: node, log: log, kernelNBD: true,
		newDriver: newRealDriver,
		loadCfg: func(path, node string) (*config.Config, error) {
			return config.Load(path, config.Options{Node: node})
		},
		res:   map[string]*held{},
		empty: make(chan struct{}, 1),
	}
}

// Handle implements control.Handler.
func (d *daemon) Handle(ctx context.Context, req *control.Request) *control.Response {
	switch req.Op {
	case control.OpPing:
		return &control.Response{Pid: os.Getpid()}
	case control.OpStatus:
		return d.status(req.Resource)
	case control.OpShutdown:
		failed := d.downAll(ctx)
		d.signalIfEmpty()
		if len(failed) > 0 {
			// The resources are gone from the daemon either way (it
			// exits), but a verb that could not take one down cleanly
			// must not report success.
			return &control.Response{Kind: control.KindOther, Error: "down failed for " + strings.Join(failed, ", ")}
		}
		return &control.Response{}
	case control.OpUp, control.OpAttach, control.OpConnect:
		d.mu.Lock()
		if d.stopping {
			d.mu.Unlock()
			return &control.Response{Kind: control.KindStopping, Error: "the gdrbd daemon is stopping"}
		}
		d.busy++
		d.mu.Unlock()
		defer func() {
			d.mu.Lock()
			d.busy--
			d.mu.Unlock()
			d.signalIfEmpty()
		}()
		return d.upish(ctx, req)
	}
	h := d.lookup(req.Resource)
	if h == nil {
		if req.Op == control.OpDown {
			// drbdsetup down of an unknown resource succeeds (missing_ok).
			d.signalIfEmpty()
			return &control.Response{}
		}
		return notHeld(req.Resource)
	}
	switch req.Op {
	case control.OpWait:
		return d.wait(ctx, h, req)
	case control.OpDown:
		h.admin.Lock()
		err := h.drv.Down(ctx)
		if err == nil {
			d.mu.Lock()
			if d.res[h.name] == h {
				delete(d.res, h.name)
			}
			d.mu.Unlock()
		}
		h.admin.Unlock()
		if err != nil {
			return errResponse(err)
		}
		d.log.Info("resource down", zap.String("resource", h.name))
		d.signalIfEmpty()
		return &control.Response{}
	}
	h.admin.Lock()
	defer h.admin.Unlock()
	var err error
	switch req.Op {
	case control.OpDetach:
		err = h.drv.Detach(ctx)
		if errors.Is(err, replication.ErrIsDiskless) {
			// Nothing to do: DRBD maps SS_IS_DISKLESS to
			// SS_NOTHING_TO_DO for detach, and drbdadm exits 0.
			err = nil
		}
	case control.OpDisconnect:
		err = h.drv.Disconnect(ctx)
	case control.OpPrimary:
		err = h.drv.Primary(ctx, req.Force)
	case control.OpSecondary:
		err = h.drv.Secondary(ctx)
	case control.OpInvalidate:
		err = h.drv.Invalidate(ctx)
	case control.OpInvalidateRemote:
		err = h.drv.InvalidateRemote(ctx)
	case control.OpVerify:
		err = h.drv.Verify(ctx)
	case control.OpPauseSync:
		err = h.drv.PauseSync(ctx)
	case control.OpResumeSync:
		err = h.drv.ResumeSync(ctx)
	case control.OpOutdate:
		err = h.drv.Outdate(ctx)
	case control.OpNewCurrentUUID:
		err = h.drv.NewCurrentUUID(ctx, req.ClearBitmap)
	default:
		return &control.Response{Kind: control.KindOther, Error: fmt.Sprintf("gdrbd daemon: unknown request %s", req.Op)}
	}
	if err != nil {
		return errResponse(err)
	}
	return &control.Response{}
}

func notHeld(name string) *control.Response {
	return &control.Response{Kind: control.KindNoResource, Error: fmt.Sprintf("%s: not up in this daemon", name)}
}

// errResponse classifies a driver error: a refused state change carries
// DRBD's code, everything else its text.
func errResponse(err error) *control.Response {
	var se replication.StateErr
	if errors.As(err, &se) {
		return &control.Response{Kind: control.KindStateChange, StateCode: se.Code(), Error: se.Error()}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &control.Response{Kind: control.KindTimeout, Error: err.Error()}
	}
	return &control.Response{Kind: control.KindOther, Error: err.Error()}
}

func (d *daemon) lookup(name string) *held {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.res[name]
}

// upish handles up, attach and connect: the configuration is read afresh,
// and a resource the daemon does not hold yet is created first.
func (d *daemon) upish(ctx context.Context, req *control.Request) *control.Response {
	cfg, err := d.loadCfg(req.ConfigPath, d.node)
	if err != nil {
		return &control.Response{Kind: control.KindConfig, Error: err.Error()}
	}
	rc, err := cfg.Resource(req.Resource)
	if err != nil {
		return &control.Response{Kind: control.KindConfig, Error: err.Error()}
	}
	d.mu.Lock()
	h := d.res[req.Resource]
	created := false
	if h == nil {
		drv, err := d.newDriver(driver.Options{Config: rc, Logger: d.log,
			RunDir: d.runDir, KernelNBD: d.kernelNBD, SyncIO: d.syncIO})
		if err != nil {
			d.mu.Unlock()
			return errResponse(err)
		}
		h = &held{name: rc.Name, drv: drv}
		d.res[rc.Name] = h
		created = true
	}
	d.mu.Unlock()

	h.admin.Lock()
	defer h.admin.Unlock()
	fail := func(err error) *control.Response {
		if created {
			// A half-made resource is taken down again, as drbdadm up
			// leaves nothing behind that needs a down.
			_ = h.drv.Down(context.WithoutCancel(ctx))
			d.mu.Lock()
			if d.res[h.name] == h {
				delete(d.res, h.name)
			}
			d.mu.Unlock()
		}
		return errResponse(err)
	}
	switch req.Op {
	case control.OpUp:
		if !created {
			// drbdsetup new-minor of an existing minor.
			return &control.Response{Kind: control.KindOther, StateCode: errMinorExists,
				Error: "Minor or volume exists already (delete it first)"}
		}
		if err := h.drv.Attach(ctx); err != nil {
			return fail(err)
		}
		if err := h.drv.Connect(ctx, req.DiscardMyData); err != nil {
			return fail(err)
		}
		d.log.Info("resource up", zap.String("resource", h.name))
		if req.Primary {
			force := req.Force || justCreated(h.drv.Status())
			if err := h.drv.Primary(ctx, force); err != nil {
				// The resource stays up, as `drbdadm up && drbdadm
				// primary` would leave it.
				return errResponse(err)
			}
		}
	case control.OpAttach:
		if err := h.drv.Attach(ctx); err != nil {
			return fail(err)
		}
	case control.OpConnect:
		if err := h.drv.Connect(ctx, req.DiscardMyData); err != nil {
			return fail(err)
		}
	}
	return &control.Response{}
}

// errMinorExists is DRBD's ERR_MINOR_OR_VOLUME_EXISTS.
const errMinorExists = 161

// justCreated reports metadata that never held data: the current UUID is
// create-md's UUID_JUST_CREATED (4) and there is no history. Promoting
// such a disk must be forced anyway, so `up --primary` forces it.
func justCreated(s driver.Status) bool {
	return s.UUIDs[0]&^1 == 4 && s.UUIDs[1] == 0 && s.UUIDs[2] == 0 && s.UUIDs[3] == 0
}

func (d *daemon) status(name string) *control.Response {
	d.mu.Lock()
	var hs []*held
	if name == "" {
		for _, h := range d.res {
			hs = append(hs, h)
		}
	} else if h := d.res[name]; h != nil {
		hs = append(hs, h)
	}
	d.mu.Unlock()
	if name != "" && len(hs) == 0 {
		return notHeld(name)
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].name < hs[j].name })
	resp := &control.Response{Volumes: []status.Volume{}}
	for _, h := range hs {
		resp.Volumes = append(resp.Volumes, h.volume())
	}
	return resp
}

// volume converts the driver's status and adds the resync mark.
func (h *held) volume() status.Volume {
	s := h.drv.Status()
	v := status.Volume{
		Resource: s.Name, Volume: s.Volume, Minor: s.Minor, Device: s.Device, State: s.State,
		Protocol: s.Protocol, Stats: s.Stats, Progress: s.Progress, UUIDs: s.UUIDs, Attached: s.Attached,
		AsyncIO: s.AsyncIO, SizeBytes: s.SizeBytes, Flags: s.Flags, LocalAddress: s.LocalAddress, PeerAddress: s.PeerAddress,
		LastError: s.LastError,
		NBD: status.NBD{Socket: s.NBD.Socket, Device: s.NBD.Device, KernelUnavailable: s.NBD.KernelUnavailable,
			Clients: s.NBD.Clients, Reads: s.NBD.Reads, Writes: s.NBD.Writes, Flushes: s.NBD.Flushes,
			Trims: s.NBD.Trims, Zeroes: s.NBD.Zeroes, FUA: s.NBD.FUA},
	}
	if v.Resource == "" {
		v.Resource = h.name
	}
	h.mu.Lock()
	if s.Progress.Running && h.total == s.Progress.TotalKiB && len(h.marks) > 0 {
		v.Mark = h.marks[0]
	}
	h.mu.Unlock()
	return v
}

// sampleMarks records a resync mark for every resource that syncs.
func (d *daemon) sampleMarks() {
	d.mu.Lock()
	hs := make([]*held, 0, len(d.res))
	for _, h := range d.res {
		hs = append(hs, h)
	}
	d.mu.Unlock()
	for _, h := range hs {
		p := h.drv.Status().Progress
		h.mu.Lock()
		switch {
		case !p.Running:
			h.marks, h.total = nil, 0
		default:
			if h.total != p.TotalKiB || (len(h.marks) > 0 && p.ElapsedMs < h.marks[len(h.marks)-1].ElapsedMs) {
				h.marks, h.total = nil, p.TotalKiB // a new run
			}
			h.marks = append(h.marks, status.SyncMark{LeftKiB: p.LeftKiB, ElapsedMs: p.ElapsedMs})
			if len(h.marks) > markCount {
				h.marks = h.marks[1:]
			}
		}
		h.mu.Unlock()
	}
}

func (d *daemon) wait(ctx context.Context, h *held, req *control.Request) *control.Response {
	if req.TimeoutMs > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.TimeoutMs)*time.Millisecond)
		defer cancel()
	}
	cond, ok := waitCond(req.Until)
	if !ok {
		return &control.Response{Kind: control.KindOther, Error: fmt.Sprintf("gdrbd daemon: unknown wait condition %s", req.Until)}
	}
	if err := h.drv.Wait(ctx, cond); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return &control.Response{Kind: control.KindTimeout, Error: fmt.Sprintf("%s: timed out waiting until %s", h.name, req.Until)}
		}
		return errResponse(err)
	}
	return &control.Response{Volumes: []status.Volume{h.volume()}}
}

// waitCond is the state OpWait waits for.
func waitCond(u control.Until) (func(driver.Status) bool, bool) {
	switch u {
	case control.UntilConnected:
		return func(s driver.Status) bool { return s.State.Conn >= replication.Connected }, true
	case control.UntilSynced:
		return func(s driver.Status) bool {
			return s.State.Conn == replication.Connected && !s.Progress.Running
		}, true
	case control.UntilUpToDate:
		return func(s driver.Status) bool {
			return s.State.Conn == replication.Connected && s.State.Disk == replication.UpToDate &&
				s.State.PDsk == replication.UpToDate
		}, true
	}
	return nil, false
}

// downAll takes every resource down (SIGTERM, shutdown): the metadata is
// written clean. Failures are logged; the resource is forgotten anyway
// because the process is about to end.
// downAll takes every resource down and forgets it, also when its down
// failed (logged); it returns the names whose down failed, sorted.
func (d *daemon) downAll(ctx context.Context) (failed []string) {
	var fmu sync.Mutex
	d.mu.Lock()
	hs := make([]*held, 0, len(d.res))
	for _, h := range d.res {
		hs = append(hs, h)
	}
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.admin.Lock()
			defer h.admin.Unlock()
			err := h.drv.Down(ctx)
			if err != nil {
				d.log.Error("down failed", zap.String("resource", h.name), zap.Error(err))
				fmu.Lock()
				failed = append(failed, h.name)
				fmu.Unlock()
			}
			d.mu.Lock()
			delete(d.res, h.name)
			d.mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Strings(failed)
	return failed
}

func (d *daemon) signalIfEmpty() {
	d.mu.Lock()
	empty := len(d.res) == 0 && d.busy == 0
	d.mu.Unlock()
	if empty {
		select {
		case d.empty <- struct{}{}:
		default:
		}
	}
}

// isEmpty reports no resources and no request that may add one.
func (d *daemon) isEmpty() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.res) == 0 && d.busy == 0
}

// stopIfEmpty decides to stop when the daemon is empty, atomically with
// the check: no resource can be added afterwards.
func (d *daemon) stopIfEmpty() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.res) == 0 && d.busy == 0 {
		d.stopping = true
		return true
	}
	return false
}

// stop turns away every later request that would add a resource.
func (d *daemon) stop() {
	d.mu.Lock()
	d.stopping = true
	d.mu.Unlock()
}

// runLock takes the run directory's lock: one daemon per run dir. The
// lock lives as long as the returned file is open (the process).
func runLock(runDir string) (*os.File, error) {
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(runDir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		pid, _ := os.ReadFile(filepath.Join(runDir, pidFile))
		return nil, fmt.Errorf("another gdrbd daemon runs for %s (pid %s): %w", runDir, trimNL(string(pid)), err)
	}
	return f, nil
}

func trimNL(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	if s == "" {
		return "?"
	}
	return s
}

func writePidFile(runDir string) error {
	return os.WriteFile(filepath.Join(runDir, pidFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
}
