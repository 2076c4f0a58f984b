// Package replication is DRBD 8.4's replication logic for one resource
// volume on one node, as a pure state machine: roles, connection and disk
// states, the connection handshake, the UUID comparison that picks the
// resync direction, epochs and barriers of protocols A/B/C, the receiver
// that applies epochs in order, resync and online verify.
//
// Node does no I/O: no sockets, goroutines, clocks or files. Its caller
// (package replication/driver, or the simulator in replication/sim) feeds
// it inputs and carries out the work it returns in a Ready, in the order
// Ready's documentation demands:
//
//	AL BEFORE DATA       a data write is emitted only after the activity-log
//	                     transaction covering its extents is durable
//	BITMAP BEFORE EVICT  bitmap pages of an evicted extent are durable before
//	                     the transaction that evicts it
//	ACK AFTER BOTH DISKS under protocol C a write completes only after the
//	                     local write completed and the peer's P_WRITE_ACK
//	BARRIER AFTER EPOCH  P_BARRIER n follows every write of epoch n and
//	                     precedes every write of epoch n+1
//	EPOCHS IN ORDER      the receiver issues no write of epoch n+1 before all
//	                     of epoch n completed and its disk was flushed
//
// and, with two Primaries (CONFLICTING WRITES in conflicts.go):
//
//	ACKS BEFORE LATER WRITES  the resolver checks a peer write only after
//	                          every ack the peer numbered before it
//	ACK BEFORE UNLOCK         a peer write's ack goes out before its range
//	                          lock, so our write queued behind it is numbered
//	                          after the ack
//
// The simulator checks these with seeded runs; the scenario tests there
// show each user-visible behaviour (split brain, verify, resync of only the
// changed blocks, authentication, ...).
//
// # Usage
//
//	n := replication.NewNode(cfg, replication.Options{Rand: rnd})
//	_ = n.Attach(params)             // metadata loaded by the driver
//	_ = n.Connect(false)             // Ready().Net == NetConnect
//	// ... when both sockets exist:
//	n.Connected(acceptedMetaSocket)
//	for each packet read:  n.Receive(stream, msg)
//	for each completion:   n.DiskDone(id, err, data) / n.MetaDone(id, err)
//	every 100 ms:          n.Tick()
//	application I/O:       n.Propose(replication.Request{...})
//	admin:                 n.Primary(force, done), n.Secondary(done), ...
//	for n.HasReady() {
//		rd := n.Ready()
//		// write rd.MetaWrites (durably), issue rd.DiskOps, send rd.Messages,
//		// deliver rd.Completions, log rd.Events, run rd.Handlers, apply rd.Net
//		n.Advance()
//	}
//
// Enum values start at 1 (the zero value is invalid); Wire() gives DRBD's
// numeric encoding.
package replication
