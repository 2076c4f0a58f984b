// Package bench measures gdrbd against the local disk and reference NBD
// servers, so that the performance targets (replication cost, added
// latency, daemon memory, resync rate) are checked with numbers rather
// than believed. It drives the real binaries: two gdrbd daemons on loop
// devices through the CLI, fio through NBD, nbdkit and qemu-nbd on the
// same loop device, dd for the copy a resync has to beat.
//
// # Usage
//
//	sudo go run ./bench/cmd/gdrbd-bench -quick          # make bench: bounded, about 1-2 minutes
//	sudo go run ./bench/cmd/gdrbd-bench -repeat 3 -json raw.json -md tables.md
//	go run ./bench/cmd/gdrbd-bench -from raw.json       # the tables again, from saved points
//
// From Go, the pieces compose:
//
//	a, _ := bench.NewDisk(ctx, dir, "a.img", 1<<30)     // written-through file on a direct-I/O loop device (and b)
//	p, _ := bench.StartPair(ctx, gdrbdBin, dir, [2]*bench.Disk{a, b}, bench.PairConfig{Protocol: "C"})
//	_ = p.SkipSync(ctx)                                  // new-current-uuid --clear-bitmap, primary
//	m := bench.StartMeter(p.A.Pid(), p.B.Pid())          // CPU, RSS, syscalls, context switches
//	r, _ := bench.RunFio(ctx, "fio", dir, bench.Rand4kJ1.Job(bench.EngineNBD, p.URI(), size, 8*time.Second))
//	u := m.Stop()
//	rs, _ := p.FullSync(ctx, "fio", nil, time.Minute)   // for a fresh pair: rate from the target's log
//	p.Close(); a.Close(); b.Close()                      // down, kill by pid if needed, losetup -d
//
// and without root, the write path of two nodes inside one process, for
// go test's profiles (BenchmarkWritePath):
//
//	p, _ := bench.StartInProc(ctx, dir, bench.InProcOptions{Protocol: "C"})
//	c, _ := bench.DialNBD(p.Socket, "r0")
//	_ = c.Write(buf, off)
//
// # What a run measures
//
//	section  target                          workload                          read from
//	write    loop device, backing file       4k randwrite qd16 x1/x4 jobs      fio JSON: IOPS, MiB/s,
//	         nbdkit file, qemu-nbd           1M write qd4 x1/x4 jobs           clat and fsync p50/p99
//	         gdrbd StandAlone, A, B, C       4k randwrite qd1 + fsync          /proc: CPU, syscalls, ctx switches
//	memory   gdrbd A and C, max-buffers      4k randwrite qd16 x4,             /proc/PID/status VmRSS
//	         2048 and 128                    1M write qd4 x4                   (sampled), VmHWM
//	resync   dd loop->loop, then full        none, or fio 4k qd16 on the       the SyncTarget's log and
//	         initial syncs per config        Primary during the resync         `status --proc` speed:
//
// Every cell of a table is the median over the repetitions. The machine
// is shared: before each point the runner waits (up to -quiet-wait) for a
// quiet second, and every row says how busy the machine was with other
// work ("others' CPU").
//
// Everything a run creates (files, loop devices, daemons and servers, by
// pid) is removed when it ends, also on error or ^C. Without root the
// runner says why and exits 0.
package bench
