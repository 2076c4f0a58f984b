package config

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

const hosts = `on a { device minor 0; disk /d; address 10.0.0.1:7788; meta-disk internal; }
on b { device minor 0; disk /d; address 10.0.0.2:7788; meta-disk internal; }`

// TestErrors pins the exact message and file:line:column of each kind of
// mistake, and its class (ErrSyntax stops at the first; ErrInvalid lists
// all).
func TestErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		src  string
		kind error
		want string
	}{
		{"typo", "resource r0 {\n disk { rsync-rate 10M; }\n" + hosts + "}",
			ErrSyntax, "e.conf:2:9: unknown option 'rsync-rate', did you mean 'resync-rate'?"},
		{"typo in net", "resource r0 { net { ping-timout 5; } " + hosts + "}",
			ErrSyntax, "e.conf:1:21: unknown option 'ping-timout', did you mean 'ping-timeout'?"},
		{"typo at top", "resourc r0 {}",
			ErrSyntax, "e.conf:1:1: unknown keyword 'resourc' (expected global, common, resource, skip or include), did you mean 'resource'?"},
		{"typo in resource", "resource r0 {\n  starup { }\n}",
			ErrSyntax, "e.conf:2:3: unknown keyword 'starup' (expected a resource statement (on, net, disk, volume, ...)), did you mean 'startup'?"},
		{"typo in host", "resource r0 { on a { adress 1.2.3.4:5; } }",
			ErrSyntax, "e.conf:1:22: unknown keyword 'adress' (expected a host statement (address, device, disk, meta-disk, volume)), did you mean 'address'?"},
		{"wrong section", "resource r0 { disk { ping-int 5; } }",
			ErrSyntax, "e.conf:1:22: 'ping-int' is a net option, not allowed in disk {}"},
		{"option outside section", "resource r0 { timeout 5; }",
			ErrSyntax, "e.conf:1:15: 'timeout' is a net option; it belongs in a net {} section, not directly in resource r0"},
		{"missing semicolon", "resource r0 {\n net { timeout 60\n }\n}",
			ErrSyntax, "e.conf:2:18: missing ';' after '60' (got '}')"},
		{"missing brace", "resource r0 on a {}",
			ErrSyntax, "e.conf:1:13: expected '{', got 'on'"},
		{"unterminated string", "resource r0 { handlers { split-brain \"x; } }\n",
			ErrSyntax, "e.conf:1:38: unterminated double quoted string (strings cannot span lines)"},
		{"eof in skip", "skip {\n { }\n",
			ErrSyntax, "e.conf:1:1: end of file inside this skip block"},
		{"nbsp", "resource r0 {\u00a0}",
			ErrSyntax, "e.conf:1:14: expected a resource statement (on, net, disk, volume, ...), got U+00A0, which is not white space in drbd.conf (only space, tab, CR and LF are; copied from a web page?)"},
		{"bad flag value", "resource r0 { net { allow-two-primaries maybe; } }",
			ErrSyntax, "e.conf:1:41: expected yes, no or ';' after allow-two-primaries, got 'maybe'"},
		{"ipv6 without brackets", "resource r0 { on a { address ipv6 fd00::1:7788; } }",
			ErrSyntax, "e.conf:1:35: expected '[', got 'fd00::1:7788'"},
		{"discard-my-data", "resource r0 { net { discard-my-data; } }",
			ErrSyntax, "e.conf:1:21: 'discard-my-data' is not allowed in drbd.conf (it is a command line option of connect)"},
		{"range", "resource r0 {\n net { timeout 0; }\n" + hosts + "}",
			ErrInvalid, "e.conf:2:16: timeout 0 is out of range [1..600] (in 1/10 s)"},
		{"range with suffix", "resource r0 { disk { c-max-rate 5G; } " + hosts + "}",
			ErrInvalid, "e.conf:1:33: c-max-rate 5G is 5242880 KiB/s, out of range [250..4194304]"},
		{"unit", "resource r0 { disk { size 1T; } " + hosts + "}",
			ErrInvalid, "e.conf:1:27: size: '1T' is not a number (digits with an optional K, M, G or s suffix; there is no T)"},
		{"enum", "resource r0 { disk { fencing resource-onyl; } " + hosts + "}",
			ErrInvalid, "e.conf:1:30: fencing: unknown value 'resource-onyl', did you mean 'resource-only'?"},
		{"enum list", "resource r0 { net { on-congestion panic; } " + hosts + "}",
			ErrInvalid, "e.conf:1:35: on-congestion: unknown value 'panic' (one of: block, pull-ahead, disconnect)"},
		{"protocol", "resource r0 { protocol D; " + hosts + "}",
			ErrInvalid, "e.conf:1:24: unknown protocol 'D', should be one of A, B, C"},
		{"missing keywords", "resource r0 {\n on a { device minor 0; address 10.0.0.1:7788; }\n}",
			ErrInvalid, "e.conf:2:2: in resource r0, on a: 'disk' keyword missing\ne.conf:2:2: in resource r0, on a: 'meta-disk' keyword missing"},
		{"duplicate minor", "resource r0 {" + hosts + "}\nresource r1 { on a { device minor 0; disk /e; address 10.0.0.1:7789; meta-disk internal; } }",
			ErrInvalid, "e.conf:3:22: minor 0 used twice on host a (first used at e.conf:1:21)"},
		{"duplicate address", "resource r0 {" + hosts + "}\nresource r1 { on a { device minor 1; disk /e; address 10.0.0.2:7788; meta-disk internal; } }",
			ErrInvalid, "e.conf:3:55: address 10.0.0.2:7788 used twice (first used at e.conf:2:41)"},
		{"duplicate meta-disk index", "resource r0 {\n on a { device minor 0; disk /d; address 10.0.0.1:7788; meta-disk /md[0]; }\n}\nresource r1 {\n on a { device minor 1; disk /e; address 10.0.0.1:7789; meta-disk /md[0]; }\n}",
			ErrInvalid, "e.conf:5:9: meta-disk /md [0] used twice on host a (first used at e.conf:2:9)"},
		{"minor mismatch", "resource r0 { on a { device /dev/drbd1 minor 2; disk /d; address 10.0.0.1:7788; meta-disk internal; } }",
			ErrInvalid, "e.conf:1:22: the minor 2 does not match the device name /dev/drbd1; write 'device /dev/drbd2 minor 2;' or leave off the device name or the minor"},
		{"two sections for the node", "resource r0 { on a {device minor 0; disk /d; address 10.0.0.1:7788; meta-disk internal;}\n on x a {device minor 0; disk /d; address 10.0.0.2:7788; meta-disk internal;} }",
			ErrInvalid, "e.conf:2:2: second host section for a in resource r0 (first used at e.conf:1:15)"},
		{"volume sets differ", "resource r0 {\n on a { address 10.0.0.1:7788; volume 0 { device minor 0; disk /d; meta-disk internal; } volume 1 { device minor 1; disk /e; meta-disk internal; } }\n on b { address 10.0.0.2:7788; volume 0 { device minor 0; disk /d; meta-disk internal; } }\n}",
			ErrInvalid, "e.conf:2:97: in resource r0, on a: volume 1 not defined in on b"},
		{"stacked on nothing", "resource r1 { stacked-on-top-of r9 { device minor 9; address 10.0.0.9:7788; } }",
			ErrInvalid, "e.conf:1:15: in resource r1: referenced resource 'r9' not defined"},
		{"common with host", "common { on a { address 10.0.0.1:7788; } }",
			ErrInvalid, "e.conf:1:10: host sections are not allowed in the common section"},
		{"become-primary-on unknown", "resource r0 { startup { become-primary-on c; } " + hosts + "}",
			ErrInvalid, "e.conf:1:25: in resource r0: become-primary-on contains 'c', which is not named in the host sections"},
		{"ambiguous resync-after", "resource r0 { volume 0 { device minor 0; disk /d; meta-disk internal; } volume 1 { device minor 1; disk /e; meta-disk internal; } on a { address 10.0.0.1:7788; } }\nresource r1 { disk { resync-after r0; } on a { device minor 2; disk /f; address 10.0.0.1:7789; meta-disk internal; } }",
			ErrInvalid, "e.conf:2:35: in resource r1: resync-after 'r0' is ambiguous, that resource has several volumes (write r0/VOLUME)"},
		{"bad ipv6", "resource r0 { on a { device minor 0; disk /d; address ipv6 [1:2:3:4:5:6:7:8:9]:7788; meta-disk internal; } }",
			ErrInvalid, "e.conf:1:55: '1:2:3:4:5:6:7:8:9' is not a valid IPv6 address"},
		{"leading zeros", "resource r0 { on a { device minor 0; disk /d; address 010.0.0.1:7788; meta-disk internal; } }",
			ErrInvalid, "e.conf:1:55: '010.0.0.1' is not a valid IPv4 address (four decimal numbers 0-255, no leading zeros)"},
		{"duplicate volume", "resource r0 { on a { address 10.0.0.1:7788; volume 0 { device minor 0; disk /d; meta-disk internal; } volume 0 { device minor 1; disk /e; meta-disk internal; } } }",
			ErrInvalid, "e.conf:1:110: in resource r0, on a: volume 0 defined twice (the kernel refuses a second volume 0) (first used at e.conf:1:52)"},
		{"gdrbd directive scope", "resource r0 { net {\n # gdrbd: tls yes;\n } " + hosts + "}",
			ErrInvalid, "e.conf:2:10: gdrbd directives are not allowed inside net {}; put them at file level, in common, in a resource or in a host section"},
		{"gdrbd directive syntax", "# gdrbd: nbd-socket relative/path;\n",
			ErrSyntax, "e.conf:1:21: gdrbd setting nbd-socket: 'relative/path' is not an absolute path"},
		{"gdrbd directive semicolon", "# gdrbd: tls yes\n",
			ErrSyntax, "e.conf:1:17: gdrbd directive: expected ';' after 'tls yes'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("e.conf", []byte(c.src), fuzzOptions("a"))
			require.Error(t, err)
			require.Equal(t, c.want, err.Error())
			require.ErrorIs(t, err, c.kind)
			var l ErrorList
			require.True(t, errors.As(err, &l))
			require.NotEmpty(t, l)
		})
	}
}

