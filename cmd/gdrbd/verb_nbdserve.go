package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/gdrbd/gdrbd/blockdev"
	"github.com/gdrbd/gdrbd/nbd"
)

// nbd-serve exports a file or block device over NBD without replication:
// the kernel-NBD guest test drives it until the daemon (`gdrbd up`) takes
// over that role. Hidden because it is a test and debugging tool.
func init() {
	register(&verb{
		Name:    "nbd-serve",
		Args:    "--file F [--kernel auto|/dev/nbdN] [--unix S] [--tcp ADDR]",
		Summary: "serve a file over NBD (test helper)",
		Hidden:  true,
		Run:     runNBDServe,
	})
}

func runNBDServe(env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("nbd-serve", flag.ContinueOnError)
	file := fs.String("file", "", "backing file or block device")
	create := fs.Int64("create", 0, "create the file with this many bytes if it does not exist")
	unixPath := fs.String("unix", "", "listen on this unix socket (mode 0600)")
	tcpAddr := fs.String("tcp", "", "listen on this TCP address (host:port)")
	kernel := fs.String("kernel", "", "attach a kernel device: auto, N or /dev/nbdN")
	reconnect := fs.Int("reconnect", -1, "hand new sockets to the live /dev/nbdN (RECONFIGURE) instead of attaching")
	useIoctl := fs.Bool("ioctl", false, "attach with ioctls instead of netlink")
	conns := fs.Int("conns", 2, "kernel sockets")
	deadConn := fs.Duration("dead-conn-timeout", 30*time.Second, "how long the kernel waits for a restarted server")
	minBlock := fs.Uint("min-block", 512, "minimum block size: 512 or 4096")
	name := fs.String("name", "", "export name")
	direct := fs.Bool("direct", false, "open the backing store with O_DIRECT")
	verbose := fs.Bool("v", false, "log to stderr")
	if _, err := parseVerbFlags(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return usagef("nbd-serve: --file is required")
	}
	if *unixPath == "" && *tcpAddr == "" && *kernel == "" && *reconnect < 0 {
		return usagef("nbd-serve: nothing to serve on: give --unix, --tcp, --kernel or --reconnect")
	}
	log := zap.NewNop()
	if *verbose {
		cfg := zap.NewProductionConfig()
		cfg.OutputPaths = []string{"stderr"}
		l, err := cfg.Build()
		if err != nil {
			return err
		}
		log = l
	}
	if *create > 0 {
		if _, err := os.Stat(*file); errors.Is(err, os.ErrNotExist) {
			f, err := os.OpenFile(*file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			err = f.Truncate(*create)
			f.Close()
			if err != nil {
				return err
			}
		}
	}
	dev, err := blockdev.Open(*file, blockdev.Options{Direct: *direct})
	if err != nil {
		return err
	}
	defer dev.Close()
	srv, err := nbd.NewServer(nbd.Config{
		Backend:      nbd.DeviceBackend{Dev: dev},
		Name:         *name,
		Description:  "gdrbd nbd-serve " + *file,
		MinBlockSize: uint32(*minBlock),
		Logger:       log,
	})
	if err != nil {
		return err
	}
	defer srv.Close()

	var where []string
	serveErr := make(chan error, 2)
	if *unixPath != "" {
		l, err := nbd.ListenUnix(*unixPath)
		if err != nil {
			return err
		}
		go func() { serveErr <- srv.Serve(l) }()
		where = append(where, "unix="+*unixPath)
	}
	if *tcpAddr != "" {
		l, err := nbd.ListenTCP(*tcpAddr)
		if err != nil {
			return err
		}
		go func() { serveErr <- srv.Serve(l) }()
		where = append(where, "tcp="+l.Addr().String())
	}
	var kdev *nbd.KernelDevice
	opts := nbd.AttachOptions{Index: -1, Connections: *conns, DeadConnTimeout: *deadConn,
		ForceIoctl: *useIoctl, Logger: log}
	switch {
	case *reconnect >= 0:
		kdev, err = nbd.Reconnect(srv, *reconnect, opts)
	case *kernel != "":
		if *kernel != "auto" {
			n, perr := strconv.Atoi(strings.TrimPrefix(*kernel, "/dev/nbd"))
			if perr != nil {
				return usagef("nbd-serve: --kernel %q: want auto, N or /dev/nbdN", *kernel)
			}
			opts.Index = n
		}
		kdev, err = nbd.Attach(context.Background(), srv, opts)
	}
	if err != nil {
		if errors.Is(err, nbd.ErrNoKernelNBD) && len(where) > 0 {
			fmt.Fprintf(env.Stderr, "gdrbd: %v; serving the socket only\n", err)
		} else {
			return err
		}
	}
	if kdev != nil {
		via := "ioctl"
		if kdev.Netlink() {
			via = "netlink"
		}
		where = append(where, "device="+kdev.Path(), "via="+via)
	}
	fmt.Fprintf(env.Stdout, "nbd-serve: ready %s\n", strings.Join(where, " "))

	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	defer signal.Stop(sig)
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGUSR1 {
				printNBDStats(env, srv, kdev)
				continue
			}
			var derr error
			if kdev != nil {
				derr = kdev.Detach()
			}
			srv.Close()
			printNBDStats(env, srv, nil)
			return derr
		case err := <-serveErr:
			if errors.Is(err, nbd.ErrServerClosed) {
				return nil
			}
			return err
		}
	}
}

// printNBDStats prints one line of counters (the guest test greps it)
// and, for a kernel device, whether something holds it.
func printNBDStats(env *cliEnv, srv *nbd.Server, kdev *nbd.KernelDevice) {
	st := srv.Stats()
	line := fmt.Sprintf("nbd-serve: stats reads=%d writes=%d flushes=%d trims=%d zeroes=%d fua=%d errors=%d conns=%d",
		st.Reads, st.Writes, st.Flushes, st.Trims, st.Zeroes, st.FUA, st.Errors, st.Connections)
	if kdev != nil {
		u, err := nbd.DeviceUsage(kdev.Path())
		if err != nil {
			line += fmt.Sprintf(" usage-error=%q", err.Error())
		} else {
			line += fmt.Sprintf(" inuse=%t usage=%q", u.InUse(), u.String())
		}
		if c, err := nbd.Status(kdev.Index()); err == nil {
			line += fmt.Sprintf(" kernel-connected=%t", c)
		}
	}
	fmt.Fprintln(env.Stdout, line)
}
