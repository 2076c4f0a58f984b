package config

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteDump prints the configuration normalized the way `drbdadm-84 dump`
// prints it: the file name, global {} when not all defaults, common {} as
// written, and each resource with its own options (common is not merged
// in; WriteJSON has the merged values), every host's volumes spelled out
// with device, minor, disk and meta-disk, and the `# gdrbd:` directives
// kept where they were. Two things drbdadm cannot print are added so that
// the output parses back to the same configuration: the disk options of
// resource-level volume sections (drbdadm drops them), and a host's
// inherited disk when that host also has a disk {} section (drbdadm prints
// both in the host section, which its own parser then refuses). With resources nil it prints
// everything, header included, in file order; with a selection only those
// resource sections, as drbdadm does for named resources. Parsing the full
// output gives the same effective configuration.
func (c *Config) WriteDump(w io.Writer, resources []*Resource) error {
	d := &dumper{w: bufio.NewWriter(w)}
	if resources != nil {
		for _, res := range resources {
			d.resource(c, c.rawOf(res))
		}
		return d.w.Flush()
	}
	d.printf("# %s\n", c.File)
	d.ext(c.raw.ext)
	d.global(&c.raw.global)
	if cm := c.raw.common; cm != nil {
		d.printI("common {\n")
		d.indent++
		d.sections(cm)
		d.ext(cm.ext)
		d.indent--
		d.printf("}\n\n")
	}
	for _, res := range c.Resources {
		d.resource(c, c.rawOf(res))
	}
	return d.w.Flush()
}

func (c *Config) rawOf(res *Resource) *rawResource {
	for i, r := range c.Resources {
		if r == res {
			return c.raw.resources[i]
		}
	}
	panic("config: resource " + res.Name + " is not from this Config")
}

type dumper struct {
	w      *bufio.Writer
	indent int
}

func (d *dumper) printf(format string, args ...any) { fmt.Fprintf(d.w, format, args...) }

// printI is drbdadm's printI: the line indented by 4 spaces per level.
func (d *dumper) printI(format string, args ...any) {
	d.w.WriteString(strings.Repeat(" ", 4*d.indent))
	fmt.Fprintf(d.w, format, args...)
}

// printA is drbdadm's printA: name padded to 24-4*indent columns (right
// aligned from indent 7 on, as C's negative width flips), the value right
// aligned in 3.
func (d *dumper) printA(name, val string) {
	w := -24 + 4*d.indent
	d.w.WriteString(strings.Repeat(" ", 4*d.indent))
	if w < 0 {
		fmt.Fprintf(d.w, "%-*s %3s;\n", -w, name, val)
	} else {
		fmt.Fprintf(d.w, "%*s %3s;\n", w, name, val)
	}
}

