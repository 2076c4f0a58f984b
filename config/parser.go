package config

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// rawConfig is everything the parse phase produces, before host selection
// and inheritance.
type rawConfig struct {
	global    rawGlobal
	common    *rawResource
	resources []*rawResource
	ext       []extSetting // file-level (and global {}) directives
	errs      ErrorList
	warnings  []string
	// uniq is drbdadm's global uniqueness table: resource names, IP:port,
	// host:minor, host:device, host:disk, host:meta-disk[idx], stacked
	// lower resources, and the canonical paths of files already read.
	uniq map[string]Position
}

// loader reads a file and its includes; one per Load/Parse call.
type loader struct {
	opts   Options
	cfg    *rawConfig
	depth  int
	warned map[Position]bool
}

// abort unwinds the parser after a fatal (syntax) error; drbdadm-84 exits
// at the first one.
type abort struct{}

// parser parses one file. Includes get their own parser sharing the loader.
type parser struct {
	l       *loader
	lx      *lexer
	tok     token
	prevEnd Position // just after the previous token, for "missing ;" errors
	prevRaw string
	canon   string // canonical path of this file (drbdadm's config_save)
	upr     map[string]Position
	// where `# gdrbd:` directives go at this point of the parse
	extTo    *[]extSetting
	extScope extScope
	extWhere string
}

const maxIncludeDepth = 10

// parseFile parses one file; name is how messages call it, path where it
// is (for relative includes).
func (l *loader) parseFile(name, path string, src []byte) {
	p := &parser{l: l, lx: newLexer(name, src), canon: l.canonify(path), extTo: &l.cfg.ext, extScope: scopeGlobal}
	p.parseTop()
}

func (p *parser) errs() *ErrorList { return &p.l.cfg.errs }

// fail records a problem that drbdadm-84 reports and keeps parsing past
// (its config_valid = 0).
func (p *parser) fail(e *Error) { *p.errs() = append(*p.errs(), e) }

// fatal records a problem drbdadm-84 exits on and stops the whole parse.
func (p *parser) fatal(e *Error) {
	p.fail(e)
	panic(abort{})
}

func (p *parser) warn(pos Position, format string, args ...any) {
	p.l.cfg.warnings = append(p.l.cfg.warnings, pos.String()+": "+fmt.Sprintf(format, args...))
}

func (p *parser) next() token {
	if p.tok.kind != 0 {
		p.prevEnd = p.tok.pos
		p.prevEnd.Col += len(p.tok.raw)
		p.prevRaw = p.tok.raw
	}
	p.tok = p.lx.next()
	for _, d := range p.lx.takeDirectives() {
		p.directive(d)
	}
	return p.tok
}

func (p *parser) directive(d directive) {
	switch p.extScope {
	case scopeSkip:
		return
	case scopeNone:
		e := errorf(ErrInvalid, d.pos, "gdrbd directives are not allowed inside %s; put them at file level, in common, in a resource or in a host section", p.extWhere)
		e.beyondParser = true
		p.fail(e)
		return
	}
	s, err := parseDirective(d)
	if err != nil {
		err.beyondParser = true // drbdadm reads a comment
		p.fail(err)
		return
	}
	*p.extTo = append(*p.extTo, s)
}

// scope switches where directives go and returns a function restoring the
// previous scope.
func (p *parser) scope(to *[]extSetting, sc extScope, where string) func() {
	oldTo, oldSc, oldWhere := p.extTo, p.extScope, p.extWhere
	p.extTo, p.extScope, p.extWhere = to, sc, where
	return func() { p.extTo, p.extScope, p.extWhere = oldTo, oldSc, oldWhere }
}

// got describes the current token for an error message.
func (p *parser) got() string {
	switch p.tok.kind {
	case tkEOF:
		return "end of file"
	case tkElse:
		if c := p.tok.raw[0]; c >= 0x80 || c < ' ' || c == 0x7f {
			r, _ := utf8.DecodeRune(p.lx.src[p.tok.off:])
			if r == utf8.RuneError {
				return fmt.Sprintf("the byte 0x%02x", c)
			}
			if unicode.IsSpace(r) {
				return fmt.Sprintf("%U, which is not white space in drbd.conf (only space, tab, CR and LF are; copied from a web page?)", r)
			}
			return fmt.Sprintf("%U %q", r, r)
		}
	}
	raw := p.tok.raw
	if len(raw) > 40 {
		raw = raw[:40] + "..."
	}
	return "'" + raw + "'"
}

// stringError reports the scanner's string errors (check_string_error).
func (p *parser) stringError() {
	switch p.tok.kind {
	case tkErrStringTooLong:
		p.fatal(errorf(ErrSyntax, p.tok.pos, "word too long (at most %d characters; quote longer values)", maxString))
	case tkErrDQStringTooLong:
		p.fatal(errorf(ErrSyntax, p.tok.pos, "double quoted string too long (at most %d characters)", maxDQString))
	case tkErrDQString:
		p.fatal(errorf(ErrSyntax, p.tok.pos, "unterminated double quoted string (strings cannot span lines)"))
	}
}

// unexpected is drbdadm's pe_expected: a fatal syntax error naming what
// was expected, with the nearest valid keyword for a misspelt word.
func (p *parser) unexpected(want string, valid []string) {
	p.stringError()
	msg := fmt.Sprintf("expected %s, got %s", want, p.got())
	if p.isWord() && valid != nil {
		if s := suggest(p.tok.raw, valid); s != "" {
			msg = fmt.Sprintf("unknown keyword '%s' (expected %s), did you mean '%s'?", p.tok.raw, want, s)
		}
	}
	p.fatal(errorf(ErrSyntax, p.tok.pos, "%s", msg))
}

func (p *parser) isWord() bool {
	_, isKw := keywords[p.tok.raw]
	return p.tok.kind == tkString || isKw
}

func (p *parser) isChar(c byte) bool { return p.tok.kind == tkChar && p.tok.raw[0] == c }

// expectChar reads the next token and requires it to be c.
func (p *parser) expectChar(c byte) {
	p.next()
	if p.isChar(c) {
		return
	}
	if c == ';' {
		p.stringError()
		p.fatal(errorf(ErrSyntax, p.prevEnd, "missing ';' after '%s' (got %s)", p.prevRaw, p.got()))
	}
	p.unexpected("'"+string(c)+"'", nil)
}

// expectKind reads the next token and requires its class.
func (p *parser) expectKind(k tokKind, what string) token {
	p.next()
	if p.tok.kind != k {
		p.stringError()
		p.unexpected(what, nil)
	}
	return p.tok
}

