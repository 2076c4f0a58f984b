package config

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// section names an option section of drbd.conf.
type section string

const (
	secNet      section = "net"
	secDisk     section = "disk"
	secOptions  section = "options"
	secStartup  section = "startup"
	secHandlers section = "handlers"
	secProxy    section = "proxy"
)

type optKind int

const (
	kindNumeric optKind = iota + 1
	kindEnum
	kindBool
	kindString
)

// unitKind says what a numeric option's value means once scaled to
// drbdsetup's unit, which decides the Go type it is exposed as.
type unitKind int

const (
	unitCount   unitKind = iota + 1 // a plain number
	unitTenths                      // 1/10 s -> time.Duration
	unitSeconds                     // s -> time.Duration
	unitKiBps                       // KiB/s -> bytes/s (int64)
	unitSectors                     // 512-byte sectors (int64)
	unitBytes                       // bytes (int64)
)

// optDef is one option as DRBD 8.4 defines it: drbd_limits.h gives range,
// default and scale ("unit prefix": '1' plain, 'k' KiB, 's' sectors, the
// unit a bare number is in and the one drbdsetup and the kernel use);
// config_flags.c gives the enum spellings. TestOptionTableMatchesDrbdsetup
// compares this table with `drbdsetup-84 xml-help`.
type optDef struct {
	name     string
	sec      section
	kind     optKind
	min, max int64
	def      int64 // numeric default, enum index, bool 0/1
	scale    byte  // '1', 'k' or 's'
	unit     unitKind
	values   []string // enum spellings in kernel enum order ("" = hole)
	nocase   bool     // enum compared case-insensitively (protocol)
	clamp    bool     // out-of-range values are clamped, as the kernel does
	field    string   // Go field name in the typed options struct
}

func (d *optDef) String() string { return string(d.sec) + " " + d.name }