// esc quotes a value the way drbd-utils' esc does: when empty, longer than
// 80 bytes, or containing anything but [a-zA-Z0-9/._-].
func esc(s string) string {
	if s == "" {
		return `""`
	}
	plain := len(s) <= 80
	for i := 0; i < len(s) && plain; i++ {
		plain = isStringChar(s[i])
	}
	if plain {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

func (d *dumper) global(g *rawGlobal) {
	_, udev := g.set["udev-always-use-vnr"]
	cmd := g.cmdTimeoutShort != 5 || g.cmdTimeoutMedium != 121 || g.cmdTimeoutLong != 600
	if g.minorCount == 0 && !g.disableIPVerification && g.dialogRefresh == 1 && g.usageCount == UsageCountAsk && !udev && !cmd {
		return
	}
	d.printI("global {\n")
	d.indent++
	if g.disableIPVerification {
		d.printI("disable-ip-verification;\n")
	}
	if g.minorCount != 0 {
		d.printI("minor-count %d;\n", g.minorCount)
	}
	if g.dialogRefresh != 1 {
		d.printI("dialog-refresh %d;\n", g.dialogRefresh)
	}
	if g.usageCount != UsageCountAsk {
		d.printI("usage-count %s;\n", g.usageCount)
	}
	// drbdadm-84 does not print these two kinds; gdrbd does, so that the
	// dump keeps every setting.
	if udev {
		d.printI("udev-always-use-vnr;\n")
	}
	if g.cmdTimeoutShort != 5 {
		d.printI("cmd-timeout-short %d;\n", g.cmdTimeoutShort)
	}
	if g.cmdTimeoutMedium != 121 {
		d.printI("cmd-timeout-medium %d;\n", g.cmdTimeoutMedium)
	}
	if g.cmdTimeoutLong != 600 {
		d.printI("cmd-timeout-long %d;\n", g.cmdTimeoutLong)
	}
	d.indent--
	d.printI("}\n\n")
}

// startupList is drbdadm's fake_startup_options: stacked-timeouts and
// become-primary-on written as startup options.
func startupList(r *rawResource) optList {
	l := append(optList(nil), r.startup...)
	if r.stackedTimeouts {
		l = append(l, &rawOpt{name: "stacked-timeouts", noValue: true})
	}
	if len(r.becomePrimaryOn) > 0 {
		l = append(l, &rawOpt{name: "become-primary-on", value: escNames(r.becomePrimaryOn), escaped: true})
	}
	return l
}

func (d *dumper) sections(r *rawResource) {
	d.options("options", r.res, nil)
	d.options("net", r.net, nil)
	d.options("disk", r.disk, nil)
	d.options("startup", startupList(r), nil)
	d.options("proxy", r.proxyOpts, r.proxyPlugins)
	d.options("handlers", r.handlers, nil)
}

func (d *dumper) options(name string, opts, plugins optList) {
	if len(opts) == 0 && len(plugins) == 0 {
		return
	}
	d.printI("%s {\n", name)
	d.indent++
	for _, o := range opts {
		switch {
		case o.noValue:
			d.printI("%s;\n", o.name)
		case o.escaped:
			d.printA(o.name, o.value)
		default:
			d.printA(o.name, esc(o.value))
		}
	}
	if len(plugins) > 0 {
		d.options("plugin", plugins, nil)
	}
	d.indent--
	d.printI("}\n")
}

func (d *dumper) ext(list []extSetting) {
	for _, s := range list {
		d.printI("# %s %s %s;\n", directivePrefix, s.key, esc(s.value))
	}
}

func (d *dumper) resource(c *Config, r *rawResource) {
	state, stacked := "not ignored", "not stacked"
	if r.ignore {
		state = "ignored"
	}
	if r.stacked {
		stacked = "stacked"
	}
	d.printI("# resource %s on %s: %s, %s\n", esc(r.name), oneLine(c.Node), state, stacked)
	d.printI("# defined at %s:%d\n", oneLine(r.file), r.startLine)
	d.printI("resource %s {\n", esc(r.name))
	d.indent++
	if len(r.volumes) > 0 && r.volumes[0].implicit && r.volumes[0].hasDisk && hostsHideDisk(r) {
		d.printA("disk", esc(r.volumes[0].disk))
	}
	for _, v := range r.volumes {
		if !v.implicit && len(v.diskOpts) > 0 {
			d.printI("volume %d {\n", v.vnr)
			d.indent++
			d.options("disk", v.diskOpts, nil)
			d.indent--
			d.printI("}\n")
		}
	}
	for _, h := range r.hosts {
		d.host(h)
	}
	d.sections(r)
	d.ext(r.ext)
	d.indent--
	d.printf("}\n\n")
}

// escNames joins host names for a dump line. drbdadm joins them raw, so a
// quoted name with a space would read back as two; gdrbd quotes it.
func escNames(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = esc(n)
	}
	return strings.Join(q, " ")
}

// hideDisk: an implicit volume with its own disk {} whose disk device came
// from the resource level is printed without the device (see WriteDump).
func hideDisk(v *rawVolume) bool { return v.implicit && len(v.diskOpts) > 0 && v.diskInherited }

func hostsHideDisk(r *rawResource) bool {
	for _, h := range r.hosts {
		for _, v := range h.volumes {
			if hideDisk(v) {
				return true
			}
		}
	}
	return false
}

func (d *dumper) address(name string, a rawAddr) {
	if a.family == "ipv6" {
		d.printI("%-16s %s [%s]:%s;\n", name, a.family, a.addr, a.port)
	} else {
		d.printI("%-16s %s %s:%s;\n", name, a.family, a.addr, a.port)
	}
}

func (d *dumper) host(h *rawHost) {
	switch {
	case h.lowerName != "":
		d.printI("stacked-on-top-of %s {\n", esc(h.lowerName))
		d.indent++
		d.printI("# on %s \n", escNames(h.onHosts))
	case h.kind == hostFloating:
		if h.address.family == "ipv6" {
			d.printI("floating ipv6 [%s]:%s {\n", h.address.addr, h.address.port)
		} else {
			d.printI("floating %s %s:%s {\n", h.address.family, h.address.addr, h.address.port)
		}
		d.indent++
	default:
		d.printI("on %s {\n", escNames(h.onHosts))
		d.indent++
	}
	d.options("options", h.resOpts, nil)
	for _, v := range h.volumes {
		d.volume(h.lowerName != "", v)
	}
	if h.kind != hostFloating && h.address.isSet() {
		d.address("address", h.address)
	}
	if h.alt.isSet() {
		d.address("alternate-link-address", h.alt)
	}
	if pr := h.proxy; pr != nil {
		d.printI("proxy on %s {\n", escNames(pr.onHosts))
		d.indent++
		d.address("inside", pr.inside)
		d.address("outside", pr.outside)
		d.options("options", pr.options, pr.plugins)
		d.indent--
		d.printI("}\n")
	}
	d.ext(h.ext)
	d.indent--
	d.printI("}\n")
}

func (d *dumper) volume(stacked bool, v *rawVolume) {
	if !v.implicit {
		d.printI("volume %d {\n", v.vnr)
		d.indent++
	}
	d.options("disk", v.diskOpts, nil)
	pad := -19 + 4*d.indent
	if pad < 0 {
		pad = -pad
	}
	d.printI("device%s", strings.Repeat(" ", pad))
	if v.device != "" {
		d.printf("%s ", esc(v.device))
	}
	d.printf("minor %d;\n", v.minor)
	if !stacked {
		if !hideDisk(v) {
			d.printA("disk", esc(v.disk))
		}
		switch v.metaIndex {
		case "flexible":
			d.printI("%-16s %s;\n", "meta-disk", esc(v.metaDisk))
		case "internal":
			d.printA("meta-disk", "internal")
		default:
			d.printI("%-16s %s [%s];\n", "meta-disk", esc(v.metaDisk), v.metaIndex)
		}
	}
	if !v.implicit {
		d.indent--
		d.printI("}\n")
	}
}

// --- JSON ---

type jsonOpt struct {
	Value    any    `json:"value"`
	Unit     string `json:"unit,omitempty"`
	Explicit bool   `json:"explicit"`
	// Minor is resync-after resolved to the minor drbdsetup takes.
	Minor *int `json:"minor,omitempty"`
}

type jsonAddress struct {
	Family string `json:"family"`
	Host   string `json:"host"`
	Port   int    `json:"port"`
}

type jsonVolume struct {
	Number      int                `json:"number"`
	Device      string             `json:"device"`
	Minor       int                `json:"minor"`
	Disk        string             `json:"disk"`
	MetaDisk    string             `json:"meta_disk"`
	MetaIndex   string             `json:"meta_index"`
	DiskOptions map[string]jsonOpt `json:"disk_options,omitempty"`
}

type jsonHost struct {
	Names      []string     `json:"names"`
	Address    *jsonAddress `json:"address,omitempty"`
	AltAddress *jsonAddress `json:"alternate_link_address,omitempty"`
	Floating   bool         `json:"floating,omitempty"`
	StackedOn  string       `json:"stacked_on,omitempty"`
	Volumes    []jsonVolume `json:"volumes"`
}

type jsonResource struct {
	Name      string             `json:"name"`
	DefinedAt string             `json:"defined_at"`
	OnNode    bool               `json:"on_this_node"`
	Stacked   bool               `json:"stacked"`
	Protocol  string             `json:"protocol"`
	Local     *jsonHost          `json:"local"`
	Peer      *jsonHost          `json:"peer"`
	Hosts     []jsonHost         `json:"hosts"`
	Net       map[string]jsonOpt `json:"net"`
	Disk      map[string]jsonOpt `json:"disk"`
	Startup   map[string]jsonOpt `json:"startup"`
	Options   map[string]jsonOpt `json:"options"`
	Handlers  map[string]string  `json:"handlers"`
	Gdrbd     map[string]string  `json:"gdrbd"`
}

type jsonGlobal struct {
	UsageCount            string            `json:"usage_count"`
	MinorCount            int               `json:"minor_count"`
	DialogRefresh         int               `json:"dialog_refresh_s"`
	DisableIPVerification bool              `json:"disable_ip_verification"`
	UdevAlwaysUseVnr      bool              `json:"udev_always_use_vnr"`
	CmdTimeoutShort       int               `json:"cmd_timeout_short_s"`
	CmdTimeoutMedium      int               `json:"cmd_timeout_medium_s"`
	CmdTimeoutLong        int               `json:"cmd_timeout_long_s"`
	Gdrbd                 map[string]string `json:"gdrbd"`
}

type jsonConfig struct {
	File      string         `json:"file"`
	Node      string         `json:"node"`
	Global    jsonGlobal     `json:"global"`
	Resources []jsonResource `json:"resources"`
	Warnings  []string       `json:"warnings,omitempty"`
}

// WriteJSON prints every effective value: all options of every section
// with defaults filled, each in drbdsetup's unit (named in "unit") and
// marked explicit or not. resources selects what to print (nil: all).
func (c *Config) WriteJSON(w io.Writer, resources []*Resource) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(c.jsonView(resources))
}