// checkUniq records key in a uniqueness table. A conflict is fatal, as in
// drbdadm-84 (EXIT_ON_CONFLICT).
func (p *parser) checkUniq(table map[string]Position, key string, pos Position, format string, args ...any) {
	if first, dup := table[key]; dup {
		e := errorf(ErrInvalid, pos, format, args...)
		e.First = first
		p.fatal(e)
	}
	table[key] = pos
}

func (p *parser) uniq(key string, pos Position, format string, args ...any) {
	p.checkUniq(p.l.cfg.uniq, key, pos, format, args...)
}

func (p *parser) uniqRes(key string, pos Position, format string, args ...any) {
	p.checkUniq(p.upr, key, pos, format, args...)
}

// topKeywords are the statements allowed at file level.
var topKeywords = []string{"resource", "common", "global", "include", "skip"}

// parseTop is drbdadm's my_parse: the statements of one file.
func (p *parser) parseTop() {
	for {
		p.next()
		switch {
		case p.tok.kind == tkGlobal:
			p.parseGlobal()
		case p.tok.kind == tkCommon:
			p.expectChar('{')
			pos := p.tok.pos
			res := p.parseResource("common", pos, true)
			p.l.cfg.common = res
		case p.tok.kind == tkResource:
			name := p.expectKind(tkString, "a resource name")
			if name.text == "" {
				p.fatal(errorf(ErrSyntax, name.pos, "resource name is empty"))
			}
			for _, c := range []byte(name.text) {
				if c < ' ' || c == 0x7f {
					p.fatal(errorf(ErrSyntax, name.pos, "resource name contains control characters"))
				}
			}
			p.expectChar('{')
			res := p.parseResource(name.text, name.pos, false)
			p.l.cfg.resources = append(p.l.cfg.resources, res)
		case p.tok.kind == tkSkip:
			p.parseSkip()
		case p.tok.kind == tkInclude:
			pat := p.expectKind(tkString, "a file name or glob in double quotes")
			p.expectChar(';')
			p.include(pat)
		case p.tok.kind == tkEOF:
			return
		default:
			p.unexpected("global, common, resource, skip or include", topKeywords)
		}
	}
}

func (p *parser) parseGlobal() {
	pos := p.tok.pos
	p.uniq("global", pos, "second global section")
	if len(p.l.cfg.resources) > 0 {
		p.warn(pos, "the global {} section should come before any resource {} section")
	}
	g := &p.l.cfg.global
	p.expectChar('{')
	valid := []string{"usage-count", "minor-count", "dialog-refresh", "disable-ip-verification", "udev-always-use-vnr", "cmd-timeout-short", "cmd-timeout-medium", "cmd-timeout-long"}
	intOpt := func(name string, min, max int64, dst *int) {
		t := p.expectKind(tkInteger, "a number after "+name)
		p.rangeCheck(name, t, min, max, '1')
		*dst = atoi(t.text)
		g.set[name] = t.pos
	}
	for {
		p.next()
		kw := p.tok
		switch p.tok.kind {
		case tkUdevAlwaysUseVnr:
			g.udevAlwaysUseVnr = true
			g.set["udev-always-use-vnr"] = kw.pos
		case tkDisableIPVerification:
			g.disableIPVerification = true
			g.set["disable-ip-verification"] = kw.pos
		case tkMinorCount:
			intOpt("minor-count", 1, 255, &g.minorCount)
		case tkDialogRefresh:
			intOpt("dialog-refresh", 0, 600, &g.dialogRefresh)
		case tkCmdTimeoutShort:
			intOpt("cmd-timeout-short", 0, 900, &g.cmdTimeoutShort)
		case tkCmdTimeoutMedium:
			intOpt("cmd-timeout-medium", 0, 900, &g.cmdTimeoutMedium)
		case tkCmdTimeoutLong:
			intOpt("cmd-timeout-long", 0, 900, &g.cmdTimeoutLong)
		case tkUsageCount:
			p.next()
			switch p.tok.kind {
			case tkYes:
				g.usageCount = UsageCountYes
			case tkNo:
				g.usageCount = UsageCountNo
			case tkAsk:
				g.usageCount = UsageCountAsk
			default:
				p.unexpected("yes, no or ask", []string{"yes", "no", "ask"})
			}
			g.set["usage-count"] = kw.pos
		case tkChar:
			if p.isChar('}') {
				return
			}
			p.unexpected("a global option", valid)
		default:
			p.unexpected("a global option", valid)
		}
		p.expectChar(';')
	}
}

// atoi is C's atoi on a scanner number: the leading digits.
func atoi(s string) int {
	n := 0
	for i := 0; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		n = n*10 + int(s[i]-'0')
		if n > 1<<31 {
			return n
		}
	}
	return n
}

// rangeCheck is drbdadm's m_strtoll_range, run while parsing.
func (p *parser) rangeCheck(name string, t token, min, max int64, scale byte) {
	unit := unitKind(0)
	for _, d := range optDefs {
		if d.name == name && d.kind == kindNumeric {
			unit = d.unit
		}
	}
	n, e := parseNumber(t.text, scale)
	switch {
	case e == numInvalid:
		p.fail(errorf(ErrInvalid, t.pos, "%s", notANumber(name, t.text)))
	case e == numOverflow || n > uint64(max) || int64(n) < min:
		p.fail(errorf(ErrInvalid, t.pos, "%s", outOfRange(name, t.text, n, e == numOverflow, min, max, scale, unit)))
	}
}

func (p *parser) checkRange(rc rangeCheck, name string, t token) {
	if rc == rcProtocol {
		return // handled by the caller, which also upper-cases
	}
	if min, max, scale, ok := rangeOf(rc); ok {
		p.rangeCheck(name, t, min, max, scale)
	}
}

// protocolValue is drbdadm's R_PROTOCOL check: one letter A, B or C in
// either case, stored upper case.
func (p *parser) protocolValue(t token) string {
	v := t.text
	if len(v) == 1 {
		c := v[0] &^ 0x20
		if c == 'A' || c == 'B' || c == 'C' {
			return string(c)
		}
	}
	p.fail(errorf(ErrInvalid, t.pos, "unknown protocol '%s', should be one of A, B, C", v))
	return v
}

// readValue is drbdadm's expect_STRING_or_INT: an option value.
func (p *parser) readValue(name string) token {
	p.next()
	switch p.tok.kind {
	case tkInteger, tkString:
	case tkOn:
		p.tok.text = "on"
	default:
		p.stringError()
		p.unexpected("a value for "+name, nil)
	}
	return p.tok
}

