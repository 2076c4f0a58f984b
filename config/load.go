package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Load reads the drbd.conf at path with its includes (globs relative to
// the including file's directory), checks it the way drbdadm-84 does plus
// DRBD 8.4's value limits, and returns it with host sections selected for
// opts.Node. Errors wrap ErrSyntax, ErrInvalid or ErrIO; an ErrorList holds
// every problem found.
func Load(path string, opts Options) (*Config, error) {
	opts = opts.withDefaults()
	src, err := opts.ReadFile(path)
	if err != nil {
		return nil, &Error{Pos: Position{File: path}, Msg: fmt.Sprintf("cannot read: %v", err), kind: ErrIO}
	}
	return parse(path, src, opts)
}

// Parse is Load for a configuration already in memory; name is used in
// messages and as the base for relative includes.
func Parse(name string, src []byte, opts Options) (*Config, error) {
	return parse(name, src, opts.withDefaults())
}

func (o Options) withDefaults() Options {
	if o.Node == "" {
		o.Node = os.Getenv("__DRBD_NODE__")
	}
	if o.Node == "" {
		o.Node, _ = os.Hostname()
	}
	if o.ReadFile == nil {
		o.ReadFile = os.ReadFile
	}
	if o.Glob == nil {
		o.Glob = filepath.Glob
	}
	if o.HaveIP == nil {
		o.HaveIP = haveIP
	}
	return o
}

// haveIP reports whether addr is configured on a local interface. Like
// drbd-utils, families other than ipv4 and ipv6 (ssocks, sdp) always match.
func haveIP(family, addr string) bool {
	if family != "ipv4" && family != "ipv6" {
		return true
	}
	want := parseIP(addr)
	if want == nil {
		return false
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if got := parseIP(ipn.IP.String()); got != nil && got.Unmap() == want.WithZone("").Unmap() {
			return true
		}
	}
	return false
}

// canonify is drbdadm's canonify_path: the absolute path with the
// directory's symbolic links resolved (it chdirs there and asks getcwd).
func (l *loader) canonify(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return path
	}
	dir, base := filepath.Split(abs)
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		return filepath.Join(r, base)
	}
	return abs
}

// canonical is the path a file is known by for "read only once"
// (realpath(3)).
func (l *loader) canonical(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return filepath.Clean(path)
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r
	}
	return abs
}

func parse(name string, src []byte, opts Options) (cfg *Config, err error) {
	raw := &rawConfig{uniq: map[string]Position{}}
	raw.global.set = map[string]Position{}
	raw.global.usageCount = UsageCountAsk
	raw.global.dialogRefresh = 1
	raw.global.cmdTimeoutShort, raw.global.cmdTimeoutMedium, raw.global.cmdTimeoutLong = 5, 121, 600
	l := &loader{opts: opts, cfg: raw, warned: map[Position]bool{}}
	raw.uniq[l.canonical(name)] = Position{File: name}

	catch := func(f func()) {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(abort); !ok {
					panic(r)
				}
			}
		}()
		f()
	}
	catch(func() { l.parseFile(name, name, src) })
	if len(raw.errs) > 0 {
		return nil, raw.errs
	}
	catch(func() { l.post(raw) })
	if len(raw.errs) > 0 {
		return nil, raw.errs
	}
	cfg = &Config{File: l.canonify(name), Node: opts.Node, Warnings: raw.warnings, raw: raw}
	g := &raw.global
	cfg.Global = Global{
		UsageCount:            g.usageCount,
		MinorCount:            g.minorCount,
		DialogRefresh:         time.Duration(g.dialogRefresh) * time.Second,
		DisableIPVerification: g.disableIPVerification,
		UdevAlwaysUseVnr:      g.udevAlwaysUseVnr,
		CmdTimeoutShort:       time.Duration(g.cmdTimeoutShort) * time.Second,
		CmdTimeoutMedium:      time.Duration(g.cmdTimeoutMedium) * time.Second,
		CmdTimeoutLong:        time.Duration(g.cmdTimeoutLong) * time.Second,
		Ext:                   buildExtensions(raw.ext),
	}
	var commonExt []extSetting
	if raw.common != nil {
		commonExt = raw.common.ext
	}
	for _, r := range raw.resources {
		cfg.Resources = append(cfg.Resources, build(l, raw, r, commonExt))
	}
	return cfg, nil
}

