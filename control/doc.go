// Package control is the protocol between the gdrbd CLI and the node's
// daemon: one framed msgpack Request per connection on a unix socket in
// the run directory, answered by one Response.
//
// The socket is the daemon's whole administrative surface (whoever
// reaches it can demote or take down a volume), so it is created 0600 in
// a 0700 directory and the server also checks the peer's credentials
// (SO_PEERCRED): root, or the daemon's own user.
//
// # Usage
//
// Daemon side:
//
//	l, err := control.Listen(filepath.Join(runDir, "gdrbd.sock"))
//	srv := control.NewServer(handler, log)
//	go srv.Serve(l)
//	defer srv.Close()
//
// CLI side:
//
//	resp, err := control.Do(ctx, sock, &control.Request{Op: control.OpStatus})
//	if errors.Is(err, control.ErrNoDaemon) { ... nothing is up ... }
//	if err := resp.Err(); err != nil { ... *control.Error with Kind ... }
//
// A request in progress is cancelled (its ctx ends) when the client
// closes the connection, so `wait-connect` interrupted by Ctrl-C leaves
// nothing waiting in the daemon.
package control
