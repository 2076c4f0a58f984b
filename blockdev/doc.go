// Package blockdev gives every layer of gdrbd one way to reach storage: the
// Device interface over regular files, block devices and memory, and the
// test wrappers Faulty (injected errors per operation kind) and Crashable
// (a simulated power cut keeps only what was flushed plus a random subset
// of what was not).
//
// # Usage
//
//	d, err := blockdev.Open("/dev/sdb1", blockdev.Options{Direct: true, Exclusive: true})
//	if errors.Is(err, blockdev.ErrBusy) { /* mounted, or held by DRBD/LVM/another gdrbd */ }
//	buf := pool.Get(4096)            // aligned for O_DIRECT (a blockdev.BufferPool)
//	_, err = d.WriteAt(buf, 8192)    // pwrite, no lock: parallel callers welcome
//	err = d.Flush()                  // fdatasync: now it survives a power cut
//	err = blockdev.Discard(d, 0, 1<<20) // punch hole / zeroing discard, or zeroes
//
// Tests use memory and the wrappers:
//
//	mem := blockdev.NewMem(1 << 30)                      // sparse: costs what is written
//	f := blockdev.NewFaulty(mem)
//	f.Inject(blockdev.Fault{Op: blockdev.OpWrite, Off: 0, Len: 4096, After: 3, Sticky: true})
//	c, _ := blockdev.NewCrashable(mem, blockdev.CrashPer4K)
//	... writes, some flushes ...
//	after := c.Crash(rand.New(rand.NewPCG(seed, 0)))     // the disk after a reboot
//
// # What a crash keeps
//
// Crashable models a volatile write cache in front of stable storage:
//
//	WriteAt/Discard ──► inner device (reads see it at once)
//	        └──────────► pending log ──Flush──► durable image
//	Crash(r) = durable image + each pending write (or each 4 KiB / 512 B
//	           piece of one) with probability 1/2, applied in write order
//
// # Direct I/O
//
// With Options.Direct, writes must be aligned to File.Alignment (the
// logical block size, or the file system's STATX_DIOALIGN): offset and
// length, else ErrUnaligned. Memory alignment and read alignment are
// handled internally with bounce buffers from a BufferPool, whose buffers
// are 4096-byte aligned:
//
//	class:   4K  8K  16K ... 4M      (power of two >= request)
//	buffer:  [aligned start .................. len = request, cap = class]
package blockdev
