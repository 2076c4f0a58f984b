package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/gdrbd/gdrbd/internal/tooltest"
	"github.com/stretchr/testify/require"
)

var (
	mutations    = flag.Int("config.mutations", 200, "random mutations of the corpus to check against drbdadm-84 (TestDifferentialMutations)")
	mutationSeed = flag.Uint64("config.seed", 1, "seed for TestDifferentialMutations")
)

// drbdadmAccepts runs `drbdadm-84 -c FILE -d dump all` as node and reports
// whether it accepts the file. -d skips only the check that the local
// address exists on this machine (verify_ips); everything else is what
// `drbdadm up` checks. The second result is false when drbdadm crashed.
func drbdadmAccepts(t testing.TB, adm, file, node string) (accepted bool, ok bool, stderr string) {
	t.Helper()
	cmd := exec.Command(adm, "-c", file, "-d", "dump", "all")
	cmd.Env = append(os.Environ(), "__DRBD_NODE__="+node)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, true, errb.String()
	case errors.As(err, &ee) && ee.ExitCode() > 0:
		return false, true, errb.String()
	case errors.As(err, &ee):
		return false, false, errb.String() // killed by a signal
	}
	t.Fatalf("running %s: %v", adm, err)
	return false, false, ""
}

// onlyBeyondParser reports whether every error is one of the checks DRBD
// 8.4 makes after drbdadm's parser (drbdsetup, kernel limits).
func onlyBeyondParser(err error) bool {
	var l ErrorList
	if !errors.As(err, &l) {
		return false
	}
	for _, e := range l {
		if !e.beyondParser {
			return false
		}
	}
	return true
}

// mutate changes one thing in a configuration at a token boundary, or
// splices in a line of another corpus file (donor).
func mutate(rng *rand.Rand, src, donor []byte) []byte {
	lx := newLexer("m", src)
	var toks []token
	for {
		t := lx.next()
		if t.kind == tkEOF {
			break
		}
		toks = append(toks, t)
	}
	if len(toks) == 0 {
		return src
	}
	kws := make([]string, 0, len(keywords))
	for k := range keywords {
		kws = append(kws, k)
	}
	sort.Strings(kws)
	pick := func() token { return toks[rng.IntN(len(toks))] }
	t := pick()
	end := t.off + len(t.raw)
	splice := func(off, n int, with string) []byte {
		out := append([]byte(nil), src[:off]...)
		out = append(out, with...)
		return append(out, src[off+n:]...)
	}
	numbers := []string{"0", "1", "7", "32", "67", "120", "121", "250", "300", "600", "601", "2048", "65535", "65536",
		"1048575", "1048576", "4194304", "4194305", "10M", "1G", "2s", "3k", "5T", "99999999", "-1", "0x10", "1.5"}
	switch rng.IntN(10) {
	case 9: // a line from another file
		lines := bytes.SplitAfter(src, []byte("\n"))
		dl := bytes.SplitAfter(donor, []byte("\n"))
		i := rng.IntN(len(lines))
		lines = append(lines[:i], append([][]byte{dl[rng.IntN(len(dl))]}, lines[i:]...)...)
		return bytes.Join(lines, nil)
	case 0: // delete a token
		return splice(t.off, len(t.raw), "")
	case 1: // repeat a token
		return splice(end, 0, " "+t.raw)
	case 2: // replace a token with another one from the file
		return splice(t.off, len(t.raw), pick().raw)
	case 3: // insert a keyword
		return splice(t.off, 0, kws[rng.IntN(len(kws))]+" ")
	case 4: // replace with a number
		return splice(t.off, len(t.raw), numbers[rng.IntN(len(numbers))])
	case 5: // swap with the next token
		for i, x := range toks {
			if x.off == t.off && i+1 < len(toks) {
				n := toks[i+1]
				out := splice(n.off, len(n.raw), t.raw)
				return append(append(append([]byte(nil), out[:t.off]...), n.raw...), out[t.off+len(t.raw):]...)
			}
		}
		return src
	case 6: // repeat a line
		lines := bytes.SplitAfter(src, []byte("\n"))
		i := rng.IntN(len(lines))
		lines = append(lines[:i+1], lines[i:]...)
		return bytes.Join(lines, nil)
	case 7: // a stray character
		chars := []string{"{", "}", ";", "\"", "[", "]", ":", "#", "\\", "\xc2\xa0", "x"}
		return splice(t.off, 0, chars[rng.IntN(len(chars))])
	default: // replace with a word some option takes
		words := []string{"yes", "no", "on", "internal", "detach", "pass_on", "C", "c", "disconnect", "both", "none",
			"/dev/drbd5", "drbd7", "127.0.0.1", "::1", "alpha", "beta", "r0", "r1", "r0/1", "discard-node-alpha"}
		return splice(t.off, len(t.raw), words[rng.IntN(len(words))])
	}
}