func (p *parser) parseSkip() {
	restore := p.scope(nil, scopeSkip, "skip {}")
	defer restore()
	start := p.tok.pos
	p.next()
	switch {
	case p.tok.kind == tkString:
		p.expectChar('{')
	case p.isChar('{'):
	default:
		p.stringError()
		p.unexpected("'{' (or a word and '{') after skip", nil)
	}
	for level := 1; level > 0; {
		p.next()
		switch {
		case p.isChar('{'):
			level++
		case p.isChar('}'):
			level--
		case p.tok.kind == tkEOF:
			p.fatal(errorf(ErrSyntax, start, "end of file inside this skip block"))
		}
	}
}

// include is drbdadm's include_stmt: a glob relative to the including
// file's directory; every file is read at most once (by canonical path).
func (p *parser) include(pat token) {
	l := p.l
	if l.depth >= maxIncludeDepth {
		p.fatal(errorf(ErrSyntax, pat.pos, "includes nested too deeply (more than %d levels)", maxIncludeDepth))
	}
	pattern := pat.text
	if !filepath.IsAbs(pattern) {
		pattern = filepath.Join(filepath.Dir(p.canon), pattern)
	}
	dir := filepath.Dir(p.canon)
	matches, err := l.opts.Glob(pattern)
	if err != nil {
		// glob(3) treats a malformed pattern as matching nothing.
		matches = nil
	}
	sort.Strings(matches)
	if len(matches) == 0 && !strings.ContainsAny(pat.text, "?*[") {
		p.fail(errorf(ErrIO, pat.pos, "failed to open include file '%s'", pat.text))
		return
	}
	for _, m := range matches {
		canon := l.canonical(m)
		if _, seen := l.cfg.uniq[canon]; seen {
			continue
		}
		l.cfg.uniq[canon] = pat.pos
		src, err := l.opts.ReadFile(m)
		if err != nil {
			p.fail(errorf(ErrIO, pat.pos, "failed to open include file '%s': %v", m, err))
			continue
		}
		// Messages name an included file as the glob produced it, relative
		// to the including file's directory when the pattern was relative.
		shown := m
		if !filepath.IsAbs(pat.text) {
			if rel, err := filepath.Rel(dir, m); err == nil {
				shown = rel
			}
		}
		l.depth++
		l.parseFile(shown, m, src)
		l.depth--
	}
}

// --- resources ---

// resourceKeywords are the statements allowed in a resource section.
var resourceKeywords = []string{"on", "floating", "stacked-on-top-of", "volume", "device", "disk", "meta-disk",
	"flexible-meta-disk", "protocol", "net", "disk", "syncer", "startup", "handlers", "options", "proxy",
	"ignore-on", "_this_host", "_remote_host"}

func (p *parser) parseResource(name string, pos Position, common bool) *rawResource {
	p.upr = map[string]Position{}
	what := "resource"
	if common {
		what = "common section"
	}
	p.uniq(name, pos, "%s '%s' defined twice", what, name)
	res := &rawResource{name: name, pos: pos, file: p.canon, startLine: p.tok.pos.Line}
	sc := scopeResource
	where := "resource " + name
	if common {
		sc, where = scopeCommon, "common"
	}
	restore := p.scope(&res.ext, sc, where)
	defer restore()

	for {
		p.next()
		t := p.tok
		switch t.kind {
		case tkNetOption:
			if t.text != "protocol" {
				p.misplacedOption(t, "resource "+name)
			}
			p.uniqRes("protocol", t.pos, "second protocol statement in %s", where)
			v := p.expectKind(tkString, "A, B or C after protocol")
			val := p.protocolValue(v)
			res.net = append(res.net, &rawOpt{name: "protocol", value: val, pos: t.pos, valPos: v.pos})
			p.expectChar(';')
		case tkOn:
			names := p.parseHosts('{')
			p.parseHostSection(res, hostOn, names, t.pos, true)
		case tkStacked:
			p.parseStacked(res, t.pos)
		case tkIgnore:
			p.expectKind(tkString, "a host name after ignore-on")
			p.warn(t.pos, "in resource %s: the 'ignore-on' keyword is deprecated", name)
			p.expectChar(';')
		case tkThisHost:
			p.expectChar('{')
			p.parseHostSection(res, hostThis, []string{"_this_host"}, t.pos, false)
		case tkRemoteHost:
			p.expectChar('{')
			p.parseHostSection(res, hostRemote, []string{"_remote_host"}, t.pos, false)
		case tkFloating:
			p.parseHostSection(res, hostFloating, nil, t.pos, true)
		case tkDisk:
			p.next()
			switch {
			case p.tok.kind == tkString:
				v := p.volume0(&res.volumes)
				v.disk, v.hasDisk = p.tok.text, true
				p.expectChar(';')
			case p.isChar('{'):
				p.uniqRes("disk section", t.pos, "second disk section in %s", where)
				res.disk = append(res.disk, p.parseOptions(secDisk)...)
			default:
				p.stringError()
				p.unexpected("a disk device or '{' after disk", nil)
			}
		case tkNet:
			p.uniqRes("net section", t.pos, "second net section in %s", where)
			p.expectChar('{')
			res.net = append(res.net, p.parseOptions(secNet)...)
		case tkSyncer:
			p.uniqRes("syncer section", t.pos, "second syncer section in %s", where)
			p.expectChar('{')
			p.parseSyncer(res)
		case tkStartup:
			p.uniqRes("startup section", t.pos, "second startup section in %s", where)
			p.expectChar('{')
			res.startup = p.parseStartup(res)
		case tkHandler:
			p.uniqRes("handlers section", t.pos, "second handlers section in %s", where)
			p.expectChar('{')
			res.handlers = p.parseOptions(secHandlers)
		case tkProxy:
			p.uniqRes("proxy section", t.pos, "second proxy section in %s", where)
			res.proxyOpts, res.proxyPlugins = p.parseProxyOptions()
		case tkDevice:
			p.uniqRes("device statement", t.pos, "second device statement in %s", where)
			p.parseVolumeStmt(p.volume0(&res.volumes), nil)
		case tkMetaDisk, tkFlexMetaDisk:
			p.parseVolumeStmt(p.volume0(&res.volumes), nil)
		case tkVolume:
			n := p.expectKind(tkInteger, "a volume number")
			res.volumes = insertSorted(res.volumes, p.parseVolume(atoi(n.text), n.pos, nil))
		case tkOptions:
			p.uniqRes("resource options section", t.pos, "second options section in %s", where)
			p.expectChar('{')
			res.res = append(res.res, p.parseOptions(secOptions)...)
		case tkEOF:
			// drbdadm-84 ends a resource at end of file without complaint.
			goto done
		case tkChar:
			if p.isChar('}') {
				goto done
			}
			p.unexpected("a resource statement (on, net, disk, volume, ...)", resourceKeywords)
		default:
			if kw, ok := keywords[t.raw]; ok && isOptionKind(kw.kind) {
				p.misplacedOption(t, "resource "+name)
			}
			p.unexpected("a resource statement (on, net, disk, volume, ...)", resourceKeywords)
		}
	}
done:
	if common && len(res.hosts) > 0 {
		p.fail(errorf(ErrInvalid, res.hosts[0].pos, "host sections are not allowed in the common section"))
	}
	p.checkVolumesHosts(res)
	return res
}

