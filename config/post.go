package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// post runs drbdadm-84's steps after parsing, in its order: bind stacked
// resources to their lower resources, select this node's host section in
// every resource (post_parse), merge common into the resources and the
// resources' disk options into the volumes (expand_common), then the
// per-resource checks (validate_resource). gdrbd always expands, as
// drbdadm does for every command that configures something.
func (l *loader) post(cfg *rawConfig) {
	p := &parser{l: l} // for fail/uniq; no lexer needed here
	for _, r := range cfg.resources {
		if r.stackedOnOne {
			p.setOnHostsInRes(r)
		}
	}
	for _, r := range cfg.resources {
		if !r.stackedOnOne {
			p.setMe(r)
		}
	}
	for _, r := range cfg.resources {
		if r.stackedOnOne {
			p.setMe(r)
		}
	}
	for _, r := range cfg.resources {
		if r.stackedOnOne {
			p.setDiskInRes(r)
		}
	}
	// gdrbd's own value checks run on what is written, before common is
	// copied around, so each bad value is reported once, where it stands.
	p.checkWrittenValues(cfg)
	p.expandCommon(cfg)
	for _, r := range cfg.resources {
		p.validateResource(cfg, r)
	}
}

func (p *parser) resourceByName(name string) *rawResource {
	for _, r := range p.l.cfg.resources {
		if r.name == name {
			return r
		}
	}
	return nil
}

// setOnHostsInRes binds each stacked-on-top-of section to its lower
// resource; the section's host names become the lower resource's.
func (p *parser) setOnHostsInRes(r *rawResource) {
	for _, h := range r.hosts {
		if h.lowerName == "" {
			continue
		}
		lower := p.resourceByName(h.lowerName)
		if lower == nil {
			p.fail(errorf(ErrInvalid, h.pos, "in resource %s: referenced resource '%s' not defined", r.name, h.lowerName))
			continue
		}
		for _, lh := range lower.hosts {
			if lh.lowerName != "" {
				continue
			}
			h.onHosts = append(h.onHosts, lh.onHosts...)
			for _, n := range lh.onHosts {
				for _, v := range h.volumes {
					p.uniq(fmt.Sprintf("device-minor:%s:%d", n, uint32(v.minor)), v.pos, "minor %d used twice on host %s", v.minor, n)
				}
				for _, v := range h.volumes {
					if v.device != "" {
						p.uniq("device:"+n+":"+v.device, v.pos, "device %s used twice on host %s", v.device, n)
					}
				}
			}
		}
		h.lower = lower
		if isLoopback(h.address.addr) {
			for _, n := range h.onHosts {
				p.uniq(n+":"+h.address.addr+":"+h.address.port, h.address.pos, "address %s:%s used twice on host %s", h.address.addr, h.address.port, n)
			}
		}
	}
}

func containsName(names []string, n string) bool {
	for _, x := range names {
		if x == n {
			return true
		}
	}
	return false
}

// setMe selects this node's host section (set_me_in_resource): by name
// for `on`, by a local address (or the node name equal to the address)
// for `floating`, through the lower resource for stacked sections, and
// `_this_host` always. No section means the resource is ignored here.
func (p *parser) setMe(r *rawResource) {
	node := p.l.opts.Node
	for _, h := range r.hosts {
		switch {
		case h.kind == hostFloating:
			if !p.l.opts.HaveIP(h.address.family, h.address.addr) && node != h.address.addr {
				continue
			}
		case h.lowerName != "":
			if h.lower == nil || h.lower.me == nil {
				continue
			}
		case len(h.onHosts) == 0:
			continue
		default:
			if !containsName(h.onHosts, node) && h.onHosts[0] != "_this_host" {
				continue
			}
		}
		if r.me != nil {
			e := errorf(ErrInvalid, h.pos, "in resource %s, %s and %s: there are several host sections for this node (%s)", r.name, r.me.describe(), h.describe(), node)
			e.First = r.me.pos
			p.fail(e)
		}
		r.me = h
		if h.lower != nil {
			r.stacked = true
		}
	}
	if r.me == nil {
		r.ignore = true
	}
}

