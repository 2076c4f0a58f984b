package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// Table is one result table: a title, a header row and rows of cells,
// with notes printed under it. A plain value.
type Table struct {
	Title  string
	Header []string
	Rows   [][]string
	Notes  []string
}

// Add appends a row.
func (t *Table) Add(cells ...string) { t.Rows = append(t.Rows, cells) }

// Markdown writes the table as a GitHub markdown table, with the title as
// a heading and the notes as a list under it:
//
//	### Title
//
//	| h1 | h2 |
//	|---:|---:|
//	| a  | b  |
//
//	- note
func (t *Table) Markdown(w io.Writer) {
	widths := t.widths()
	fmt.Fprintf(w, "### %s\n\n", t.Title)
	row := func(cells []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, wd := range widths {
			c := ""
			if i < len(cells) {
				c = cells[i]
			}
			fmt.Fprintf(&b, " %-*s |", wd, c)
		}
		fmt.Fprintln(w, b.String())
	}
	row(t.Header)
	var b strings.Builder
	b.WriteString("|")
	for i, wd := range widths {
		if i == 0 {
			b.WriteString(":" + strings.Repeat("-", wd+1) + "|")
		} else {
			b.WriteString(strings.Repeat("-", wd+1) + ":|")
		}
	}
	fmt.Fprintln(w, b.String())
	for _, r := range t.Rows {
		row(r)
	}
	if len(t.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range t.Notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
	fmt.Fprintln(w)
}

func (t *Table) widths() []int {
	w := make([]int, len(t.Header))
	for i, h := range t.Header {
		w[i] = len(h)
	}
	for _, r := range t.Rows {
		for i, c := range r {
			if i < len(w) {
				w[i] = max(w[i], len([]rune(c)))
			}
		}
	}
	return w
}

// Median is the median of xs (the mean of the middle two for an even
// count), NaN for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// fmtNum prints v with a precision that suits its size ("-" for NaN).
func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "-"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// fmtMicros prints a duration given in seconds as µs.
func fmtMicros(sec float64) string {
	if math.IsNaN(sec) {
		return "-"
	}
	return fmtNum(sec * 1e6)
}

// fmtRatio prints a/b as "0.52x" ("-" when undefined).
func fmtRatio(a, b float64) string {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// fmtMiB prints bytes as MiB.
func fmtMiB(b float64) string {
	if math.IsNaN(b) {
		return "-"
	}
	return fmtNum(b / (1 << 20))
}

func seconds(d time.Duration) float64 { return d.Seconds() }