func isOptionKind(k tokKind) bool {
	switch k {
	case tkNetOption, tkNetFlag, tkNetNoFlag, tkDiskOption, tkDiskFlag, tkDiskNoFlag, tkStartupOption,
		tkStartupFlag, tkStartupDelegate, tkHandlerOption, tkResOption, tkProxyOption:
		return true
	}
	return false
}

// sectionOf names the section an option keyword belongs to.
func sectionOf(k tokKind) string {
	switch k {
	case tkNetOption, tkNetFlag, tkNetNoFlag, tkNetDelegate:
		return "net"
	case tkDiskOption, tkDiskFlag, tkDiskNoFlag:
		return "disk"
	case tkStartupOption, tkStartupFlag, tkStartupDelegate:
		return "startup"
	case tkHandlerOption:
		return "handlers"
	case tkResOption:
		return "options"
	case tkProxyOption, tkProxyDelegate:
		return "proxy { options }"
	}
	return ""
}

// misplacedOption reports an option keyword written outside its section.
func (p *parser) misplacedOption(t token, where string) {
	kw := keywords[t.raw]
	p.fatal(errorf(ErrSyntax, t.pos, "'%s' is a %s option; it belongs in a %s {} section, not directly in %s",
		t.raw, sectionOf(kw.kind), sectionOf(kw.kind), where))
}

// parseHosts reads host names up to the delimiter (drbdadm's parse_hosts).
func (p *parser) parseHosts(delim byte) []string {
	var names []string
	for {
		p.next()
		switch {
		case p.tok.kind == tkString:
			names = append(names, p.tok.text)
		case p.isChar(delim):
			if len(names) == 0 {
				p.unexpected("a host name", nil)
			}
			return names
		default:
			p.stringError()
			p.unexpected(fmt.Sprintf("a host name or '%c'", delim), nil)
		}
	}
}

// volume0 is drbdadm's volume0: the implicit volume 0 that statements
// outside any volume {} section describe.
func (p *parser) volume0(vols *[]*rawVolume) *rawVolume {
	if len(*vols) == 0 {
		v := &rawVolume{vnr: 0, implicit: true, minor: -1, pos: p.tok.pos}
		*vols = []*rawVolume{v}
		return v
	}
	v := (*vols)[0]
	if len(*vols) == 1 && v.vnr == 0 && v.implicit {
		return v
	}
	p.fail(errorf(ErrInvalid, p.tok.pos, "mixing explicit and implicit volumes is not allowed (put this statement into a volume {} section)"))
	return v
}

// parseVolumeStmt handles disk, device, meta-disk and flexible-meta-disk
// for a volume; it reports whether the current token was one of them.
func (p *parser) parseVolumeStmt(v *rawVolume, onHosts []string) bool {
	switch p.tok.kind {
	case tkDisk:
		p.next()
		switch {
		case p.tok.kind == tkString:
			v.disk, v.hasDisk = p.tok.text, true
			p.expectChar(';')
		case p.isChar('{'):
			v.diskOpts = p.parseOptions(secDisk)
		default:
			p.stringError()
			p.unexpected("a disk device or '{' after disk", nil)
		}
	case tkDevice:
		p.parseDevice(onHosts, v)
	case tkMetaDisk:
		p.parseMetaDisk(v)
	case tkFlexMetaDisk:
		t := p.expectKind(tkString, "a device or internal after flexible-meta-disk")
		v.metaDisk, v.hasMeta = t.text, true
		v.metaIndex = "flexible"
		if t.text == "internal" {
			v.metaIndex = "internal"
		}
		p.expectChar(';')
	default:
		return false
	}
	return true
}

func (p *parser) parseMetaDisk(v *rawVolume) {
	t := p.expectKind(tkString, "internal or a device after meta-disk")
	v.metaDisk, v.hasMeta = t.text, true
	if t.text == "internal" {
		v.metaIndex = "internal"
		p.expectChar(';')
		return
	}
	p.next()
	switch {
	case p.isChar('['):
		idx := p.expectKind(tkInteger, "a meta-disk index")
		v.metaIndex = idx.text
		p.expectChar(']')
		p.expectChar(';')
	case p.isChar(';'):
		v.metaIndex = "flexible"
	default:
		p.unexpected("'[' or ';' after the meta-disk device", nil)
	}
}

// minorOfDevice is drbd-utils' dt_minor_of_dev without the stat(2)
// fallback: "/dev/drbdN" or "N" give N, anything else -1.
func minorOfDevice(dev string) int {
	digits := strings.TrimPrefix(dev, "/dev/drbd")
	if onlyDigits(dev) {
		digits = dev
	} else if !strings.HasPrefix(dev, "/dev/drbd") || !onlyDigits(digits) {
		return -1
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return -1
	}
	return int(int32(n)) // C returns the long as an int
}

func onlyDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (p *parser) parseDevice(onHosts []string, v *rawVolume) {
	kwPos := p.tok.pos
	p.next()
	switch {
	case p.tok.kind == tkString:
		dev := p.tok.text
		if strings.HasPrefix(dev, "drbd") {
			dev = "/dev/" + dev
		}
		v.device = dev
		if !strings.HasPrefix(dev, "/dev/drbd") {
			p.fail(errorf(ErrInvalid, p.tok.pos, "device name '%s' must start with /dev/drbd (/dev/ is optional, drbd is required)", p.tok.text))
		}
		devTok := p.tok
		p.next()
		switch {
		case p.isChar(';'):
			m := minorOfDevice(dev)
			if m < 0 {
				p.fail(errorf(ErrInvalid, devTok.pos, "no minor given and the device name '%s' contains no minor number (write 'device /dev/drbdN;' or 'device minor N;')", dev))
			}
			v.minor = m
		case p.tok.kind == tkMinor:
			p.parseMinor(v, kwPos)
		default:
			p.unexpected("'minor' or ';' after the device name", nil)
		}
	case p.tok.kind == tkMinor:
		p.parseMinor(v, kwPos)
	default:
		// drbdadm-84 silently swallows this token; the statement then ends
		// without a device, which the checks below report.
	}
	for _, h := range onHosts {
		p.uniq(fmt.Sprintf("device-minor:%s:%d", h, uint32(v.minor)), kwPos, "minor %d used twice on host %s", v.minor, h)
		if v.device != "" {
			p.uniq("device:"+h+":"+v.device, kwPos, "device %s used twice on host %s", v.device, h)
		}
	}
}

