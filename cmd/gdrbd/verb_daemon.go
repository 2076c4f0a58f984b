package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gdrbd/gdrbd/control"
)

func init() {
	register(&verb{
		Name:    "daemon",
		Args:    "[--log-file F] [--log-format json|console] [--kernel-nbd=false] [--aio=false]",
		Summary: "run the node's daemon in the foreground (for systemd; `up` starts it detached)",
		Run:     runDaemon,
	})
}

// idleExit is how long a daemon that never got a resource waits before it
// exits (a `gdrbd up` that died between spawning it and asking it).
const idleExit = 30 * time.Second

// downAllTimeout bounds the clean shutdown on SIGTERM.
const downAllTimeout = 60 * time.Second

// replyGrace is how long a stopping daemon waits for requests in progress.
const replyGrace = 10 * time.Second

func runDaemon(env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("daemon", flag.ContinueOnError)
	logPath := fs.String("log-file", "", "log to this file (default: stderr)")
	defFormat := "json"
	if f := os.Getenv("GDRBD_LOG_FORMAT"); f != "" {
		defFormat = f // also reaches the daemon `up` starts
	}
	logFormat := fs.String("log-format", defFormat, "json or console ($GDRBD_LOG_FORMAT)")
	kernelNBD := fs.Bool("kernel-nbd", os.Getenv("GDRBD_KERNEL_NBD") != "0", "attach /dev/nbdX on promotion when the nbd module exists ($GDRBD_KERNEL_NBD=0: never)")
	aio := fs.Bool("aio", os.Getenv("GDRBD_AIO") != "0", "drive O_DIRECT backing devices through native AIO when the kernel allows it ($GDRBD_AIO=0: a thread pool doing pread/pwrite)")
	readyFD := fs.Int("ready-fd", -1, "write \"ok\" (or the error) to this inherited fd once serving")
	if _, err := parseVerbFlags(fs, args); err != nil {
		return err
	}
	ready := func(string) {}
	if *readyFD >= 0 {
		f := os.NewFile(uintptr(*readyFD), "ready")
		ready = func(msg string) {
			fmt.Fprintln(f, msg)
			f.Close()
			ready = func(string) {}
		}
	}
	err := daemonMain(env, *logPath, *logFormat, *kernelNBD, !*aio, func() { ready("ok") })
	if err != nil {
		ready("error: " + err.Error())
	}
	return err
}

func newLogger(path, format string) (*zap.Logger, error) {
	var enc zapcore.Encoder
	ecfg := zap.NewProductionEncoderConfig()
	ecfg.EncodeTime = zapcore.ISO8601TimeEncoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(ecfg)
	case "console":
		enc = zapcore.NewConsoleEncoder(ecfg)
	default:
		return nil, usagef("daemon: --log-format %q: want json or console", format)
	}
	var w zapcore.WriteSyncer = zapcore.Lock(os.Stderr)
	if path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return nil, err
		}
		w = zapcore.Lock(f)
	}
	return zap.New(zapcore.NewCore(enc, w, zap.InfoLevel), zap.ErrorOutput(w)), nil
}

// daemonMain runs the daemon until SIGTERM/SIGINT, a shutdown request, or
// the last resource going down.
func daemonMain(env *cliEnv, logPath, logFormat string, kernelNBD, syncIO bool, ready func()) error {
	log, err := newLogger(logPath, logFormat)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // nothing to do about a failed log flush
	runDir, err := filepath.Abs(env.RunDir)
	if err != nil {
		return err
	}
	lock, err := runLockWait(runDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := writePidFile(runDir); err != nil {
		return err
	}
	defer os.Remove(filepath.Join(runDir, pidFile))
	l, err := control.Listen(socketPath(runDir))
	if err != nil {
		return err
	}
	d := newDaemon(runDir, nodeName(env), log)
	d.kernelNBD = kernelNBD
	d.syncIO = syncIO
	srv := control.NewServer(d, log)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(l) }()
	log.Info("daemon started", zap.String("run_dir", runDir), zap.String("node", d.node), zap.Int("pid", os.Getpid()))
	ready()

	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	marks := time.NewTicker(markStep)
	defer marks.Stop()
	idle := time.NewTimer(idleExit)
	defer idle.Stop()
	shutdown := func(why string) error {
		log.Info("daemon stopping", zap.String("why", why))
		ctx, cancel := context.WithTimeout(context.Background(), downAllTimeout)
		d.downAll(ctx)
		cancel()
		// Requests in progress (the `down` that emptied the daemon)
		// still get their replies.
		ctx, cancel = context.WithTimeout(context.Background(), replyGrace)
		srv.Shutdown(ctx)
		cancel()
		log.Info("daemon stopped")
		return nil
	}
	for {
		select {
		case s := <-sig:
			d.stop()
			return shutdown(s.String())
		case <-d.empty:
			if d.stopIfEmpty() {
				return shutdown("no resource left")
			}
		case <-idle.C:
			if d.stopIfEmpty() {
				return shutdown("idle without resources")
			}
		case <-marks.C:
			d.sampleMarks()
		case err := <-serveErr:
			d.stop()
			d.downAll(context.Background())
			return err
		}
	}
}

// lockWait is how long a new daemon waits for the lock of a daemon that
// no longer answers: one that is exiting after its last `down` (a quick
// `down; up`) releases it within moments.
const lockWait = 10 * time.Second

// runLockWait takes the run dir's lock; while the holder does not answer
// on the socket (it is on its way out), it retries for lockWait.
func runLockWait(runDir string) (*os.File, error) {
	deadline := time.Now().Add(lockWait)
	for {
		f, err := runLock(runDir)
		if err == nil || time.Now().After(deadline) || control.Alive(socketPath(runDir), time.Second) {
			return f, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ensureDaemon returns once a daemon answers on env's run dir, starting
// one detached (setsid, own log file) if none runs.
func ensureDaemon(env *cliEnv) error {
	sock := socketPath(env.RunDir)
	if control.Alive(sock, 5*time.Second) {
		return nil
	}
	runDir, err := filepath.Abs(env.RunDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return err
	}
	cfgPath, err := filepath.Abs(env.ConfigPath)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := filepath.Join(runDir, logFile)
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	cmd := exec.Command(self, "daemon", "--run-dir", runDir, "--node", nodeName(env), "--config", cfgPath,
		"--log-file", logPath, "--ready-fd", "3")
	cmd.Dir = "/"
	// Panics and runtime errors go to the log too.
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{pw}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return fmt.Errorf("starting the daemon: %w", err)
	}
	pw.Close()
	pid := cmd.Process.Pid
	// Not waited for: the daemon outlives this command.
	_ = cmd.Process.Release()
	line, rerr := bufio.NewReader(pr).ReadString('\n')
	line = strings.TrimSpace(line)
	if line == "ok" {
		return nil
	}
	// Another `up` may have started a daemon at the same moment; the
	// loser of the lock race reports that, and the winner serves.
	if control.Alive(sock, 5*time.Second) {
		return nil
	}
	if line == "" && rerr != nil && !errors.Is(rerr, io.EOF) {
		line = rerr.Error()
	}
	if line == "" {
		line = "exited before it was ready"
	}
	return fmt.Errorf("the gdrbd daemon (pid %d) did not start: %s (log: %s)", pid, strings.TrimPrefix(line, "error: "), logPath)
}
