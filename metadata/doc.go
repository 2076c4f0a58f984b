// Package metadata reads and writes DRBD 8.4's v08 on-disk metadata: the
// superblock with the generation UUIDs, the activity log ring and the
// bitmap area, bit-compatible with the kernel and drbdmeta (golden tests
// against kernel-written data, interop tests against drbdmeta both ways).
//
// # Layouts
//
// Internal metadata sits at the end of the backing device; the superblock
// is its last 4 KiB-aligned 4 KiB block, the activity log (AL) right below,
// the bitmap below that (offsets in sectors, relative to the superblock):
//
//	0                                                          device end
//	|<------------------ data ------------------>|bitmap|  AL  |  SB  |pad|
//	                                   bm_offset ^      ^ al_offset (-64)
//	md_size_sect = bitmap sectors + 64 + 8; usable data = everything below
//
// External metadata puts the superblock first: a whole device (flexible)
// or 128 MiB slot N of a shared device (indexed, at N x 128 MiB):
//
//	| SB (8) | AL (64) | bitmap ...................................... |
//
// The superblock (Superblock), AL transactions (Transaction) and bitmap
// pages (package bitmap) document their byte layouts where they are
// defined. The AL ring holds stripes x stripe-size 4 KiB transactions;
// transaction number t goes to ring block (t mod n) mod stripes x
// stripe-size + (t mod n) / stripes.
//
// # Pure parts and I/O
//
// Superblock, GenerationUUIDs, Transaction, ReplayAL and ActivityLog do no
// I/O: the replication core drives ActivityLog and carries out what it
// returns, in the order its doc comment demands (AL BEFORE DATA, bitmap
// pages of evicted extents BEFORE the evicting transaction). Metadata is
// the I/O layer over a blockdev.Device, used by the CLI verbs and attach.
//
// # Usage
//
//	md, err := metadata.Open(dev, metadata.Internal())   // ErrNoMetadata, ErrV09, *InvalidError
//	res, err := md.ApplyAL()                            // drbdmeta apply-al
//	bm, err := md.ReadBitmap()                          // 1 bit per 4 KiB of la-size
//	md.SB.Flags |= metadata.FlagPrimaryInd
//	err = md.MarkUnclean()                              // attached: crash => apply-al needed
//	al, err := md.NewActivityLog(cfg.ALExtents)
//
//	b := al.Begin(metadata.ExtentRange(off, len))       // per write
//	if tx := al.Seal(); tx != nil {
//		err = md.CommitTransaction(tx, bm)              // evicted pages, flush, tx, flush
//		al.Committed(tx)                                // now the waiting writes may go
//	}
//	... data write completes; bm.SetSectors(...) if the peer lacks it ...
//	al.Complete(first, last)
//	err = md.WriteDirtyBitmap(bm)                       // from time to time, and at detach
//
// Create (create-md), Wipe (wipe-md), Dump (dump-md text), GI/ShowGI
// (get-gi/show-gi) and CheckExistingData (create-md's file system check)
// reproduce drbdmeta's behaviour and output for the CLI.
package metadata