func (p *parser) parseMinor(v *rawVolume, kwPos Position) {
	n := p.expectKind(tkInteger, "a minor number")
	v.minor = atoi(n.text)
	p.expectChar(';')
	if v.device == "" {
		return
	}
	// check_minor_nonsense
	if len(v.device) >= 9 && onlyDigits(v.device[9:]) {
		if minorOfDevice(v.device) != v.minor {
			p.fail(errorf(ErrInvalid, kwPos, "the minor %d does not match the device name %s; write 'device /dev/drbd%d minor %d;' or leave off the device name or the minor",
				v.minor, v.device, v.minor, v.minor))
		}
		return
	}
	if len(v.device) > 9 && v.device[9] == '_' {
		return
	}
	p.fail(errorf(ErrInvalid, kwPos, "with an explicit minor, the device name must be /dev/drbd%d or /dev/drbd_NAME (mind the '_')", v.minor))
}

// volumeKeywords are the statements of a volume section.
var volumeKeywords = []string{"device", "disk", "meta-disk", "flexible-meta-disk"}

func (p *parser) parseVolume(vnr int, pos Position, onHosts []string) *rawVolume {
	v := &rawVolume{vnr: vnr, minor: -1, pos: pos}
	p.expectChar('{')
	for {
		p.next()
		if p.isChar('}') {
			return v
		}
		if !p.parseVolumeStmt(v, onHosts) {
			p.unexpected("device, disk, meta-disk, flexible-meta-disk or '}'", volumeKeywords)
		}
	}
}

// parseAddress is drbdadm's __parse_address: [family] ADDR:PORT.
func (p *parser) parseAddress() rawAddr {
	p.next()
	a := rawAddr{pos: p.tok.pos}
	switch p.tok.kind {
	case tkSCI: // ssocks was called sci before
		a.family = "ssocks"
		a.addr = p.expectKind(tkIPAddr, "an IPv4 address").text
	case tkSSocks, tkSDP, tkIPv4:
		a.family = p.tok.text
		a.addr = p.expectKind(tkIPAddr, "an IPv4 address").text
	case tkIPv6:
		a.family = "ipv6"
		p.expectChar('[')
		a.addr = p.expectKind(tkIPAddr6, "an IPv6 address").text
		p.expectChar(']')
	case tkIPAddr:
		a.family = "ipv4"
		a.addr = p.tok.text
	default:
		p.unexpected("an address: [ipv4|ipv6|ssocks|sdp] ADDR:PORT", nil)
	}
	p.expectChar(':')
	port := p.expectKind(tkInteger, "a port number")
	a.port = port.text
	p.rangeCheck("port", port, 1, 0xffff, '1')
	return a
}

// addressUniq checks an address the way drbdadm's parse_address does:
// loopback addresses need only be unique per host, others globally.
func (p *parser) addressUniq(a rawAddr, onHosts []string) {
	if isLoopback(a.addr) {
		for _, h := range onHosts {
			p.uniq(h+":"+a.addr+":"+a.port, a.pos, "address %s:%s used twice on host %s", a.addr, a.port, h)
		}
		return
	}
	p.uniq(a.addr+":"+a.port, a.pos, "address %s:%s used twice", a.addr, a.port)
}

// hostKeywords are the statements of a host section.
var hostKeywords = []string{"address", "device", "disk", "meta-disk", "flexible-meta-disk", "volume", "alternate-link-address", "proxy", "options"}

func (p *parser) parseHostSection(res *rawResource, kind hostKind, names []string, pos Position, requireAll bool) {
	h := &rawHost{kind: kind, onHosts: names, pos: pos}
	inBraces := true
	if kind == hostFloating {
		h.address = p.parseAddress()
		p.uniq(h.address.addr+":"+h.address.port, h.address.pos, "address %s:%s used twice", h.address.addr, h.address.port)
		if h.address.family == "ipv6" {
			h.onHosts = []string{fmt.Sprintf("ipv6 [%s]:%s", h.address.addr, h.address.port)}
		} else {
			h.onHosts = []string{h.address.addr + ":" + h.address.port}
		}
		p.next()
		switch {
		case p.isChar('{'):
		case p.isChar(';'):
			inBraces = false
		default:
			p.unexpected("'{' or ';' after the floating address", nil)
		}
	}
	where := "on " + strings.Join(h.onHosts, " ")
	if kind == hostFloating {
		where = "floating " + h.onHosts[0]
	}
	for _, n := range h.onHosts {
		p.uniqRes("host:"+n, pos, "second host section for %s in resource %s", n, res.name)
	}
	res.hosts = append(res.hosts, h)
	restore := p.scope(&h.ext, scopeHost, where)
	defer restore()

	for inBraces {
		p.next()
		t := p.tok
		switch t.kind {
		case tkDisk, tkDevice, tkMetaDisk, tkFlexMetaDisk:
			stmt := map[tokKind]string{tkDisk: "disk", tkDevice: "device", tkMetaDisk: "meta-disk", tkFlexMetaDisk: "meta-disk"}[t.kind]
			for _, n := range h.onHosts {
				p.uniqRes(res.name+":"+n+":"+stmt, t.pos, "second %s statement in %s (use volume sections for several volumes)", stmt, where)
			}
			p.parseVolumeStmt(p.volume0(&h.volumes), h.onHosts)
		case tkAddress, tkAltAddress:
			if kind == hostFloating {
				p.fatal(errorf(ErrSyntax, t.pos, "address statement not allowed in a floating section (the address is the section's name)"))
			}
			stmt := "address"
			if t.kind == tkAltAddress {
				stmt = "alternate-link-address"
			}
			for _, n := range h.onHosts {
				p.uniqRes(res.name+":"+n+":"+stmt, t.pos, "second %s statement in %s", stmt, where)
			}
			a := p.parseAddress()
			p.addressUniq(a, h.onHosts)
			p.expectChar(';')
			if t.kind == tkAddress {
				h.address = a
			} else {
				h.alt = a
			}
		case tkProxy:
			p.parseProxySection(h)
		case tkVolume:
			n := p.expectKind(tkInteger, "a volume number")
			h.volumes = insertSorted(h.volumes, p.parseVolume(atoi(n.text), n.pos, h.onHosts))
		case tkOptions:
			p.expectChar('{')
			h.resOpts = p.parseOptions(secOptions)
		case tkChar:
			if p.isChar('}') {
				inBraces = false
				continue
			}
			p.unexpected("a host statement (address, device, disk, meta-disk, volume)", hostKeywords)
		default:
			p.unexpected("a host statement (address, device, disk, meta-disk, volume)", hostKeywords)
		}
	}

	p.inheritVolumes(res.volumes, h)
	for _, v := range h.volumes {
		p.checkMetaDisk(v, h)
	}
	if !requireAll {
		return
	}
	if !h.address.isSet() {
		p.missing(res, h, "address")
	}
	p.checkVolumesComplete(res, h)
}