// jsonView is what WriteJSON prints. (FuzzParse compares these values
// rather than their JSON: encoding every option of every section cost
// milliseconds per input, and its map sorting took a different path every
// time, which the fuzzer saw as new coverage it could never reproduce.)
func (c *Config) jsonView(resources []*Resource) jsonConfig {
	if resources == nil {
		resources = c.Resources
	}
	g := &c.raw.global
	_, udev := g.set["udev-always-use-vnr"]
	out := jsonConfig{
		File: c.File,
		Node: c.Node,
		Global: jsonGlobal{
			UsageCount:            g.usageCount.String(),
			MinorCount:            g.minorCount,
			DialogRefresh:         g.dialogRefresh,
			DisableIPVerification: g.disableIPVerification,
			UdevAlwaysUseVnr:      udev,
			CmdTimeoutShort:       g.cmdTimeoutShort,
			CmdTimeoutMedium:      g.cmdTimeoutMedium,
			CmdTimeoutLong:        g.cmdTimeoutLong,
			Gdrbd:                 extMap(&c.Global.Ext),
		},
		Resources: []jsonResource{},
		Warnings:  c.Warnings,
	}
	for _, res := range resources {
		out.Resources = append(out.Resources, c.jsonResource(res))
	}
	return out
}

func extMap(e *Extensions) map[string]string {
	m := map[string]string{}
	for _, s := range e.Settings() {
		m[s.Name] = s.Value
	}
	return m
}