// build derives the typed Resource from the expanded raw one. Values were
// checked where they are written (checkWrittenValues), so the errors fill
// would repeat for inherited copies are not collected again.
func build(l *loader, raw *rawConfig, r *rawResource, commonExt []extSetting) *Resource {
	res := &Resource{Name: r.name, Pos: r.pos, Stacked: r.stacked}
	e := &r.eff
	fill(&res.Net, secNet, e.net)
	// after-sb-0pri discard-node-NAME: drbdadm turns it into discard-local
	// on NAME and discard-remote everywhere else.
	if o := e.net.last("after-sb-0pri"); o != nil && strings.HasPrefix(o.value, "discard-node-") {
		if strings.TrimPrefix(o.value, "discard-node-") == l.opts.Node {
			res.Net.AfterSB0Pri = ASBDiscardLocal
		} else {
			res.Net.AfterSB0Pri = ASBDiscardRemote
		}
	}
	res.Protocol = res.Net.Protocol
	fill(&res.Disk, secDisk, e.disk)
	res.Disk.ResyncAfterMinor = resyncAfterMinor(l, &res.Disk)
	fill(&res.Startup, secStartup, e.startup)
	res.Startup.BecomePrimaryOn = append([]string(nil), e.becomePrimaryOn...)
	res.Startup.StackedTimeouts = e.stackedTimeouts
	fill(&res.Options, secOptions, e.res)
	res.Handlers = map[string]string{}
	for _, o := range e.handlers {
		if _, dup := res.Handlers[o.name]; !dup {
			res.Handlers[o.name] = o.value
		}
	}
	for _, h := range r.hosts {
		host := buildHost(l, h)
		res.Hosts = append(res.Hosts, host)
		if h == r.me {
			res.Local = host
		}
		if h == r.peer {
			res.Peer = host
		}
	}
	var hostExt []extSetting
	if res.Local != nil {
		res.Volumes = res.Local.Volumes
		hostExt = r.me.ext
	}
	res.Ext = buildExtensions(raw.ext, commonExt, r.ext, hostExt)
	return res
}

func resyncAfterMinor(l *loader, d *DiskOptions) int {
	if d.ResyncAfter == "" {
		return -1
	}
	p := &parser{l: l}
	_, v, err := p.resolveResyncAfter(d.ResyncAfter)
	if err != nil || v == nil {
		return -1
	}
	return v.minor
}

func buildAddress(a rawAddr) Address {
	if !a.isSet() {
		return Address{}
	}
	port, _ := parseNumber(a.port, '1')
	return Address{Family: a.family, Host: a.addr, Port: int(port)}
}

func buildHost(l *loader, h *rawHost) *Host {
	host := &Host{
		Names:      append([]string(nil), h.onHosts...),
		Address:    buildAddress(h.address),
		AltAddress: buildAddress(h.alt),
		Floating:   h.kind == hostFloating,
		StackedOn:  h.lowerName,
		Pos:        h.pos,
	}
	if pr := h.proxy; pr != nil {
		host.Proxy = &Proxy{Names: pr.onHosts, Inside: buildAddress(pr.inside), Outside: buildAddress(pr.outside)}
	}
	for _, v := range h.volumes {
		vol := &Volume{
			Number:    v.vnr,
			Device:    v.device,
			Minor:     v.minor,
			Disk:      v.disk,
			MetaDisk:  v.metaDisk,
			MetaIndex: -1,
			Pos:       v.pos,
		}
		if vol.Device == "" {
			vol.Device = fmt.Sprintf("/dev/drbd%d", uint32(v.minor))
		}
		switch v.metaIndex {
		case "internal":
		case "flexible":
			vol.Flexible = true
		default:
			n, _ := parseNumber(v.metaIndex, '1')
			vol.MetaIndex = int(n)
		}
		fill(&vol.DiskOptions, secDisk, v.effDisk)
		vol.DiskOptions.ResyncAfterMinor = resyncAfterMinor(l, &vol.DiskOptions)
		host.Volumes = append(host.Volumes, vol)
	}
	return host
}