// setDiskInRes gives a stacked section's volumes the lower resource's
// devices as backing disks (set_disk_in_res).
func (p *parser) setDiskInRes(r *rawResource) {
	if r.ignore {
		return
	}
	for _, h := range r.hosts {
		if h.lower == nil || h.lower.ignore {
			continue
		}
		before := len(*p.errs())
		p.checkVolumeSetsStacked(r, h, h.lower.me)
		if len(*p.errs()) != before {
			continue
		}
		lv := h.lower.me.volumes
		for _, a := range h.volumes {
			for len(lv) > 0 && a.vnr > lv[0].vnr {
				lv = lv[1:]
			}
			if len(lv) == 0 || lv[0].vnr != a.vnr {
				continue
			}
			b := lv[0]
			if b.device != "" {
				a.disk = b.device
			} else {
				a.disk = fmt.Sprintf("/dev/drbd%d", uint32(b.minor))
			}
			a.hasDisk = true
			if !a.hasMeta {
				a.metaDisk, a.metaIndex, a.hasMeta = "internal", "internal", true
			}
			lv = lv[1:]
		}
	}
}

// checkVolumeSetsStacked compares a stacked section's volumes with the lower
// resource's: each stacked volume needs a lower one; the lower resource may
// have more (drbdadm only warns about that on a terminal).
func (p *parser) checkVolumeSetsStacked(r *rawResource, h, lowerMe *rawHost) {
	a, b := h.volumes, lowerMe.volumes
	for len(a) > 0 || len(b) > 0 {
		for len(a) > 0 && (len(b) == 0 || a[0].vnr < b[0].vnr) {
			p.fail(errorf(ErrInvalid, a[0].pos, "in resource %s, %s: volume %d not defined in %s", r.name, h.describe(), a[0].vnr, h.lowerName))
			a = a[1:]
		}
		for len(b) > 0 && (len(a) == 0 || a[0].vnr > b[0].vnr) {
			b = b[1:]
		}
		if len(a) > 0 && len(b) > 0 && a[0].vnr == b[0].vnr {
			if a[0].implicit != b[0].implicit {
				p.fail(errorf(ErrInvalid, h.pos, "in resource %s, %s resp. %s: volume %d must not be implicit in one but not the other", r.name, h.describe(), h.lowerName, a[0].vnr))
			}
			a, b = a[1:], b[1:]
		}
	}
}

// expandCommon is drbdadm's expand_common, computing the effective lists
// (rawResource.eff, rawVolume.effDisk) and leaving the written ones alone.
func (p *parser) expandCommon(cfg *rawConfig) {
	own := func(l optList) optList { return append(optList(nil), l...) }
	for _, r := range cfg.resources {
		r.eff = effLists{
			net: own(r.net), disk: own(r.disk), res: own(r.res), startup: own(r.startup),
			handlers: own(r.handlers), proxyOpts: own(r.proxyOpts), proxyPlugins: own(r.proxyPlugins),
			stackedTimeouts: r.stackedTimeouts, becomePrimaryOn: r.becomePrimaryOn, bpoPos: r.bpoPos,
		}
		e := &r.eff
		if c := cfg.common; c != nil {
			e.net = e.net.expandFrom(c.net)
			e.disk = e.disk.expandFrom(c.disk)
			e.startup = e.startup.expandFrom(c.startup)
			e.proxyOpts = e.proxyOpts.expandFrom(c.proxyOpts)
			e.handlers = e.handlers.expandFrom(c.handlers)
			e.res = e.res.expandFrom(c.res)
			if c.stackedTimeouts {
				e.stackedTimeouts = true
			}
			if e.becomePrimaryOn == nil {
				e.becomePrimaryOn, e.bpoPos = c.becomePrimaryOn, c.bpoPos
			}
			if len(c.proxyPlugins) > 0 && len(e.proxyPlugins) == 0 {
				e.proxyPlugins = e.proxyPlugins.expandFrom(c.proxyPlugins)
			}
		}
		for _, h := range r.hosts {
			for _, v := range h.volumes {
				v.effDisk = own(v.diskOpts).expandFrom(e.disk)
			}
			if pr := h.proxy; pr != nil {
				pr.effOptions = own(pr.options).expandFrom(e.proxyOpts)
				pr.effPlugins = own(pr.plugins).expandFrom(e.proxyPlugins)
			}
		}
		// NB: resource-level `volume N { disk {...} }` options come last,
		// so they lose against the resource's (and common's) disk {}
		// options. That is how drbdadm-84 merges, and gdrbd keeps it.
		for _, rv := range r.volumes {
			for _, h := range r.hosts {
				if hv := h.volume(rv.vnr); hv != nil {
					hv.effDisk = hv.effDisk.expandFrom(rv.diskOpts)
				}
			}
		}
	}
}

