// Package blockdev gives every layer of gdrbd one way to reach storage: the
// Device interface over regular files, block devices and memory, and the
// test wrappers Faulty (injected errors per operation kind) and Crashable
// (a simulated power cut keeps only what was flushed plus a random subset
// of what was not).
package blockdev
