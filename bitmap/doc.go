// Package bitmap is DRBD's out-of-sync bitmap: one bit per 4 KiB block.
package bitmap