var optDefs = []*optDef{
	// net {} (drbdsetup connect / net-options)
	{name: "protocol", sec: secNet, kind: kindEnum, values: protocolNames, def: 2, nocase: true, field: "Protocol"},
	{name: "timeout", sec: secNet, kind: kindNumeric, min: 1, max: 600, def: 60, scale: '1', unit: unitTenths, field: "Timeout"},
	{name: "max-epoch-size", sec: secNet, kind: kindNumeric, min: 1, max: 20000, def: 2048, scale: '1', unit: unitCount, field: "MaxEpochSize"},
	{name: "max-buffers", sec: secNet, kind: kindNumeric, min: 32, max: 131072, def: 2048, scale: '1', unit: unitCount, field: "MaxBuffers"},
	{name: "unplug-watermark", sec: secNet, kind: kindNumeric, min: 1, max: 131072, def: 128, scale: '1', unit: unitCount, field: "UnplugWatermark"},
	{name: "connect-int", sec: secNet, kind: kindNumeric, min: 1, max: 120, def: 10, scale: '1', unit: unitSeconds, field: "ConnectInt"},
	{name: "ping-int", sec: secNet, kind: kindNumeric, min: 1, max: 120, def: 10, scale: '1', unit: unitSeconds, field: "PingInt"},
	{name: "sndbuf-size", sec: secNet, kind: kindNumeric, min: 0, max: 10 << 20, def: 0, scale: '1', unit: unitBytes, field: "SndbufSize"},
	{name: "rcvbuf-size", sec: secNet, kind: kindNumeric, min: 0, max: 10 << 20, def: 0, scale: '1', unit: unitBytes, field: "RcvbufSize"},
	{name: "ko-count", sec: secNet, kind: kindNumeric, min: 0, max: 200, def: 7, scale: '1', unit: unitCount, field: "KoCount"},
	{name: "allow-two-primaries", sec: secNet, kind: kindBool, def: 0, field: "AllowTwoPrimaries"},
	{name: "cram-hmac-alg", sec: secNet, kind: kindString, field: "CramHMACAlg"},
	{name: "shared-secret", sec: secNet, kind: kindString, field: "SharedSecret"},
	{name: "after-sb-0pri", sec: secNet, kind: kindEnum, values: asb0Names, def: 0, field: "AfterSB0Pri"},
	{name: "after-sb-1pri", sec: secNet, kind: kindEnum, values: asb1Names, def: 0, field: "AfterSB1Pri"},
	{name: "after-sb-2pri", sec: secNet, kind: kindEnum, values: asb2Names, def: 0, field: "AfterSB2Pri"},
	{name: "always-asbp", sec: secNet, kind: kindBool, def: 0, field: "AlwaysASBP"},
	{name: "rr-conflict", sec: secNet, kind: kindEnum, values: rrConflictNames, def: 0, field: "RRConflict"},
	{name: "ping-timeout", sec: secNet, kind: kindNumeric, min: 1, max: 300, def: 5, scale: '1', unit: unitTenths, field: "PingTimeout"},
	{name: "data-integrity-alg", sec: secNet, kind: kindString, field: "DataIntegrityAlg"},
	{name: "tcp-cork", sec: secNet, kind: kindBool, def: 1, field: "TCPCork"},
	{name: "on-congestion", sec: secNet, kind: kindEnum, values: onCongestionNames, def: 0, field: "OnCongestion"},
	{name: "congestion-fill", sec: secNet, kind: kindNumeric, min: 0, max: 10 << 21, def: 0, scale: 's', unit: unitSectors, field: "CongestionFill"},
	{name: "congestion-extents", sec: secNet, kind: kindNumeric, min: 67, max: 0xfffe, def: 1237, scale: '1', unit: unitCount, field: "CongestionExtents"},
	{name: "csums-alg", sec: secNet, kind: kindString, field: "CsumsAlg"},
	{name: "csums-after-crash-only", sec: secNet, kind: kindBool, def: 0, field: "CsumsAfterCrashOnly"},
	{name: "verify-alg", sec: secNet, kind: kindString, field: "VerifyAlg"},
	{name: "use-rle", sec: secNet, kind: kindBool, def: 1, field: "UseRLE"},
	{name: "socket-check-timeout", sec: secNet, kind: kindNumeric, min: 0, max: 300, def: 0, scale: '1', unit: unitTenths, field: "SocketCheckTimeout"},

	// disk {} (drbdsetup attach / disk-options)
	{name: "size", sec: secDisk, kind: kindNumeric, min: 0, max: 2 << 40, def: 0, scale: 's', unit: unitSectors, field: "Size"},
	{name: "max-bio-bvecs", sec: secDisk, kind: kindNumeric, min: 0, max: 128, def: 0, scale: '1', unit: unitCount, field: "MaxBioBvecs"},
	{name: "on-io-error", sec: secDisk, kind: kindEnum, values: onIOErrorNames, def: 2, field: "OnIOError"},
	{name: "fencing", sec: secDisk, kind: kindEnum, values: fencingNames, def: 0, field: "Fencing"},
	{name: "disk-barrier", sec: secDisk, kind: kindBool, def: 0, field: "DiskBarrier"},
	{name: "disk-flushes", sec: secDisk, kind: kindBool, def: 1, field: "DiskFlushes"},
	{name: "disk-drain", sec: secDisk, kind: kindBool, def: 1, field: "DiskDrain"},
	{name: "md-flushes", sec: secDisk, kind: kindBool, def: 1, field: "MDFlushes"},
	{name: "resync-rate", sec: secDisk, kind: kindNumeric, min: 1, max: 4 << 20, def: 250, scale: 'k', unit: unitKiBps, field: "ResyncRate"},
	// resync-after names a resource in drbd.conf; drbdadm turns it into the
	// minor drbdsetup takes (-1..1048575).
	{name: "resync-after", sec: secDisk, kind: kindString, field: "ResyncAfter"},
	{name: "al-extents", sec: secDisk, kind: kindNumeric, min: 67, max: 0xfffe, def: 1237, scale: '1', unit: unitCount, clamp: true, field: "ALExtents"},
	{name: "al-updates", sec: secDisk, kind: kindBool, def: 1, field: "ALUpdates"},
	{name: "discard-zeroes-if-aligned", sec: secDisk, kind: kindBool, def: 1, field: "DiscardZeroesIfAligned"},
	{name: "disable-write-same", sec: secDisk, kind: kindBool, def: 0, field: "DisableWriteSame"},
	{name: "c-plan-ahead", sec: secDisk, kind: kindNumeric, min: 0, max: 300, def: 20, scale: '1', unit: unitTenths, field: "CPlanAhead"},
	{name: "c-delay-target", sec: secDisk, kind: kindNumeric, min: 1, max: 100, def: 10, scale: '1', unit: unitTenths, field: "CDelayTarget"},
	{name: "c-fill-target", sec: secDisk, kind: kindNumeric, min: 0, max: 1 << 20, def: 100, scale: 's', unit: unitSectors, field: "CFillTarget"},
	{name: "c-max-rate", sec: secDisk, kind: kindNumeric, min: 250, max: 4 << 20, def: 102400, scale: 'k', unit: unitKiBps, field: "CMaxRate"},
	{name: "c-min-rate", sec: secDisk, kind: kindNumeric, min: 0, max: 4 << 20, def: 250, scale: 'k', unit: unitKiBps, field: "CMinRate"},
	{name: "disk-timeout", sec: secDisk, kind: kindNumeric, min: 0, max: 6000, def: 0, scale: '1', unit: unitTenths, field: "DiskTimeout"},
	{name: "read-balancing", sec: secDisk, kind: kindEnum, values: readBalancingNames, def: 0, field: "ReadBalancing"},
	{name: "rs-discard-granularity", sec: secDisk, kind: kindNumeric, min: 0, max: 1 << 20, def: 0, scale: '1', unit: unitBytes, field: "RsDiscardGranularity"},

	// options {} (drbdsetup new-resource / resource-options)
	{name: "cpu-mask", sec: secOptions, kind: kindString, field: "CPUMask"},
	{name: "on-no-data-accessible", sec: secOptions, kind: kindEnum, values: onNoDataNames, def: 0, field: "OnNoDataAccessible"},

	// startup {} (drbdsetup wait-connect, in seconds)
	{name: "wfc-timeout", sec: secStartup, kind: kindNumeric, min: 0, max: 300000, def: 0, scale: '1', unit: unitSeconds, field: "WFCTimeout"},
	{name: "degr-wfc-timeout", sec: secStartup, kind: kindNumeric, min: 0, max: 300000, def: 0, scale: '1', unit: unitSeconds, field: "DegrWFCTimeout"},
	{name: "outdated-wfc-timeout", sec: secStartup, kind: kindNumeric, min: 0, max: 300000, def: 0, scale: '1', unit: unitSeconds, field: "OutdatedWFCTimeout"},
	{name: "wait-after-sb", sec: secStartup, kind: kindBool, def: 0, field: "WaitAfterSB"},
}