// missing is drbdadm's derror: a required keyword is absent.
func (p *parser) missing(res *rawResource, h *rawHost, what string) {
	p.fail(errorf(ErrInvalid, h.pos, "in resource %s, %s: '%s' keyword missing", res.name, h.describe(), what))
}

func (h *rawHost) describe() string {
	switch h.kind {
	case hostFloating:
		return "floating " + h.onHosts[0]
	case hostStacked:
		return "stacked-on-top-of " + h.lowerName
	}
	return "on " + strings.Join(h.onHosts, " ")
}

func (p *parser) checkMetaDisk(v *rawVolume, h *rawHost) {
	if !v.hasMeta || v.metaDisk == "internal" {
		return
	}
	for _, n := range h.onHosts {
		p.uniq(fmt.Sprintf("%s:%s[%s]", n, v.metaDisk, v.metaIndex), v.pos,
			"meta-disk %s [%s] used twice on host %s", v.metaDisk, v.metaIndex, n)
	}
}

// inheritVolumes copies the resource-level volume statements into a host
// section's volumes where the host does not set them (inherit_volumes).
func (p *parser) inheritVolumes(from []*rawVolume, h *rawHost) {
	for _, s := range from {
		t := h.volume(s.vnr)
		if t == nil {
			t = &rawVolume{vnr: s.vnr, minor: -1, implicit: s.implicit, pos: s.pos}
			h.volumes = insertSorted(h.volumes, t)
		}
		if !t.hasDisk && s.hasDisk {
			t.disk, t.hasDisk, t.diskInherited = s.disk, true, true
			for _, n := range h.onHosts {
				p.uniq("disk:"+n+":"+t.disk, s.pos, "disk %s used twice on host %s", t.disk, n)
			}
		}
		if t.device == "" && s.device != "" {
			t.device = s.device
		}
		if t.minor == -1 && s.minor != -1 {
			t.minor = s.minor
			for _, n := range h.onHosts {
				p.uniq(fmt.Sprintf("device-minor:%s:%d", n, uint32(t.minor)), s.pos, "minor %d used twice on host %s", t.minor, n)
			}
		}
		if !t.hasMeta && s.hasMeta {
			t.metaDisk, t.metaIndex, t.hasMeta = s.metaDisk, s.metaIndex, true
		}
	}
}

func (p *parser) checkVolumesComplete(res *rawResource, h *rawHost) {
	anyImplicit, anyNonZero := false, false
	for _, v := range h.volumes {
		anyImplicit = anyImplicit || v.implicit
		anyNonZero = anyNonZero || v.vnr != 0
		if v.device == "" && v.minor == -1 {
			p.missing(res, h, "device")
		}
		if !v.hasDisk {
			p.missing(res, h, "disk")
		}
		if !v.hasMeta {
			p.missing(res, h, "meta-disk")
		}
	}
	if anyImplicit && anyNonZero {
		p.fail(errorf(ErrInvalid, h.pos, "in resource %s: you must not mix implicit and explicit volumes", res.name))
	}
}

// checkVolumeSetsEqual requires two host sections to define the same volume
// numbers (check_volume_sets_equal).
func (p *parser) checkVolumeSetsEqual(res *rawResource, h1, h2 *rawHost) {
	a, b := h1.volumes, h2.volumes
	name1, name2 := h1.describe(), h2.describe()
	for len(a) > 0 || len(b) > 0 {
		for len(a) > 0 && (len(b) == 0 || a[0].vnr < b[0].vnr) {
			p.fail(errorf(ErrInvalid, a[0].pos, "in resource %s, %s: volume %d not defined in %s", res.name, name1, a[0].vnr, name2))
			a = a[1:]
		}
		for len(b) > 0 && (len(a) == 0 || a[0].vnr > b[0].vnr) {
			p.fail(errorf(ErrInvalid, h1.pos, "in resource %s, %s: volume %d missing (present in %s)", res.name, name1, b[0].vnr, name2))
			b = b[1:]
		}
		if len(a) > 0 && len(b) > 0 && a[0].vnr == b[0].vnr {
			if a[0].implicit != b[0].implicit {
				p.fail(errorf(ErrInvalid, h1.pos, "in resource %s, %s resp. %s: volume %d must not be implicit in one but not the other", res.name, name1, name2, a[0].vnr))
			}
			a, b = a[1:], b[1:]
		}
	}
}

func (p *parser) checkVolumesHosts(res *rawResource) {
	for i := 1; i < len(res.hosts); i++ {
		p.checkVolumeSetsEqual(res, res.hosts[0], res.hosts[i])
	}
}

func (p *parser) parseStacked(res *rawResource, pos Position) {
	h := &rawHost{kind: hostStacked, pos: pos}
	res.hosts = append(res.hosts, h)
	lower := p.expectKind(tkString, "the name of the lower resource")
	p.uniq("stacked:"+lower.text, lower.pos, "resource %s has two resources stacked on it", lower.text)
	h.lowerName = lower.text
	p.expectChar('{')
	restore := p.scope(&h.ext, scopeHost, "stacked-on-top-of "+lower.text)
	defer restore()
	for {
		p.next()
		t := p.tok
		switch t.kind {
		case tkDevice:
			v := p.volume0(&h.volumes)
			p.parseDevice(nil, v)
			v.metaDisk, v.metaIndex, v.hasMeta = "internal", "internal", true
		case tkAddress, tkAltAddress:
			a := p.parseAddress()
			if !isLoopback(a.addr) {
				p.uniq(a.addr+":"+a.port, a.pos, "address %s:%s used twice", a.addr, a.port)
			}
			p.expectChar(';')
			if t.kind == tkAddress {
				h.address = a
			} else {
				h.alt = a
			}
		case tkProxy:
			p.parseProxySection(h)
		case tkVolume:
			n := p.expectKind(tkInteger, "a volume number")
			v := &rawVolume{vnr: atoi(n.text), minor: -1, pos: n.pos}
			p.expectChar('{')
			p.expectKind(tkDevice, "device (a stacked volume has only a device)")
			p.parseDevice(nil, v)
			p.expectChar('}')
			v.metaDisk, v.metaIndex, v.hasMeta = "internal", "internal", true
			h.volumes = insertSorted(h.volumes, v)
		case tkChar:
			if p.isChar('}') {
				res.stackedOnOne = true
				p.inheritVolumes(res.volumes, h)
				if !h.address.isSet() {
					p.missing(res, h, "address")
				}
				return
			}
			p.unexpected("device, address, proxy or volume", []string{"device", "address", "proxy", "volume"})
		default:
			p.unexpected("device, address, proxy or volume", []string{"device", "address", "proxy", "volume"})
		}
	}
}

