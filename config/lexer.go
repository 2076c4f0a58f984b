package config

import (
	"regexp"
	"strings"
)

// token is one lexical token. text is the value the parser uses (a double
// quoted string unescaped, anything else as written); raw is the text as
// written, for error messages.
type token struct {
	kind  tokKind
	group tokGroup
	rc    rangeCheck
	text  string
	raw   string
	pos   Position
	off   int // byte offset in the file
}

// directive is a `# gdrbd: ...` comment found by the lexer (see ext.go).
type directive struct {
	body string   // the text after "gdrbd:"
	pos  Position // of the first byte of body
}

// lexer splits a drbd.conf into tokens exactly as drbd-utils' flex scanner
// for 8.4 does: at every position the longest match among the scanner's
// rules wins and equal lengths go to the earlier rule. Only '\n' counts
// lines (flex's rule), so line numbers agree with drbdadm's messages.
//
// A lexer is used by one parser at a time; it is not safe for concurrent use.
type lexer struct {
	src       []byte
	file      string
	off       int
	line      int
	lineStart int
	dirs      []directive
}

func newLexer(file string, src []byte) *lexer {
	return &lexer{src: src, file: file, line: 1}
}

// The scanner's definitions, as Go regular expressions with leftmost-longest
// matching. STRING and the double quoted strings are matched by hand: the
// former is a plain character class, the latter counts bytes (flex does) and
// Go's regexp counts runes.
var (
	reIPv4    = longest(`^(?:[0-9]{1,3}\.){3}[0-9]{1,3}`)
	reIPv6    = longest(`^(?:(?:(?:[0-9a-fA-F]{1,4}:){0,5}[0-9a-fA-F]{1,4})?:[0-9a-fA-F]{0,4}:(?:[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4}){0,5})?(?:%[a-zA-Z0-9/._-]{1,128})?|::[fF]{4}:(?:[0-9]{1,3}\.){3}[0-9]{1,3})`)
	reNum     = longest(`^[0-9]{1,8}[MKGs]?`)
	reAfterSB = regexp.MustCompile(`^after-sb-[012]pri$`)
)

func longest(expr string) *regexp.Regexp {
	re := regexp.MustCompile(expr)
	re.Longest()
	return re
}

func isStringChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '/' || c == '.' || c == '_' || c == '-'
}

const (
	maxString   = 128 // STRING [a-zA-Z0-9/._-]{1,128}
	maxDQString = 255 // DQSTRING "(...){0,255}"
)

// dqUnits counts the units of a double quoted string body starting after
// the opening quote at i: each unit is a byte other than '"', '\\', '\n',
// or a backslash followed by a byte other than '\n'. It returns the number
// of units (at most limit) and the offset after them.
func (l *lexer) dqUnits(i, limit int) (int, int) {
	n := 0
	for n < limit && i < len(l.src) {
		c := l.src[i]
		switch {
		case c == '"' || c == '\n':
			return n, i
		case c == '\\':
			if i+1 >= len(l.src) || l.src[i+1] == '\n' {
				return n, i
			}
			i += 2
		default:
			i++
		}
		n++
	}
	return n, i
}

func (l *lexer) pos(off int) Position {
	return Position{File: l.file, Line: l.line, Col: off - l.lineStart + 1}
}

// next returns the next token; at the end of input it returns tkEOF forever.
func (l *lexer) next() token {
	for {
		if l.off >= len(l.src) {
			return token{kind: tkEOF, pos: l.pos(l.off)}
		}
		c := l.src[l.off]
		switch c {
		case '\n':
			l.off++
			l.line++
			l.lineStart = l.off
			continue
		case ' ', '\t', '\r':
			l.off++
			continue
		case '#':
			end := l.off
			for end < len(l.src) && l.src[end] != '\n' {
				end++
			}
			l.comment(l.off, end)
			l.off = end
			continue
		}
		return l.scan()
	}
}