// validateResource is drbdadm's validate_resource plus the resolution of
// resync-after that its `up` does (convert_after_option).
func (p *parser) validateResource(cfg *rawConfig, r *rawResource) {
	// resync-after must name a resource configured on this host. drbdadm
	// drops unknown ones with a message when run from a script (no tty),
	// which is how cluster managers run it; gdrbd does the same and warns.
	drop := func(l optList, o *rawOpt) optList {
		var kept optList
		for _, x := range l {
			if x != o {
				kept = append(kept, x)
			}
		}
		return kept
	}
	for _, o := range r.eff.disk {
		if o.name == "resync-after" {
			if _, _, err := p.resolveResyncAfter(o.value); err != nil && err != errAmbiguous {
				p.warnUnknownResyncAfter(r, o)
				r.eff.disk = drop(r.eff.disk, o)
				r.disk = drop(r.disk, o)
			}
		}
	}
	for _, h := range r.hosts {
		for _, v := range h.volumes {
			for _, o := range v.effDisk {
				if o.name != "resync-after" {
					continue
				}
				_, _, err := p.resolveResyncAfter(o.value)
				if err == errAmbiguous {
					p.failBeyond(errorf(ErrInvalid, o.valPos, "in resource %s: resync-after '%s' is ambiguous, that resource has several volumes (write %s/VOLUME)", r.name, o.value, o.value))
				} else if err != nil {
					p.warnUnknownResyncAfter(r, o)
					v.effDisk = drop(v.effDisk, o)
				}
			}
		}
	}
	if r.ignore {
		return
	}
	if o := r.eff.net.find("after-sb-0pri"); o != nil && strings.HasPrefix(o.value, "discard-node-") {
		n := strings.TrimPrefix(o.value, "discard-node-")
		known := false
		for _, h := range r.hosts {
			known = known || containsName(h.onHosts, n)
		}
		if !known {
			p.warn(o.valPos, "in resource %s: '%s' names no host of this resource; it means discard-remote here", r.name, o.value)
		}
	}
	if containsName(r.eff.becomePrimaryOn, "both") && r.eff.net.find("allow-two-primaries") == nil {
		p.fail(errorf(ErrInvalid, r.eff.bpoPos, "in resource %s: become-primary-on is set to both, but allow-two-primaries is not set", r.name))
	}
	p.setPeer(r)
	if r.peer != nil && (r.me.proxy == nil) != (r.peer.proxy == nil) {
		p.fail(errorf(ErrInvalid, r.pos, "in resource %s: either both host sections must contain a proxy subsection, or none", r.name))
	}
	for _, n := range r.eff.becomePrimaryOn {
		if r.peer != nil && !containsName(r.me.onHosts, n) && !containsName(r.peer.onHosts, n) && n != "both" {
			p.fail(errorf(ErrInvalid, r.eff.bpoPos, "in resource %s: become-primary-on contains '%s', which is not named in the host sections", r.name, n))
		}
	}
}

var errAmbiguous = fmt.Errorf("ambiguous")

// resolveResyncAfter finds the resource and volume a resync-after value
// names (drbdadm's ctx_by_name and ctx_set_implicit_volume).
func (p *parser) resolveResyncAfter(val string) (*rawResource, *rawVolume, error) {
	name, volStr, hasVol := strings.Cut(val, "/")
	r := p.resourceByName(name)
	if r == nil || r.ignore {
		return nil, nil, fmt.Errorf("not known")
	}
	if hasVol {
		n, e := parseNumber(volStr, '1')
		if e != numOK {
			return nil, nil, fmt.Errorf("bad volume")
		}
		if v := r.me.volume(int(n)); v != nil && n <= 1<<31 {
			return r, v, nil
		}
		return nil, nil, fmt.Errorf("not known")
	}
	switch len(r.me.volumes) {
	case 0:
		return nil, nil, fmt.Errorf("not known")
	case 1:
		return r, r.me.volumes[0], nil
	}
	return r, nil, errAmbiguous
}

func (p *parser) warnUnknownResyncAfter(r *rawResource, o *rawOpt) {
	if p.l.warned[o.valPos] {
		return
	}
	p.l.warned[o.valPos] = true
	name, _, _ := strings.Cut(o.value, "/")
	where := ""
	if lr := p.resourceByName(name); lr != nil {
		where = " on this host"
	}
	p.warn(o.valPos, "in resource %s: resource '%s' mentioned in 'resync-after' is not known%s; the option is ignored", r.name, o.value, where)
}

// setPeer is set_peer_in_resource without --peer: with exactly two host
// sections the other one is the peer; with one or more than two there is
// none.
func (p *parser) setPeer(r *rawResource) {
	if len(r.hosts) != 2 {
		return
	}
	if r.hosts[0] == r.me {
		r.peer = r.hosts[1]
	} else {
		r.peer = r.hosts[0]
	}
}