// TestResourceLookupErrors covers Config.Resource and Select.
func TestResourceLookupErrors(t *testing.T) {
	t.Parallel()
	src := "resource r0 {\n" + hosts + "\n}\nresource r1 {\n on x { device minor 1; disk /d; address 10.0.0.3:7788; meta-disk internal; }\n on y z { device minor 1; disk /d; address 10.0.0.4:7788; meta-disk internal; }\n}"
	c, err := Parse("/etc/drbd.conf", []byte(src), fuzzOptions("a"))
	require.NoError(t, err)

	_, err = c.Resource("r9")
	require.ErrorIs(t, err, ErrNotDefined)
	require.EqualError(t, err, "resource 'r9' not defined in /etc/drbd.conf (defined: r0, r1)")
	var nd *NotDefinedError
	require.True(t, errors.As(err, &nd))
	require.Equal(t, []string{"r0", "r1"}, nd.Defined)

	_, err = c.Resource("r1")
	require.ErrorIs(t, err, ErrNotOnThisHost)
	require.EqualError(t, err, "/etc/drbd.conf:5:10: resource 'r1' has no 'on a' section for this node (its hosts: x, y, z)")

	r, v, err := c.Select("r0/0")
	require.NoError(t, err)
	require.Equal(t, "r0", r.Name)
	require.Equal(t, 0, v.Number)
	r, v, err = c.Select("minor-0")
	require.NoError(t, err)
	require.Equal(t, "r0", r.Name)
	require.Equal(t, "/dev/drbd0", v.Device)
	_, _, err = c.Select("r0/3")
	require.ErrorIs(t, err, ErrNotDefined)
	require.EqualError(t, err, "resource 'r0/3' not defined in /etc/drbd.conf (defined: r0/0)")
	require.Len(t, c.Local(), 1)
}

func TestSuggest(t *testing.T) {
	t.Parallel()
	words := []string{"resync-rate", "resync-after", "rate", "timeout"}
	require.Equal(t, "resync-rate", suggest("rsync-rate", words))
	require.Equal(t, "resync-rate", suggest("resnyc-rate", words)) // transposition
	require.Equal(t, "timeout", suggest("timeuot", words))
	require.Equal(t, "", suggest("completely-different", words))
	require.Equal(t, "", suggest("ab", words))
}
