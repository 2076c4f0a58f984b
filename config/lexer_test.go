package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func lexAll(src string) []token {
	lx := newLexer("t", []byte(src))
	var out []token
	for {
		t := lx.next()
		out = append(out, t)
		if t.kind == tkEOF {
			return out
		}
	}
}

// TestLexer checks the flex longest-match rules the 8.4 grammar depends
// on: which class a word falls into decides where it is accepted.
func TestLexer(t *testing.T) {
	t.Parallel()
	type tk struct {
		kind tokKind
		text string
	}
	cases := []struct {
		src  string
		want []tk
	}{
		{"on", []tk{{tkOn, "on"}}},
		{"online", []tk{{tkString, "online"}}}, // longer STRING beats the keyword
		{"disk-barrier", []tk{{tkDiskFlag, "disk-barrier"}}},
		{"after-sb-1pri", []tk{{tkNetOption, "after-sb-1pri"}}},
		{"after-sb-3pri", []tk{{tkString, "after-sb-3pri"}}},
		{"200M", []tk{{tkInteger, "200M"}}},
		{"200m", []tk{{tkString, "200m"}}}, // NUM knows only M, K, G, s
		{"12345678", []tk{{tkInteger, "12345678"}}},
		{"123456789", []tk{{tkString, "123456789"}}}, // NUM is at most 8 digits
		{"10.0.0.1", []tk{{tkIPAddr, "10.0.0.1"}}},
		{"10.0.0.1x", []tk{{tkString, "10.0.0.1x"}}},
		{"10.0.0.1:7788", []tk{{tkIPAddr, "10.0.0.1"}, {tkChar, ":"}, {tkInteger, "7788"}}},
		{"[fd00::1]:7788", []tk{{tkChar, "["}, {tkIPAddr6, "fd00::1"}, {tkChar, "]"}, {tkChar, ":"}, {tkInteger, "7788"}}},
		{"::ffff:1.2.3.4", []tk{{tkIPAddr6, "::ffff:1.2.3.4"}}},
		{"fe80::1%eth0", []tk{{tkIPAddr6, "fe80::1%eth0"}}},
		{"2001:db8:0:0:0:0:0:1", []tk{{tkIPAddr6, "2001:db8:0:0:0:0:0:1"}}},
		{`"a b"`, []tk{{tkString, "a b"}}},
		{`"q\"uote\\d"`, []tk{{tkString, `q"uote\d`}}},
		{`""`, []tk{{tkString, ""}}},
		{"\"open\n", []tk{{tkErrDQString, "\"open\n"}}},
		{`"open`, []tk{{tkElse, `"`}, {tkString, "open"}}},
		{"a#comment\nb", []tk{{tkString, "a"}, {tkString, "b"}}},
		{"x\xc2\xa0y", []tk{{tkString, "x"}, {tkElse, "\xc2"}, {tkElse, "\xa0"}, {tkString, "y"}}},
		{"{};[]:", []tk{{tkChar, "{"}, {tkChar, "}"}, {tkChar, ";"}, {tkChar, "["}, {tkChar, "]"}, {tkChar, ":"}}},
		{strings.Repeat("a", 128), []tk{{tkString, strings.Repeat("a", 128)}}},
		{strings.Repeat("a", 129), []tk{{tkErrStringTooLong, strings.Repeat("a", 129)}}},
		{`"` + strings.Repeat("a", 255) + `"`, []tk{{tkString, strings.Repeat("a", 255)}}},
		{`"` + strings.Repeat("a", 256) + `"`, []tk{{tkErrDQStringTooLong, `"` + strings.Repeat("a", 256)}, {tkElse, `"`}}},
	}
	for _, c := range cases {
		toks := lexAll(c.src)
		var got []tk
		for _, x := range toks[:len(toks)-1] {
			got = append(got, tk{x.kind, x.text})
		}
		require.Equal(t, c.want, got, "%q", c.src)
	}
}

func TestLexerPositions(t *testing.T) {
	t.Parallel()
	toks := lexAll("global {\n\tminor-count 5;\r\n}  # x\n")
	var pos []string
	for _, x := range toks {
		pos = append(pos, x.pos.String())
	}
	require.Equal(t, []string{"t:1:1", "t:1:8", "t:2:2", "t:2:14", "t:2:15", "t:3:1", "t:4:1"}, pos)
}

func TestLexerDirectives(t *testing.T) {
	t.Parallel()
	lx := newLexer("t", []byte("a # gdrbd: tls yes;\n#gdrbd:x;\n# not gdrbd: y;\nb"))
	require.Equal(t, "a", lx.next().text)
	require.Equal(t, "b", lx.next().text)
	d := lx.takeDirectives()
	require.Len(t, d, 2)
	require.Equal(t, " tls yes;", d[0].body)
	require.Equal(t, "t:1:11", d[0].pos.String())
	require.Equal(t, "x;", d[1].body)
	require.Equal(t, "t:2:8", d[1].pos.String())
}

func TestUnescape(t *testing.T) {
	t.Parallel()
	require.Equal(t, `a"b\c`, unescape(`"a\"b\\c"`))
	require.Equal(t, "", unescape(`""`))
}