// Resource returns the named resource if this node has a host section in
// it. Errors: *NotDefinedError (ErrNotDefined) listing the defined
// resources, *NotOnThisHostError (ErrNotOnThisHost) listing the
// resource's host names.
func (c *Config) Resource(name string) (*Resource, error) {
	for _, r := range c.Resources {
		if r.Name != name {
			continue
		}
		if r.Local == nil {
			var hosts []string
			for _, h := range r.Hosts {
				hosts = append(hosts, h.Names...)
			}
			return nil, &NotOnThisHostError{Resource: name, Node: c.Node, Hosts: hosts, Pos: r.Pos}
		}
		return r, nil
	}
	names := make([]string, len(c.Resources))
	for i, r := range c.Resources {
		names[i] = r.Name
	}
	return nil, &NotDefinedError{Name: name, File: c.File, Defined: names}
}

// Local returns the resources this node has a host section in, in file
// order (what drbdadm's `all` means).
func (c *Config) Local() []*Resource {
	var out []*Resource
	for _, r := range c.Resources {
		if r.Local != nil {
			out = append(out, r)
		}
	}
	return out
}

// ByMinor finds this node's volume with the given minor (drbdadm's
// "minor-N" and /dev/drbdN arguments).
func (c *Config) ByMinor(minor int) (*Resource, *Volume, bool) {
	for _, r := range c.Local() {
		for _, v := range r.Volumes {
			if v.Minor == minor {
				return r, v, true
			}
		}
	}
	return nil, nil, false
}

// Volume returns the volume with the given number.
func (r *Resource) Volume(n int) (*Volume, bool) {
	for _, v := range r.Volumes {
		if v.Number == n {
			return v, true
		}
	}
	return nil, false
}

// parseMinorArg reads "minor-N".
func parseMinorArg(s string) (int, bool) {
	rest, ok := strings.CutPrefix(s, "minor-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n >= 0
}

// Select resolves a drbdadm resource argument for this node: a resource
// name, RES/VOL, or minor-N. Volume is nil unless the argument names one.
func (c *Config) Select(arg string) (*Resource, *Volume, error) {
	if n, ok := parseMinorArg(arg); ok {
		if r, v, ok := c.ByMinor(n); ok {
			return r, v, nil
		}
	}
	name, volStr, hasVol := strings.Cut(arg, "/")
	r, err := c.Resource(name)
	if err != nil {
		return nil, nil, err
	}
	if !hasVol {
		return r, nil, nil
	}
	n, err := strconv.Atoi(volStr)
	if err == nil {
		if v, ok := r.Volume(n); ok {
			return r, v, nil
		}
	}
	return nil, nil, &NotDefinedError{Name: arg, File: c.File, Defined: volumeNames(r)}
}

func volumeNames(r *Resource) []string {
	out := make([]string, len(r.Volumes))
	for i, v := range r.Volumes {
		out[i] = r.Name + "/" + strconv.Itoa(v.Number)
	}
	return out
}

// IsInvalid reports whether err is a configuration problem (as opposed to
// a missing file or an unknown resource name).
func IsInvalid(err error) bool {
	return errors.Is(err, ErrSyntax) || errors.Is(err, ErrInvalid)
}
