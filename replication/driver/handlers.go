package driver

import (
	"errors"
	"os/exec"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/gdrbd/gdrbd/replication"
)

// runHandler runs a drbd.conf handler the way the kernel's usermode
// helper and drbdadm 8.4 (adm_khelper) together run it: `/bin/sh -c CMD`
// with the helper's minimal environment plus what drbdadm adds. It runs
// asynchronously; with Wait set, the exit code goes back to the core.
func (r *Resource) runHandler(h replication.Handler) {
	cmd := r.opts.Config.Handlers[h.Name]
	if cmd == "" {
		// drbdadm exits 0 when no such handler is configured.
		if h.Wait {
			r.node.HandlerDone(h.ID, 0)
		}
		return
	}
	env := r.handlerEnv(h.Name)
	log := r.log.With(zap.String("handler", h.Name))
	log.Info("running handler", zap.String("command", cmd))
	go func() {
		c := exec.Command("/bin/sh", "-c", cmd)
		c.Env = env
		c.Dir = "/"
		err := c.Run()
		code := 0
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code = ee.ExitCode()
		case err != nil:
			code = -1
			log.Warn("handler could not be run", zap.Error(err))
		}
		log.Info("handler finished", zap.Int("exit_code", code))
		if h.Wait {
			r.post(func() { r.node.HandlerDone(h.ID, code) })
		}
	}()
}

// handlerEnv is the environment of a handler: the kernel helper's
// (HOME, TERM, PATH, DRBD_PEER_AF, DRBD_PEER_ADDRESS) and drbdadm's
// (DRBD_PEER, DRBD_PEERS, DRBD_MINOR, DRBD_VOLUME, DRBD_LL_DISK,
// DRBD_RESOURCE, DRBD_CONF), plus DRBD_BACKING_DEV as DRBD 9 names the
// backing disk.
func (r *Resource) handlerEnv(name string) []string {
	rc, s := r.opts.Config, &r.set
	env := []string{"HOME=/", "TERM=linux", "PATH=/sbin:/usr/sbin:/bin:/usr/bin"}
	if rc.Peer != nil {
		af := s.peerFamily
		if af == "" {
			af = "ipv4"
		}
		env = append(env, "DRBD_PEER_AF="+af, "DRBD_PEER_ADDRESS="+rc.Peer.Address.Host)
		if len(s.peerNames) > 0 {
			env = append(env, "DRBD_PEER="+s.peerNames[0], "DRBD_PEERS="+strings.Join(s.peerNames, " "))
		}
	}
	env = append(env, "DRBD_MINOR="+strconv.Itoa(s.vol.Minor))
	// fence-peer and unfence-peer are resource-level helpers: no volume.
	if name != "fence-peer" && name != "unfence-peer" {
		env = append(env, "DRBD_VOLUME="+strconv.Itoa(s.vol.Number), "DRBD_LL_DISK="+s.vol.Disk, "DRBD_BACKING_DEV="+s.vol.Disk)
	}
	env = append(env, "DRBD_RESOURCE="+rc.Name)
	if rc.Pos.File != "" {
		env = append(env, "DRBD_CONF="+rc.Pos.File)
	}
	return env
}
