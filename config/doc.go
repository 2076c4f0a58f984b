// Package config reads DRBD 8.4 drbd.conf files exactly as drbd-utils'
// 8.4 parser (/lib/drbd/drbdadm-84) reads them, and gives gdrbd the
// effective value of every option, units resolved and defaults filled.
//
// Parity is the point: a file loads if and only if drbdadm-84 accepts it
// (see "Where gdrbd is stricter" for the few deliberate exceptions), and it
// means the same thing. The tests hold the package to that: a corpus in
// testdata/corpus is run through drbdadm-84 (same acceptance, same `dump`
// text, and every value `drbdadm -d up` hands to drbdsetup-84 compared in
// drbdsetup's units), random mutations of it are checked the same way, the
// option table is compared with `drbdsetup-84 xml-help`, and FuzzParse
// checks that whatever parses dumps and parses back to the same values.
//
// # Usage
//
//	cfg, err := config.Load("/etc/drbd.conf", config.Options{Node: "alpha"})
//	if err != nil {
//		// *config.ErrorList: every problem as FILE:LINE:COL: message;
//		// errors.Is(err, config.ErrSyntax / ErrInvalid / ErrIO)
//	}
//	r, err := cfg.Resource("r0") // *NotDefinedError, *NotOnThisHostError
//	r.Protocol                   // config.ProtocolC
//	r.Net.Timeout                // 6 * time.Second (drbd.conf: timeout 60;)
//	r.Local.Address.HostPort()   // "10.0.0.1:7788"
//	r.Peer.Address               // the other host section
//	for _, v := range r.Volumes {
//		v.Device, v.Minor, v.Disk, v.MetaDevice(), v.MetaIndexArg()
//		v.DiskOptions.ResyncRate // bytes/s (syncer { rate 200M; } = 200 MiB/s)
//	}
//	r.Net.IsSet("timeout")       // written (here or in common) or default?
//	cfg.WriteDump(os.Stdout, nil) // drbdadm dump layout
//	cfg.WriteJSON(os.Stdout, nil) // every effective value
//
// Options.Node is the name `on NAME` sections are matched against; empty
// means $__DRBD_NODE__ (drbdadm's own override) or else the host name.
//
// # Grammar
//
// The scanner is drbdadm_scanner.fl: every keyword is reserved everywhere
// (a host called "disk" or an option value "no" must be double quoted);
// words are [a-zA-Z0-9/._-]{1,128}; double quoted strings may not span
// lines, backslash quotes the next character; # starts a comment; only
// space, tab, CR and LF are white space (a non-breaking space copied from a
// web page is an error in both parsers, as in the seed how-to's file).
//
//	file      = { "global" "{" ... "}" | "common" "{" res-body "}"
//	            | "resource" NAME "{" res-body "}" | "skip" [WORD] "{" ... "}"
//	            | "include" STRING ";" }
//	res-body  = { "protocol" (A|B|C) ";" | "net" "{" ... "}" | "disk" "{" ... "}"
//	            | "disk" DEV ";" | "device" ... | "meta-disk" ... | "flexible-meta-disk" DEV ";"
//	            | "startup" "{" ... "}" | "options" "{" ... "}" | "handlers" "{" ... "}"
//	            | "syncer" "{" ... "}" | "proxy" "{" ... "}" | "volume" N "{" vol "}"
//	            | "on" NAME {NAME} "{" host "}" | "floating" ADDRESS ("{" host "}" | ";")
//	            | "stacked-on-top-of" RES "{" ... "}" | "ignore-on" NAME ";"
//	            | "_this_host" "{" host "}" | "_remote_host" "{" host "}" }
//	host      = { "address" ADDRESS ";" | "alternate-link-address" ADDRESS ";"
//	            | "volume" N "{" vol "}" | vol-stmt | "options" "{" ... "}" | "proxy" "on" ... }
//	vol-stmt  = "device" ("/dev/drbdN" | "drbdN" | "/dev/drbd_NAME" "minor" N | "minor" N) ";"
//	          | "disk" (DEV | "none") ";" | "disk" "{" disk-options "}"
//	          | "meta-disk" ("internal" | DEV | DEV "[" N "]") ";"
//	ADDRESS   = ["ipv4" | "ssocks" | "sdp" | "sci"] IPV4 ":" PORT | "ipv6" "[" IPV6 "]" ":" PORT
//
// Statements outside volume {} describe volume 0 ("implicit" volume; it
// cannot be mixed with volume sections). Resource-level device, disk,
// meta-disk and volume statements are what the host sections share; a
// host's own statement wins. `include` takes a glob relative to the
// including file; each file is read once; a glob may match nothing, a plain
// name must exist. A resource may end at end of file without its `}`
// (drbdadm-84 allows it).
//
// Flags are written `flag;`, `flag yes;`, `flag no;` or `no-flag;`. An
// option written twice takes its last value (drbdadm passes both to
// drbdsetup, which keeps the last), except handlers, where drbdadm runs the
// first.
//
// # Inheritance and syncer
//
// common {} is merged into every resource where the resource does not set
// an option; a resource's disk options go to each volume where the volume
// does not set them; then a resource-level `volume N { disk {...} }` fills
// what is still unset. NB: so those lose against common and the resource's
// disk {}, which is how drbdadm-84's expand_common merges.
//
// The 8.3 syncer {} section is remapped as 8.4 does: rate and after become
// disk resync-rate and resync-after; al-extents and c-plan-ahead,
// c-delay-target, c-fill-target, c-max-rate, c-min-rate go to disk;
// verify-alg, csums-alg and use-rle to net; cpu-mask and
// on-no-data-accessible to options. `protocol X;` at resource level is the
// net option protocol. outdate-peer is renamed fence-peer.
//
// # Units, ranges, defaults
//
// Numbers take K, M, G (powers of two) or s (512-byte sectors), in either
// case except s; there is no T. A bare number is in the option's own unit:
// resync-rate, c-max-rate, c-min-rate KiB/s; size, c-fill-target,
// congestion-fill sectors; sndbuf-size, rcvbuf-size bytes; timeout,
// ping-timeout, c-plan-ahead, c-delay-target, disk-timeout 1/10 s;
// connect-int, ping-int and the wfc timeouts seconds. Converting to a
// larger unit rounds up (rate 1s is 1 KiB/s). Ranges and defaults are
// drbd_limits.h's (optDefs, checked against drbdsetup-84 xml-help). The
// typed fields hold converted values: time.Duration for times, bytes/s for
// rates, sectors where the field says so.
//
// # Host selection
//
// As set_me_in_resource: `on` sections by name, `floating` sections when the
// address is configured on this machine (Options.HaveIP) or equals the node
// name, stacked-on-top-of sections when the lower resource is this node's,
// `_this_host` always. A resource without a section for this node is
// "ignored": it loads and dumps, Resource.Local is nil and Config.Resource
// says which hosts it has. With exactly two host sections the other one is
// the peer; with more, Peer is nil (drbdadm needs --peer).
//
// # Errors
//
// Every message has FILE:LINE:COL (columns in bytes), says what was expected
// and, for a misspelt keyword, the nearest valid one ("unknown option
// 'rsync-rate', did you mean 'resync-rate'?"); an option in the wrong
// section says where it belongs. Like drbdadm, parsing stops at the first
// syntax error and at the first conflict (a minor, device, address:port,
// meta-disk index or resource name used twice; non-loopback addresses are
// unique per file, loopback ones per host); the later checks (missing
// keywords, volume sets, host sections for this node, become-primary-on,
// values) are all reported.
//
// # Where gdrbd is stricter
//
// drbdadm-84 leaves some checks to drbdsetup-84 and the kernel, so `drbdadm
// dump` accepts files that `drbdadm up` then fails on. gdrbd checks these
// when loading (Error.beyondParser marks them for the differential tests):
// enum spellings and booleans, number syntax and drbd_limits.h ranges for
// every option (drbdadm range-checks only some; al-extents is clamped into
// [67..65534] like the kernel does), options drbdsetup-84 does not have
// (use-bmbv), minors above 1048575 and volume numbers above 65535, a volume
// number used twice in one host section, addresses that do not resolve
// (10.0.0.256, octal-looking 010.0.0.1), and resync-after naming a resource
// with several volumes. A resync-after naming no resource of this node is
// dropped with a warning, as drbdadm does when run from a script.
//
// # The dump
//
// WriteDump prints drbdadm-84's `dump` layout (common kept, not merged;
// WriteJSON has the merged values). drbdadm's `-d dump`, which merges,
// cannot be read back by its own parser (an implicit volume gets both
// `disk {...}` and `disk DEV;` in one host section), so gdrbd follows the
// plain layout and adds what drbdadm loses: resource-level volume disk
// options, quoted host names, udev-always-use-vnr and the cmd-timeouts.
//
// # gdrbd-only settings
//
// Settings DRBD 8.4 does not have (the NBD socket and device, TLS, lz4)
// are written as comment directives:
//
//	resource r0 {
//		# gdrbd: nbd-socket /run/gdrbd/r0.sock;
//		on alpha {
//			# gdrbd: tls-cert /etc/gdrbd/alpha.pem;
//			...
//
// drbdadm-84 (and a kernel DRBD node sharing the file) reads a comment and
// can never misread them, and they stay next to the resource and host they
// configure, which a separate /etc/gdrbd.conf keyed by resource name would
// not (renaming a resource or moving a host section would silently detach
// them). They are allowed at file level (all resources), in common, in a
// resource and in a host section; the local host's win over the resource's,
// over common's, over the file's. The keys are fixed (extDefs); a misspelt
// key or a bad value is an error with a suggestion, so a directive is not
// silently ignored the way an unknown comment would be. Only "# gdrbd:"
// (spaces optional) starts a directive; the dump keeps them in place.
package config