// scan matches one token at l.off with flex's longest-match rule.
func (l *lexer) scan() token {
	start := l.off
	rest := l.src[start:]
	pos := l.pos(start)

	// The scanner's rules that can match here, in flex rule order; the
	// first of the longest matches wins.
	const (
		ruleOpChar = iota + 1
		ruleKeyword
		ruleIPv4
		ruleIPv6
		ruleNum
		ruleDQString
		ruleString
		ruleLongString
		ruleLongDQString
		ruleErrDQString
		ruleElse
	)
	bestRule, bestLen := 0, 0
	try := func(rule, n int) {
		if n > bestLen {
			bestRule, bestLen = rule, n
		}
	}

	if strings.IndexByte("{};[]:", rest[0]) >= 0 {
		try(ruleOpChar, 1)
	}
	run := 0 // capped: only "longer than maxString" matters
	for run < len(rest) && run <= maxString && isStringChar(rest[run]) {
		run++
	}
	var kw keyword
	if run > 0 && run <= maxString {
		w := string(rest[:run])
		if k, ok := keywords[w]; ok {
			kw = k
			try(ruleKeyword, run)
		} else if reAfterSB.MatchString(w) {
			kw = keyword{kind: tkNetOption}
			try(ruleKeyword, run)
		}
	}
	try(ruleIPv4, len(reIPv4.Find(rest)))
	try(ruleIPv6, len(reIPv6.Find(rest)))
	try(ruleNum, len(reNum.Find(rest)))
	dqKind, dqLen := l.matchDQ(start)
	if dqKind == tkString {
		try(ruleDQString, dqLen)
	}
	try(ruleString, min(run, maxString))
	if run > maxString {
		try(ruleLongString, maxString+1)
	}
	switch dqKind {
	case tkErrDQStringTooLong:
		try(ruleLongDQString, dqLen)
	case tkErrDQString:
		try(ruleErrDQString, dqLen)
	}
	try(ruleElse, 1)

	raw := string(rest[:bestLen])
	l.off += bestLen
	tok := token{text: raw, raw: raw, pos: pos, off: start}
	switch bestRule {
	case ruleOpChar:
		tok.kind = tkChar
	case ruleKeyword:
		tok.kind, tok.group, tok.rc = kw.kind, kw.group, kw.rc
	case ruleIPv4:
		tok.kind = tkIPAddr
	case ruleIPv6:
		tok.kind = tkIPAddr6
	case ruleNum:
		tok.kind = tkInteger
	case ruleDQString:
		tok.kind = tkString
		tok.text = unescape(raw)
	case ruleString:
		tok.kind = tkString
	case ruleLongString:
		tok.kind = tkErrStringTooLong
	case ruleLongDQString:
		tok.kind = tkErrDQStringTooLong
	case ruleErrDQString:
		tok.kind = tkErrDQString
		tok.raw = strings.TrimSuffix(raw, "\n")
	default:
		tok.kind = tkElse
	}
	return tok
}

// matchDQ matches the three double quoted string rules at off. It returns
// tkString and the length for a well-formed DQSTRING, tkErrDQStringTooLong
// or tkErrDQString for the error rules, or 0.
func (l *lexer) matchDQ(off int) (tokKind, int) {
	if l.src[off] != '"' {
		return 0, 0
	}
	n, end := l.dqUnits(off+1, maxDQString)
	if end < len(l.src) && l.src[end] == '"' {
		return tkString, end + 1 - off
	}
	if n == maxDQString && end < len(l.src) && l.src[end] != '\n' {
		// LONG_DQSTRING: 255 units and then any character but newline.
		return tkErrDQStringTooLong, end + 1 - off
	}
	if end < len(l.src) && (l.src[end] == '\n' || l.src[end] == '\\') {
		return tkErrDQString, end + 1 - off
	}
	return 0, 0
}

// unescape turns a double quoted string into its value the way drbd-utils
// does: quotes are dropped and a backslash makes the next byte literal.
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' {
			continue
		}
		if c == '\\' {
			i++
			if i >= len(s) {
				break
			}
			c = s[i]
		}
		b.WriteByte(c)
	}
	return b.String()
}

// comment records a `# gdrbd:` directive; other comments are dropped.
func (l *lexer) comment(start, end int) {
	text := string(l.src[start+1 : end])
	trimmed := strings.TrimLeft(text, " \t")
	if !strings.HasPrefix(trimmed, directivePrefix) {
		return
	}
	bodyOff := start + 1 + (len(text) - len(trimmed)) + len(directivePrefix)
	l.dirs = append(l.dirs, directive{
		body: string(l.src[bodyOff:end]),
		pos:  l.pos(bodyOff),
	})
}

// takeDirectives returns the directives seen since the last call.
func (l *lexer) takeDirectives() []directive {
	d := l.dirs
	l.dirs = nil
	return d
}