func (p *parser) parseProxySection(h *rawHost) {
	pr := &rawProxy{pos: p.tok.pos}
	h.proxy = pr
	p.expectKind(tkOn, "'on' after proxy")
	pr.onHosts = p.parseHosts('{')
	for {
		p.next()
		switch {
		case p.tok.kind == tkInside, p.tok.kind == tkOutside:
			inside := p.tok.kind == tkInside
			a := p.parseAddress()
			p.addressUniq(a, pr.onHosts)
			p.expectChar(';')
			if inside {
				pr.inside = a
			} else {
				pr.outside = a
			}
		case p.tok.kind == tkOptions:
			pr.options, pr.plugins = p.parseProxyOptions()
		case p.isChar('}'):
			if !pr.inside.isSet() {
				p.fail(errorf(ErrInvalid, pr.pos, "in proxy on %s: 'inside' keyword missing", strings.Join(pr.onHosts, " ")))
			}
			if !pr.outside.isSet() {
				p.fail(errorf(ErrInvalid, pr.pos, "in proxy on %s: 'outside' keyword missing", strings.Join(pr.onHosts, " ")))
			}
			return
		default:
			p.unexpected("inside, outside or options", []string{"inside", "outside", "options"})
		}
	}
}

// parseProxyOptions reads `{ options... plugin { ... } }`.
func (p *parser) parseProxyOptions() (opts, plugins optList) {
	p.expectChar('{')
	restore := p.scope(nil, scopeNone, "a proxy section")
	defer restore()
	for {
		p.next()
		t := p.tok
		switch {
		case t.kind == tkEOF:
			p.unexpected("a proxy option", nil)
		case t.kind == tkProxyDelegate:
			plugins = p.parsePlugins()
			continue
		case t.group != 0:
			v := p.readValue(t.text)
			p.checkRange(t.rc, t.text, v)
			opts = append(opts, &rawOpt{name: t.text, value: v.text, pos: t.pos, valPos: v.pos})
		case t.kind == tkDeprecatedOption:
			p.readValue(t.text)
		case p.isChar('}'):
			return opts, plugins
		default:
			p.unexpected("a proxy option (memlimit, read-loops, compression, bwlimit, plugin, ...)", nil)
		}
		p.expectChar(';')
	}
}

// parsePlugins reads a proxy plugin {} block: lines of words up to ';'.
func (p *parser) parsePlugins() optList {
	start := p.tok.pos
	p.next()
	if !p.isChar('{') {
		p.fatal(errorf(ErrSyntax, p.tok.pos, "expected '{' after plugin"))
	}
	var list optList
	for {
		var words []string
		linePos := Position{}
		for {
			p.next()
			switch {
			case p.tok.kind == tkEOF:
				p.fatal(errorf(ErrSyntax, start, "end of file inside this plugin section"))
			case p.isChar(';'):
			case p.isChar('}'):
				if len(words) == 0 {
					return list
				}
				p.fatal(errorf(ErrSyntax, p.tok.pos, "missing ';' before '}'"))
			default:
				if len(words) == 0 {
					linePos = p.tok.pos
				}
				words = append(words, p.tok.text)
				continue
			}
			break
		}
		name := strings.Join(words, " ")
		if len(words) == 0 {
			name = "UNKNOWN" // what drbdadm's names_to_str makes of an empty line
		}
		list = append(list, &rawOpt{name: name, noValue: true, pos: linePos})
	}
}

// --- option sections ---

// optionKinds says which scanner classes a section accepts as flag,
// no-flag and option keywords.
func optionKinds(sec section) (flag, noFlag, opt tokKind) {
	switch sec {
	case secNet:
		return tkNetFlag, tkNetNoFlag, tkNetOption
	case secDisk:
		return tkDiskFlag, tkDiskNoFlag, tkDiskOption
	case secStartup:
		return tkStartupFlag, 0, tkStartupOption
	case secHandlers:
		return 0, 0, tkHandlerOption
	case secOptions:
		return 0, 0, tkResOption
	}
	panic("config: no option kinds for " + sec)
}

// keywordNames are the keys of keywords, sorted. The lists built from
// keywords go through them rather than range over the map: sorting words
// collected in map order takes a different path through sort every time,
// go test -fuzz counts those paths as coverage (sort is instrumented too),
// and the fuzzer then kept finding "new" coverage that no rerun of the
// input reproduced, so it could not minimize that input either.
var keywordNames = func() []string {
	names := make([]string, 0, len(keywords))
	for w := range keywords {
		names = append(names, w)
	}
	sort.Strings(names)
	return names
}()

// sectionKeywords lists the keywords a section accepts, for suggestions.
func sectionKeywords(sec section) []string {
	flag, noFlag, opt := optionKinds(sec)
	var out []string
	for _, w := range keywordNames {
		kw := keywords[w]
		if kw.kind != 0 && (kw.kind == flag || kw.kind == noFlag || kw.kind == opt) ||
			sec == secStartup && kw.kind == tkStartupDelegate {
			out = append(out, w)
		}
	}
	if sec == secNet {
		out = append(out, "after-sb-0pri", "after-sb-1pri", "after-sb-2pri")
	}
	sort.Strings(out)
	return out
}

// parseOptions is drbdadm's parse_options_d for the net, disk, handlers and
// options sections (startup has delegates and its own function).
func (p *parser) parseOptions(sec section) optList {
	restore := p.scope(nil, scopeNone, string(sec)+" {}")
	defer restore()
	flag, noFlag, optKind := optionKinds(sec)
	var list optList
	for {
		p.next()
		t := p.tok
		switch {
		case t.kind == tkEOF:
			p.unexpected("an option", nil)
		case flag != 0 && t.kind == flag:
			if p.parseFlag(&list, t) {
				continue
			}
		case noFlag != 0 && t.kind == noFlag:
			list = append(list, &rawOpt{name: strings.TrimPrefix(t.text, "no-"), value: "no", pos: t.pos, valPos: t.pos})
		case t.kind == optKind:
			name := t.text
			if n, ok := deprecatedAliases[optKind][name]; ok {
				name = n
			}
			v := p.readValue(name)
			val := v.text
			if t.rc == rcProtocol {
				val = p.protocolValue(v)
			} else {
				p.checkRange(t.rc, name, v)
			}
			list = append(list, &rawOpt{name: name, value: val, pos: t.pos, valPos: v.pos})
		case t.kind == tkDeprecatedOption:
			p.readValue(t.text) // accepted and ignored, as in drbdadm-84
		case p.isChar('}'):
			return list
		default:
			p.unknownOption(sec)
		}
		p.expectChar(';')
	}
}

