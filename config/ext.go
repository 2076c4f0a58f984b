package config

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// directivePrefix starts a gdrbd directive inside a comment:
//
//	# gdrbd: nbd-socket /run/gdrbd/r0.sock;
//
// drbdadm-84 drops the whole line as a comment, so these settings can
// never change what drbdadm (or a kernel DRBD peer's admin) reads.
const directivePrefix = "gdrbd:"

// extScope says where a directive was written; a resource's effective
// extension settings merge global < common < resource < local host.
type extScope int

const (
	scopeNone extScope = iota // inside a section that takes no directives
	scopeGlobal
	scopeCommon
	scopeResource
	scopeHost
	scopeSkip // inside skip {}: ignored like everything else there
)

type extSetting struct {
	key   string
	value string
	pos   Position
}

type extKind int

const (
	extPath extKind = iota + 1 // an absolute path
	extBool                    // yes | no (a bare key means yes)
	extEnum
)

type extDef struct {
	key    string
	kind   extKind
	values []string // extEnum
	doc    string
}

// extDefs are the gdrbd-only settings. Keep them few and explicit: a key
// typo is an error with a suggestion, not a silently ignored comment.
var extDefs = []extDef{
	{key: "nbd-socket", kind: extPath, doc: "unix socket the Primary serves the device on (NBD fixed newstyle)"},
	{key: "nbd-device", kind: extPath, doc: "kernel NBD device (/dev/nbdN) to attach the served device to"},
	{key: "tls", kind: extBool, doc: "encrypt replication with TLS (gdrbd peers only; off with a kernel peer)"},
	{key: "tls-cert", kind: extPath, doc: "PEM certificate for TLS"},
	{key: "tls-key", kind: extPath, doc: "PEM private key for TLS"},
	{key: "tls-ca", kind: extPath, doc: "PEM CA bundle that signs the peer's certificate"},
	{key: "compression", kind: extEnum, values: []string{"none", "lz4"}, doc: "payload compression (gdrbd peers only)"},
}

func findExtDef(key string) *extDef {
	for i := range extDefs {
		if extDefs[i].key == key {
			return &extDefs[i]
		}
	}
	return nil
}

// parseDirective parses the body of one `# gdrbd: KEY [VALUE];` comment.
func parseDirective(d directive) (extSetting, *Error) {
	body := d.body
	col := d.pos
	bad := func(off int, format string, args ...any) (extSetting, *Error) {
		p := col
		p.Col += off
		return extSetting{}, errorf(ErrSyntax, p, format, args...)
	}
	i := 0
	skipWS := func() {
		for i < len(body) && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r') {
			i++
		}
	}
	skipWS()
	ks := i
	for i < len(body) && isStringChar(body[i]) {
		i++
	}
	key := body[ks:i]
	if key == "" {
		return bad(ks, "gdrbd directive: expected a key, as in '# gdrbd: nbd-socket /run/gdrbd/r0.sock;'")
	}
	def := findExtDef(key)
	if def == nil {
		keys := make([]string, len(extDefs))
		for j, d := range extDefs {
			keys[j] = d.key
		}
		if s := suggest(key, keys); s != "" {
			return bad(ks, "unknown gdrbd setting '%s', did you mean '%s'?", key, s)
		}
		return bad(ks, "unknown gdrbd setting '%s' (known: %s)", key, strings.Join(keys, ", "))
	}
	skipWS()
	vs := i
	var value string
	switch {
	case i < len(body) && body[i] == '"':
		j := i + 1
		var b strings.Builder
		for j < len(body) && body[j] != '"' {
			if body[j] == '\\' && j+1 < len(body) {
				j++
			}
			b.WriteByte(body[j])
			j++
		}
		if j >= len(body) {
			return bad(vs, "gdrbd directive: unterminated double quoted string")
		}
		value = b.String()
		i = j + 1
	default:
		for i < len(body) && body[i] != ';' && body[i] != ' ' && body[i] != '\t' {
			i++
		}
		value = body[vs:i]
	}
	skipWS()
	if i >= len(body) || body[i] != ';' {
		return bad(i, "gdrbd directive: expected ';' after '%s'", strings.TrimSpace(body[ks:i]))
	}
	i++
	skipWS()
	if i < len(body) {
		return bad(i, "gdrbd directive: unexpected '%s' after ';'", body[i:])
	}
	p := col
	p.Col += ks
	switch def.kind {
	case extBool:
		if value == "" {
			value = "yes"
		}
		if value != "yes" && value != "no" {
			return bad(vs, "gdrbd setting %s: expected yes or no, got '%s'", key, value)
		}
	case extPath:
		if value == "" {
			return bad(vs, "gdrbd setting %s needs a path", key)
		}
		if !filepath.IsAbs(value) {
			return bad(vs, "gdrbd setting %s: '%s' is not an absolute path", key, value)
		}
	case extEnum:
		ok := false
		for _, v := range def.values {
			ok = ok || v == value
		}
		if !ok {
			return bad(vs, "gdrbd setting %s: expected one of %s, got '%s'", key, strings.Join(def.values, ", "), value)
		}
	}
	return extSetting{key: key, value: value, pos: p}, nil
}

// Compression is the payload compression gdrbd negotiates with a gdrbd
// peer; a kernel DRBD peer never sees it. A value; safe for concurrent use.
type Compression int

const (
	CompressionNone Compression = iota + 1
	CompressionLZ4
)

func (c Compression) String() string {
	switch c {
	case CompressionNone:
		return "none"
	case CompressionLZ4:
		return "lz4"
	}
	return fmt.Sprintf("Compression(%d)", int(c))
}

// Extensions are the gdrbd-only settings of one resource, merged from the
// `# gdrbd:` directives at global (file) level, in common, in the resource
// and in the local host section, later levels overriding earlier ones.
//
// Extensions is a value filled by Load; safe for concurrent reads.
type Extensions struct {
	NBDSocket   string
	NBDDevice   string
	TLS         bool
	TLSCert     string
	TLSKey      string
	TLSCA       string
	Compression Compression
	set         map[string]Setting
}

// IsSet reports whether a directive set key for this resource.
func (e *Extensions) IsSet(key string) bool { _, ok := e.set[key]; return ok }

// Settings lists the directives in effect, sorted by key.
func (e *Extensions) Settings() []Setting {
	out := make([]Setting, 0, len(e.set))
	// In extDefs order, not map order (every key is one of extDefs): the
	// sort then takes the same path every time (see keywordNames).
	for _, d := range extDefs {
		if s, ok := e.set[d.key]; ok {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func buildExtensions(levels ...[]extSetting) Extensions {
	e := Extensions{Compression: CompressionNone, set: map[string]Setting{}}
	for _, lvl := range levels {
		for _, s := range lvl {
			e.set[s.key] = Setting{Name: s.key, Value: s.value, Pos: s.pos}
			switch s.key {
			case "nbd-socket":
				e.NBDSocket = s.value
			case "nbd-device":
				e.NBDDevice = s.value
			case "tls":
				e.TLS = s.value == "yes"
			case "tls-cert":
				e.TLSCert = s.value
			case "tls-key":
				e.TLSKey = s.value
			case "tls-ca":
				e.TLSCA = s.value
			case "compression":
				if s.value == "lz4" {
					e.Compression = CompressionLZ4
				} else {
					e.Compression = CompressionNone
				}
			}
		}
	}
	return e
}