func (c *Config) jsonResource(res *Resource) jsonResource {
	r := c.rawOf(res)
	jr := jsonResource{
		Name:      res.Name,
		DefinedAt: fmt.Sprintf("%s:%d", r.file, r.startLine),
		OnNode:    res.Local != nil,
		Stacked:   res.Stacked,
		Protocol:  res.Protocol.String(),
		Net:       jsonSection(secNet, r.eff.net),
		Disk:      jsonSection(secDisk, r.eff.disk),
		Startup:   jsonSection(secStartup, r.eff.startup),
		Options:   jsonSection(secOptions, r.eff.res),
		Handlers:  res.Handlers,
		Gdrbd:     extMap(&res.Ext),
	}
	jr.Net["after-sb-0pri"] = jsonOpt{Value: res.Net.AfterSB0Pri.String(), Explicit: r.eff.net.find("after-sb-0pri") != nil}
	bpo := res.Startup.BecomePrimaryOn
	if bpo == nil {
		bpo = []string{}
	}
	jr.Startup["become-primary-on"] = jsonOpt{Value: bpo, Explicit: len(bpo) > 0}
	jr.Startup["stacked-timeouts"] = jsonOpt{Value: res.Startup.StackedTimeouts, Explicit: res.Startup.StackedTimeouts}
	setMinor(jr.Disk, res.Disk.ResyncAfterMinor)
	for i, h := range res.Hosts {
		jh := jsonHostOf(h, r.hosts[i])
		jr.Hosts = append(jr.Hosts, jh)
		if h == res.Local {
			jr.Local = &jr.Hosts[len(jr.Hosts)-1]
		}
		if h == res.Peer {
			jr.Peer = &jr.Hosts[len(jr.Hosts)-1]
		}
	}
	// Point at the final slice elements (append may have moved them).
	for i, h := range res.Hosts {
		if h == res.Local {
			jr.Local = &jr.Hosts[i]
		}
		if h == res.Peer {
			jr.Peer = &jr.Hosts[i]
		}
	}
	return jr
}

