// Package metadata reads and writes DRBD's v08 on-disk metadata: the
// superblock with the generation UUIDs, the activity log ring and the
// bitmap area.
package metadata