// failBeyond records an error that drbdadm-84's parser would not report
// but DRBD 8.4 as a whole rejects (see Error.beyondParser).
func (p *parser) failBeyond(e *Error) {
	e.beyondParser = true
	p.fail(e)
}

// checkWrittenValues applies the limits DRBD 8.4 has beyond drbdadm's
// parser, once per written value: enum spellings and number syntax
// (drbdsetup), ranges (drbd_limits.h), options drbdsetup-84 does not know,
// minors, volume numbers and addresses the kernel rejects.
func (p *parser) checkWrittenValues(cfg *rawConfig) {
	check := func(sec section, list optList) {
		for _, o := range list {
			d := lookupOpt(sec, o.name)
			if d == nil {
				p.failBeyond(errorf(ErrInvalid, o.pos, "'%s' is not a DRBD 8.4 %s option (drbdsetup-84 rejects it)", o.name, sec))
				continue
			}
			if _, err := checkValue(d, o); err != nil {
				p.failBeyond(err)
			}
		}
	}
	all := cfg.resources
	if cfg.common != nil {
		all = append([]*rawResource{cfg.common}, all...)
	}
	for _, r := range all {
		check(secNet, r.net)
		check(secDisk, r.disk)
		check(secOptions, r.res)
		check(secStartup, r.startup)
		for _, v := range r.volumes {
			check(secDisk, v.diskOpts)
		}
		for _, h := range r.hosts {
			check(secOptions, h.resOpts)
			seen := map[int]*rawVolume{}
			for _, v := range h.volumes {
				check(secDisk, v.diskOpts)
				p.checkVolume(r, h, v)
				if first, dup := seen[v.vnr]; dup {
					e := errorf(ErrInvalid, v.pos, "in resource %s, %s: volume %d defined twice (the kernel refuses a second volume %d)", r.name, h.describe(), v.vnr, v.vnr)
					e.First = first.pos
					p.failBeyond(e)
				}
				seen[v.vnr] = v
			}
			for _, a := range []rawAddr{h.address, h.alt} {
				if a.isSet() {
					p.checkAddress(a)
				}
			}
		}
	}
}

const (
	maxMinor  = 1<<20 - 1 // DRBD_MINOR_NUMBER_MAX
	maxVolume = 65535     // DRBD_VOLUME_MAX
)

func (p *parser) checkVolume(r *rawResource, h *rawHost, v *rawVolume) {
	if v.vnr > maxVolume {
		p.failBeyond(errorf(ErrInvalid, v.pos, "in resource %s: volume number %d is out of range [0..%d]", r.name, v.vnr, maxVolume))
	}
	if v.minor > maxMinor || v.minor < -1 {
		p.failBeyond(errorf(ErrInvalid, v.pos, "in resource %s, %s: minor %d is out of range [0..%d]", r.name, h.describe(), v.minor, maxMinor))
	}
	if v.hasMeta && v.metaIndex != "internal" && v.metaIndex != "flexible" {
		if _, e := parseNumber(v.metaIndex, '1'); e != numOK {
			p.failBeyond(errorf(ErrInvalid, v.pos, "in resource %s, %s: bad meta-disk index '%s'", r.name, h.describe(), v.metaIndex))
		}
	}
}

// parseIP parses an address as drbdsetup resolves it (inet_addr for IPv4
// without the legacy octal and short forms, getaddrinfo for IPv6 with an
// optional %zone).
func parseIP(s string) *netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil
	}
	return &a
}

// isLoopback is drbd-utils' addr_scope_local: 127/8 or ::1, as inet_pton
// reads them (no zone, no IPv4-mapped form).
func isLoopback(addr string) bool {
	ip := parseIP(addr)
	return ip != nil && ip.Zone() == "" && !ip.Is4In6() && ip.IsLoopback()
}

func (p *parser) checkAddress(a rawAddr) {
	ip := parseIP(a.addr)
	switch {
	case a.family == "ipv6" && (ip == nil || !ip.Is6()):
		p.failBeyond(errorf(ErrInvalid, a.pos, "'%s' is not a valid IPv6 address", a.addr))
	case a.family != "ipv6" && (ip == nil || !ip.Is4()):
		p.failBeyond(errorf(ErrInvalid, a.pos, "'%s' is not a valid IPv4 address (four decimal numbers 0-255, no leading zeros)", a.addr))
	}
}