func setMinor(m map[string]jsonOpt, minor int) {
	o := m["resync-after"]
	mm := minor
	o.Minor = &mm
	m["resync-after"] = o
}

func jsonHostOf(h *Host, rh *rawHost) jsonHost {
	jh := jsonHost{Names: h.Names, Floating: h.Floating, StackedOn: h.StackedOn, Volumes: []jsonVolume{}}
	if !h.Address.IsZero() {
		jh.Address = &jsonAddress{Family: h.Address.Family, Host: h.Address.Host, Port: h.Address.Port}
	}
	if !h.AltAddress.IsZero() {
		jh.AltAddress = &jsonAddress{Family: h.AltAddress.Family, Host: h.AltAddress.Host, Port: h.AltAddress.Port}
	}
	for i, v := range h.Volumes {
		jv := jsonVolume{
			Number: v.Number, Device: v.Device, Minor: v.Minor, Disk: v.Disk,
			MetaDisk: v.MetaDisk, MetaIndex: v.MetaIndexArg(),
			DiskOptions: jsonSection(secDisk, rh.volumes[i].effDisk),
		}
		setMinor(jv.DiskOptions, v.DiskOptions.ResyncAfterMinor)
		jh.Volumes = append(jh.Volumes, jv)
	}
	return jh
}

func jsonSection(sec section, list optList) map[string]jsonOpt {
	m := map[string]jsonOpt{}
	for _, d := range optDefs {
		if d.sec != sec {
			continue
		}
		v, explicit := effective(d, list)
		m[d.name] = jsonOpt{Value: v.format(d), Unit: unitLabel(d), Explicit: explicit}
	}
	return m
}

// oneLine keeps a name that goes into a dump comment on its line: a line
// break (no host or file name of a sane system has one, but --node and
// file names come from outside) would end the comment and turn the rest
// into configuration. Other names print as they are, as drbdadm's do.
func oneLine(s string) string {
	return strings.NewReplacer("\n", "\\n", "\r", "\\r").Replace(s)
}