var optByKey = func() map[string]*optDef {
	m := map[string]*optDef{}
	for _, d := range optDefs {
		m[string(d.sec)+" "+d.name] = d
	}
	return m
}()

func lookupOpt(sec section, name string) *optDef { return optByKey[string(sec)+" "+name] }

// rangeOf gives the limits drbdadm-84 itself checks while parsing, keyed by
// the scanner's range check (drbdadm_parser.c range_check).
func rangeOf(rc rangeCheck) (min, max int64, scale byte, ok bool) {
	switch rc {
	case rcMinorCount:
		return 1, 255, '1', true
	case rcDialogRefresh:
		return 0, 600, '1', true
	case rcDiskSize:
		return 0, 2 << 40, 's', true
	case rcTimeout:
		return 1, 600, '1', true
	case rcConnectInt:
		return 1, 120, '1', true
	case rcPingInt:
		return 1, 120, '1', true
	case rcMaxBuffers:
		return 32, 131072, '1', true
	case rcMaxEpochSize:
		return 1, 20000, '1', true
	case rcSndbufSize, rcRcvbufSize:
		return 0, 10 << 20, '1', true
	case rcKoCount:
		return 0, 200, '1', true
	case rcRate:
		return 1, 4 << 20, 'k', true
	case rcPort:
		return 1, 0xffff, '1', true
	case rcWFCTimeout, rcDegrWFCTimeout, rcOutdatedWFCTimeout:
		return 0, 300000, '1', true
	case rcCPlanAhead:
		return 0, 300, '1', true
	case rcCDelayTarget:
		return 1, 100, '1', true
	case rcCFillTarget:
		return 0, 1 << 20, 's', true
	case rcCMaxRate:
		return 250, 4 << 20, 'k', true
	case rcCMinRate:
		return 0, 4 << 20, 'k', true
	case rcCongFill:
		return 0, 10 << 21, 's', true
	case rcCongExtents:
		return 67, 0xfffe, '1', true
	}
	// rcALExtents: drbdadm leaves al-extents to the kernel, which clamps.
	return 0, 0, 0, false
}

// numErr classifies a bad number the way drbd-utils' new_strtoll does.
type numErr int

const (
	numOK numErr = iota
	numInvalid
	numOverflow
)