// TestDifferentialMutations mutates corpus files at random and requires
// gdrbd to accept exactly what drbdadm-84 accepts, except where gdrbd's
// error is one of the checks the rest of DRBD 8.4 makes after drbdadm's
// parser (marked beyondParser, see Error). Raise -config.mutations for a
// longer hunt.
func TestDifferentialMutations(t *testing.T) {
	t.Parallel()
	adm := tooltest.Require(t, "drbdadm-84")
	files, err := filepath.Glob("testdata/corpus/*.conf")
	require.NoError(t, err)
	type seedFile struct {
		src          []byte
		nodes        []string
		dumpDeviates bool
	}
	var seeds []seedFile
	for _, f := range files {
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		if bytes.Contains(src, []byte("include ")) {
			continue
		}
		d := readDirectives(t, f)
		seeds = append(seeds, seedFile{src: src, nodes: []string{d.node, "beta", "nobody", "10.10.5.2"}, dumpDeviates: d.dumpDeviates != ""})
	}
	dir := t.TempDir()
	var bothAccept, bothReject, beyond, dumps int
	defer func() {
		t.Logf("%d mutations: %d accepted by both (%d dumps compared), %d rejected by both, %d accepted by drbdadm's parser and rejected by gdrbd for a later DRBD 8.4 check",
			*mutations, bothAccept, dumps, bothReject, beyond)
	}()
	rng := rand.New(rand.NewPCG(*mutationSeed, 0x9e3779b97f4a7c15))
	for i := range *mutations {
		s := seeds[rng.IntN(len(seeds))]
		src := s.src
		for range 1 + rng.IntN(2) {
			src = mutate(rng, src, seeds[rng.IntN(len(seeds))].src)
		}
		node := s.nodes[rng.IntN(len(s.nodes))]
		file := filepath.Join(dir, fmt.Sprintf("m%d.conf", i))
		require.NoError(t, os.WriteFile(file, src, 0o644))
		admOK, ran, admErr := drbdadmAccepts(t, adm, file, node)
		if !ran {
			continue // drbdadm crashed (e.g. dumping a host section without address)
		}
		c, gErr := Parse(file, src, Options{Node: node})
		switch {
		case admOK && gErr == nil:
			bothAccept++
			if s.dumpDeviates {
				break
			}
			// Same dump text (when drbdadm can dump without -d, which
			// needs disable-ip-verification) and the same values passed
			// to drbdsetup.
			if bytes.Contains(src, []byte("disable-ip-verification")) {
				cmd := exec.Command(adm, "-c", file, "dump", "all")
				cmd.Env = append(os.Environ(), "__DRBD_NODE__="+node)
				if out, err := cmd.Output(); err == nil {
					var dump bytes.Buffer
					require.NoError(t, c.WriteDump(&dump, nil))
					requireSameText(t, normalizeDump(string(out)), normalizeDump(dump.String()), "mutation %d (node %s):\n%s", i, node, src)
					dumps++
				}
			}
			if len(c.Local()) > 0 {
				checkUp(t, c, runDrbdadm(t, adm, node, "-c", file, "-d", "up", "all"))
			}
		case !admOK && gErr != nil:
			bothReject++
		case admOK && gErr != nil && onlyBeyondParser(gErr):
			beyond++
		case admOK && gErr != nil:
			t.Errorf("mutation %d (node %s): drbdadm-84 accepts, gdrbd rejects:\n%s\n--- gdrbd:\n%v", i, node, src, gErr)
		case !admOK && gErr == nil:
			t.Errorf("mutation %d (node %s): drbdadm-84 rejects, gdrbd accepts:\n%s\n--- drbdadm:\n%s", i, node, src, admErr)
		}
	}
}
