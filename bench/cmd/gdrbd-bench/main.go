// Command gdrbd-bench measures gdrbd against the local disk and reference
// NBD servers (package bench) and prints the tables.
//
//	sudo go run ./bench/cmd/gdrbd-bench -quick            # what `make bench` runs, about 2 minutes
//	sudo go run ./bench/cmd/gdrbd-bench -repeat 3 -md out.md -json raw.json   # the full matrix
//
// Without root (loop devices) or fio it says why and exits 0.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gdrbd/gdrbd/bench"
)

func main() {
	os.Exit(run())
}

func run() int {
	gdrbd := flag.String("gdrbd", "bin/gdrbd", "the gdrbd binary (make build)")
	quick := flag.Bool("quick", false, "bounded run: small devices, short points, fewer targets")
	repeat := flag.Int("repeat", 3, "repetitions of every point (tables show medians)")
	runtimeF := flag.Duration("runtime", 8*time.Second, "fio runtime per point")
	appRuntime := flag.Duration("app-runtime", 10*time.Second, "fio runtime during the loaded resync")
	size := flag.String("size", "1G", "device size for the write matrix (K, M, G)")
	rsize := flag.String("resync-size", "1G", "device size for the resync")
	sections := flag.String("sections", "write,memory,resync", "which sections: write and memory (issue 4), resync (issue 5)")
	dir := flag.String("dir", "/tmp", "scratch directory (files of twice the sizes; keep the path short)")
	quietBusy := flag.Float64("quiet-busy", 0.3, "before each point wait until the machine is less busy than this share of all CPUs ...")
	quietWait := flag.Duration("quiet-wait", 30*time.Second, "... but at most this long (0: never wait)")
	mdOut := flag.String("md", "", "also write the tables as markdown to this file")
	jsonOut := flag.String("json", "", "write every raw point as JSON to this file")
	cases := flag.String("resync-cases", "", "only these resync cases (comma-separated keys: unlimited, unlimited-mb32k, fixed200, fixed200-mb32k, seed, seed-mb32k, seed-load, seed-mb32k-load)")
	from := flag.String("from", "", "measure nothing: print the tables of these -json files (comma-separated, merged)")
	flag.Parse()

	if *from != "" {
		res, err := bench.LoadResults(strings.Split(*from, ",")...)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gdrbd-bench:", err)
			return 1
		}
		var b strings.Builder
		res.Markdown(&b)
		fmt.Print(b.String())
		if *mdOut != "" {
			if err := os.WriteFile(*mdOut, []byte(b.String()), 0o644); err != nil {
				fmt.Fprintln(os.Stderr, "gdrbd-bench:", err)
				return 1
			}
		}
		return 0
	}

	p := bench.Plan{Gdrbd: *gdrbd, Fio: "fio", Dir: *dir, Runtime: *runtimeF, AppRuntime: *appRuntime,
		Repeat: *repeat, Quick: *quick, QuietBusy: *quietBusy, QuietWait: *quietWait, Progress: os.Stderr}
	var err error
	if p.Size, err = parseSize(*size); err != nil {
		fmt.Fprintln(os.Stderr, "gdrbd-bench: -size:", err)
		return 2
	}
	if p.ResyncSize, err = parseSize(*rsize); err != nil {
		fmt.Fprintln(os.Stderr, "gdrbd-bench: -resync-size:", err)
		return 2
	}
	if *quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		def := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		def("repeat", func() { p.Repeat = 1 })
		def("runtime", func() { p.Runtime = 2 * time.Second })
		def("app-runtime", func() { p.AppRuntime = 2 * time.Second })
		def("size", func() { p.Size = 256 << 20 })
		def("resync-size", func() { p.ResyncSize = 256 << 20 })
		def("quiet-wait", func() { p.QuietWait = 0 })
	}
	if *cases != "" {
		p.ResyncCases = strings.Split(*cases, ",")
	}
	for _, s := range strings.Split(*sections, ",") {
		switch strings.TrimSpace(s) {
		case "write":
			p.Write = true
		case "memory":
			p.Memory = true
		case "resync":
			p.Resync = true
		default:
			fmt.Fprintf(os.Stderr, "gdrbd-bench: unknown section %q\n", s)
			return 2
		}
	}
	if abs, err := filepath.Abs(p.Gdrbd); err == nil {
		p.Gdrbd = abs
	}
	if err := bench.CheckEnv(p); err != nil {
		fmt.Fprintln(os.Stderr, "gdrbd-bench:", err)
		if errors.Is(err, bench.ErrSkip) {
			return 0
		}
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	facts := bench.MachineFacts(p.Dir)
	fmt.Fprintf(os.Stderr, "gdrbd-bench: %s\n", strings.Join(facts, "; "))
	res, err := bench.Run(ctx, p)
	if res != nil {
		var b strings.Builder
		fmt.Fprintf(&b, "Measured %s with %s (%d repetition(s), %v per point, %d MiB devices, resync %d MiB).\n\n",
			res.Started.Format("2006-01-02 15:04 MST"), strings.Join(append([]string{"gdrbd-bench"}, os.Args[1:]...), " "), p.Repeat, p.Runtime, p.Size>>20, p.ResyncSize>>20)
		for _, f := range facts {
			fmt.Fprintf(&b, "- %s\n", f)
		}
		b.WriteString("\n")
		res.Markdown(&b)
		fmt.Print(b.String())
		if *mdOut != "" {
			if werr := os.WriteFile(*mdOut, []byte(b.String()), 0o644); werr != nil {
				fmt.Fprintln(os.Stderr, "gdrbd-bench:", werr)
			}
		}
		if *jsonOut != "" {
			js, _ := json.MarshalIndent(res, "", " ")
			if werr := os.WriteFile(*jsonOut, js, 0o644); werr != nil {
				fmt.Fprintln(os.Stderr, "gdrbd-bench:", werr)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gdrbd-bench:", err)
		return 1
	}
	return 0
}

// parseSize reads 256M, 1G, 4096.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	var n int64
	if _, err := fmt.Sscan(s, &n); err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}