// parseNumber reads a drbd.conf number: decimal digits and at most one unit
// letter, K/k (KiB), M/m (MiB), G/g (GiB) or s (512-byte sectors), all
// powers of two, and returns it in the option's scale: '1' (plain or
// bytes), 'k' (KiB) or 's' (sectors). Converting down rounds up
// (`rate 1s` is 1 KiB/s), as drbd-utils does. There is no T.
func parseNumber(s string, scale byte) (uint64, numErr) {
	var shift int
	switch scale {
	case '1':
	case 'k':
		shift = -10
	case 's':
		shift = -9
	default:
		panic("config: bad scale " + string(scale))
	}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, numInvalid
	}
	v, err := strconv.ParseUint(s[:i], 10, 64)
	overflow := err != nil
	if overflow {
		v = math.MaxUint64
	}
	switch s[i:] {
	case "":
		if overflow {
			return 0, numOverflow
		}
		return v, numOK
	case "K", "k":
		shift += 10
	case "M", "m":
		shift += 20
	case "G", "g":
		shift += 30
	case "s":
		shift += 9
	default:
		return 0, numInvalid
	}
	if overflow {
		return 0, numOverflow
	}
	if shift < 0 {
		return (v + (1 << -shift) - 1) >> -shift, numOK
	}
	if v > math.MaxUint64>>shift {
		return 0, numOverflow
	}
	return v << shift, numOK
}

// scaleName describes an option's unit for messages.
func scaleName(scale byte, unit unitKind) string {
	switch unit {
	case unitTenths:
		return " (in 1/10 s)"
	case unitSeconds:
		return " (in seconds)"
	case unitKiBps:
		return " KiB/s"
	case unitSectors:
		return " sectors"
	case unitBytes:
		return " bytes"
	case unitCount:
		return ""
	}
	switch scale {
	case 'k':
		return " KiB"
	case 's':
		return " sectors"
	}
	return ""
}

func notANumber(name, written string) string {
	hint := "digits with an optional K, M, G or s suffix"
	if strings.HasSuffix(written, "T") || strings.HasSuffix(written, "t") {
		hint += "; there is no T"
	}
	return fmt.Sprintf("%s: '%s' is not a number (%s)", name, written, hint)
}

// outOfRange says a value is outside its range, with the value converted
// to the option's unit when a suffix was written (resync-rate 5G is
// 5242880 KiB/s).
func outOfRange(name, written string, n uint64, overflow bool, min, max int64, scale byte, unit unitKind) string {
	u := scaleName(scale, unit)
	if overflow {
		return fmt.Sprintf("%s %s is out of range [%d..%d]%s", name, written, min, max, u)
	}
	if onlyDigits(written) {
		return fmt.Sprintf("%s %s is out of range [%d..%d]%s", name, written, min, max, u)
	}
	return fmt.Sprintf("%s %s is %d%s, out of range [%d..%d]", name, written, n, u, min, max)
}

// value is an option's effective value in drbdsetup's unit: a number, an
// enum index or a bool as 0/1, or a string.
type value struct {
	num int64
	str string
}

// checkValue validates one written option value against the 8.4 limits
// and returns it in drbdsetup's unit. These are the checks drbdsetup (enum
// spellings, booleans, number syntax) and drbd_limits.h (ranges) define;
// drbdadm-84 itself only range-checks some options.
func checkValue(d *optDef, o *rawOpt) (value, *Error) {
	switch d.kind {
	case kindNumeric:
		n, e := parseNumber(o.value, d.scale)
		switch e {
		case numInvalid:
			return value{}, errorf(ErrInvalid, o.valPos, "%s", notANumber(d.name, o.value))
		case numOverflow:
			return value{}, errorf(ErrInvalid, o.valPos, "%s", outOfRange(d.name, o.value, n, true, d.min, d.max, d.scale, d.unit))
		}
		if n > uint64(d.max) || int64(n) < d.min {
			if d.clamp {
				if n > uint64(d.max) {
					return value{num: d.max}, nil
				}
				return value{num: d.min}, nil
			}
			return value{}, errorf(ErrInvalid, o.valPos, "%s", outOfRange(d.name, o.value, n, false, d.min, d.max, d.scale, d.unit))
		}
		return value{num: int64(n)}, nil
	case kindEnum:
		if d.name == "after-sb-0pri" && strings.HasPrefix(o.value, "discard-node-") {
			// discard-node-NAME: discard-local on NAME, discard-remote
			// elsewhere; Load resolves it for its node.
			return value{num: int64(ASBDiscardRemote - 1)}, nil
		}
		for i, v := range d.values {
			if v != "" && (v == o.value || d.nocase && strings.EqualFold(v, o.value)) {
				return value{num: int64(i)}, nil
			}
		}
		valid := make([]string, 0, len(d.values))
		for _, v := range d.values {
			if v != "" {
				valid = append(valid, v)
			}
		}
		if s := suggest(o.value, valid); s != "" {
			return value{}, errorf(ErrInvalid, o.valPos, "%s: unknown value '%s', did you mean '%s'?", d.name, o.value, s)
		}
		return value{}, errorf(ErrInvalid, o.valPos, "%s: unknown value '%s' (one of: %s)", d.name, o.value, strings.Join(valid, ", "))
	case kindBool:
		switch o.value {
		case "yes":
			return value{num: 1}, nil
		case "no":
			return value{num: 0}, nil
		}
		return value{}, errorf(ErrInvalid, o.valPos, "%s: expected yes or no, got '%s'", d.name, o.value)
	}
	return value{str: o.value}, nil
}