// parseFlag reads `flag;`, `flag yes;` or `flag no;`. It returns true when
// the ';' has already been consumed.
func (p *parser) parseFlag(list *optList, t token) bool {
	p.next()
	switch {
	case p.tok.kind == tkYes:
		*list = append(*list, &rawOpt{name: t.text, value: "yes", pos: t.pos, valPos: p.tok.pos})
	case p.tok.kind == tkNo:
		*list = append(*list, &rawOpt{name: t.text, value: "no", pos: t.pos, valPos: p.tok.pos})
	case p.isChar(';'):
		*list = append(*list, &rawOpt{name: t.text, value: "yes", pos: t.pos, valPos: t.pos})
		return true
	default:
		p.unexpected("yes, no or ';' after "+t.text, nil)
	}
	return false
}

// unknownOption reports a word that is not an option of this section,
// naming the section it belongs to or the nearest valid option.
func (p *parser) unknownOption(sec section) {
	t := p.tok
	p.stringError()
	if kw, ok := keywords[t.raw]; ok && isOptionKind(kw.kind) && sectionOf(kw.kind) != string(sec) {
		p.fatal(errorf(ErrSyntax, t.pos, "'%s' is a %s option, not allowed in %s {}", t.raw, sectionOf(kw.kind), sec))
	}
	if t.kind == tkNetDelegate {
		p.fatal(errorf(ErrSyntax, t.pos, "'%s' is not allowed in drbd.conf (it is a command line option of connect)", t.raw))
	}
	if p.isWord() && t.kind != tkChar {
		if s := suggest(t.raw, sectionKeywords(sec)); s != "" {
			p.fatal(errorf(ErrSyntax, t.pos, "unknown option '%s', did you mean '%s'?", t.raw, s))
		}
		p.fatal(errorf(ErrSyntax, t.pos, "unknown option '%s' in %s {}", t.raw, sec))
	}
	p.fatal(errorf(ErrSyntax, t.pos, "expected an option or '}' in %s {}, got %s", sec, p.got()))
}

func (p *parser) parseStartup(res *rawResource) optList {
	restore := p.scope(nil, scopeNone, "startup {}")
	defer restore()
	var list optList
	for {
		p.next()
		t := p.tok
		switch {
		case t.kind == tkEOF:
			p.unexpected("an option", nil)
		case t.kind == tkStartupFlag:
			if p.parseFlag(&list, t) {
				continue
			}
		case t.kind == tkStartupOption:
			v := p.readValue(t.text)
			p.checkRange(t.rc, t.text, v)
			list = append(list, &rawOpt{name: t.text, value: v.text, pos: t.pos, valPos: v.pos})
		case t.kind == tkStartupDelegate && t.text == "become-primary-on":
			res.becomePrimaryOn = p.parseHosts(';')
			res.bpoPos = t.pos
			continue
		case t.kind == tkStartupDelegate:
			res.stackedTimeouts = true
		case t.kind == tkDeprecatedOption:
			p.readValue(t.text)
		case p.isChar('}'):
			return list
		default:
			p.unknownOption(secStartup)
		}
		p.expectChar(';')
	}
}

// parseSyncer distributes the legacy syncer {} options to disk, net and
// options exactly as drbdadm-84 does (parse_options_syncer): rate ->
// disk resync-rate, after -> disk resync-after, al-extents and c-* -> disk,
// verify-alg, csums-alg, use-rle -> net, cpu-mask, on-no-data-accessible
// -> options. The options are appended where the syncer section stands.
func (p *parser) parseSyncer(res *rawResource) {
	restore := p.scope(nil, scopeNone, "syncer {}")
	defer restore()
	valid := []string{}
	for _, w := range keywordNames {
		if keywords[w].group == grpSyncerOld {
			valid = append(valid, w)
		}
	}
	sort.Strings(valid)
	for {
		p.next()
		t := p.tok
		if p.isChar('}') {
			return
		}
		if t.group != grpSyncerOld {
			if kw, ok := keywords[t.raw]; ok && isOptionKind(kw.kind) {
				p.fatal(errorf(ErrSyntax, t.pos, "'%s' is not a syncer option (syncer {} takes only the 8.3 options: %s); write it in %s {}", t.raw, strings.Join(valid, ", "), sectionOf(kw.kind)))
			}
			p.stringError()
			if p.isWord() && t.kind != tkChar {
				if s := suggest(t.raw, valid); s != "" {
					p.fatal(errorf(ErrSyntax, t.pos, "unknown option '%s', did you mean '%s'?", t.raw, s))
				}
			}
			p.fatal(errorf(ErrSyntax, t.pos, "expected a syncer option (%s), got %s", strings.Join(valid, ", "), p.got()))
		}
		var dst *optList
		switch t.kind {
		case tkNetFlag, tkNetOption:
			dst = &res.net
		case tkDiskOption:
			dst = &res.disk
		case tkResOption:
			dst = &res.res
		}
		switch t.kind {
		case tkNetFlag:
			p.next()
			switch p.tok.kind {
			case tkNo:
				*dst = append(*dst, &rawOpt{name: t.text, value: "no", pos: t.pos, valPos: p.tok.pos})
				p.next()
			case tkYes:
				*dst = append(*dst, &rawOpt{name: t.text, value: "yes", pos: t.pos, valPos: p.tok.pos})
				p.next()
			default:
				*dst = append(*dst, &rawOpt{name: t.text, value: "yes", pos: t.pos, valPos: t.pos})
			}
		default:
			name := t.text
			if n, ok := deprecatedAliases[t.kind][name]; ok {
				name = n
			}
			v := p.readValue(name)
			p.checkRange(t.rc, name, v)
			*dst = append(*dst, &rawOpt{name: name, value: v.text, pos: t.pos, valPos: v.pos})
			p.next()
		}
		if !p.isChar(';') {
			p.stringError()
			p.fatal(errorf(ErrSyntax, p.prevEnd, "missing ';' after '%s' (got %s)", p.prevRaw, p.got()))
		}
	}
}
