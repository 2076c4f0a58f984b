// Package driver runs the pure replication core (replication.Node) against
// real disks, sockets, timers and the NBD front end: one Resource per
// drbd.conf resource on this node.
//
// # Usage
//
//	res, err := driver.New(driver.Options{Config: rc, Logger: log, RunDir: "/run/gdrbd"})
//	err = res.Attach(ctx)                 // open disk + metadata, apply the AL if unclean
//	err = res.Connect(ctx, false)         // listen + connect to the peer
//	err = res.Primary(ctx, true)          // promote; serve RunDir/r0.nbd
//	err = res.Wait(ctx, func(s driver.Status) bool { return s.State.PDsk == replication.UpToDate })
//	err = res.Secondary(ctx)              // replication.ErrDeviceInUse while a client is connected
//	err = res.Down(ctx)
package driver