// Setting is one option as the configuration states it, for callers that
// need to know what was explicit (drbdadm adjust, the normalized dump).
// Value is as written (units unresolved), after 8.4's renames.
//
// A Setting is a value; safe for concurrent use.
type Setting struct {
	Name  string
	Value string
	Pos   Position
}

// settings is the explicit-option record every typed options struct embeds.
type settings struct {
	list []Setting
}

// IsSet reports whether the option was set explicitly (in the section, in
// common, or in a legacy syncer section), as opposed to its default.
func (s *settings) IsSet(name string) bool {
	_, ok := s.Setting(name)
	return ok
}

// Setting returns the explicit setting of name that takes effect (the
// last one, as drbdsetup lets a later option override an earlier one).
func (s *settings) Setting(name string) (Setting, bool) {
	for i := len(s.list) - 1; i >= 0; i-- {
		if s.list[i].Name == name {
			return s.list[i], true
		}
	}
	return Setting{}, false
}

func (s *settings) setList(l []Setting) { s.list = l }

// Settings returns the explicit settings in the order drbdadm-84 would pass
// them to drbdsetup (inherited common options first, reversed, as
// drbdadm's expand_opts leaves them).
func (s *settings) Settings() []Setting { return append([]Setting(nil), s.list...) }

// fill sets the typed fields of dst (a pointer to NetOptions, DiskOptions,
// ResourceOptions or StartupOptions) from the defaults and then the
// options in list, the last occurrence of an option winning. It returns the
// problems with values; an invalid value leaves the default in place.
func fill(dst any, sec section, list optList) ErrorList {
	rv := reflect.ValueOf(dst).Elem()
	var errs ErrorList
	var set settings
	for _, d := range optDefs {
		if d.sec != sec {
			continue
		}
		f := rv.FieldByName(d.field)
		if !f.IsValid() {
			panic("config: no field " + d.field + " for " + d.String())
		}
		setField(f, d, value{num: d.def})
	}
	for _, o := range list {
		set.list = append(set.list, Setting{Name: o.name, Value: o.value, Pos: o.pos})
		d := lookupOpt(sec, o.name)
		if d == nil {
			continue // not an 8.4 option of this section; reported at parse time
		}
		v, err := checkValue(d, o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		setField(rv.FieldByName(d.field), d, v)
	}
	dst.(interface{ setList([]Setting) }).setList(set.list)
	return errs
}

func setField(f reflect.Value, d *optDef, v value) {
	switch d.kind {
	case kindString:
		f.SetString(v.str)
	case kindBool:
		f.SetBool(v.num != 0)
	case kindEnum:
		// Go enums start at 1 (zero invalid); kernel enums at 0.
		f.SetInt(v.num + 1)
	case kindNumeric:
		switch d.unit {
		case unitTenths:
			f.SetInt(int64(time.Duration(v.num) * 100 * time.Millisecond))
		case unitSeconds:
			f.SetInt(int64(time.Duration(v.num) * time.Second))
		case unitKiBps:
			f.SetInt(v.num * 1024)
		default:
			f.SetInt(v.num)
		}
	}
}

// effective returns an option's value in drbdsetup's unit for the dump.
func effective(d *optDef, list optList) (value, bool) {
	if o := list.last(d.name); o != nil {
		if v, err := checkValue(d, o); err == nil {
			return v, true
		}
	}
	if d.kind == kindString {
		return value{}, false
	}
	return value{num: d.def}, false
}

func (v value) format(d *optDef) any {
	switch d.kind {
	case kindString:
		return v.str
	case kindBool:
		return v.num != 0
	case kindEnum:
		return d.values[v.num]
	}
	return v.num
}

func unitLabel(d *optDef) string {
	switch d.unit {
	case unitTenths:
		return "1/10 s"
	case unitSeconds:
		return "s"
	case unitKiBps:
		return "KiB/s"
	case unitSectors:
		return "sectors"
	case unitBytes:
		return "bytes"
	}
	return ""
}

func (d *optDef) describeDefault() string {
	switch d.kind {
	case kindEnum:
		return d.values[d.def]
	case kindBool:
		if d.def != 0 {
			return "yes"
		}
		return "no"
	case kindNumeric:
		return fmt.Sprint(d.def)
	}
	return `""`
}
