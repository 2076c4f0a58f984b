package bench

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func isNaN(v float64) bool { return math.IsNaN(v) }

func TestMedian(t *testing.T) {
	t.Parallel()
	require.True(t, isNaN(Median(nil)))
	require.Equal(t, 3.0, Median([]float64{5, 1, 3}))
	require.Equal(t, 2.5, Median([]float64{4, 1, 3, 2}))
	xs := []float64{3, 1, 2}
	Median(xs)
	require.Equal(t, []float64{3, 1, 2}, xs, "the input is not reordered")
}

func TestTableMarkdown(t *testing.T) {
	t.Parallel()
	tb := Table{Title: "T", Header: []string{"target", "IOPS"}, Notes: []string{"a note"}}
	tb.Add("gdrbd", "4747")
	tb.Add("loop device", "62357")
	var b strings.Builder
	tb.Markdown(&b)
	require.Equal(t, "### T\n\n"+
		"| target      | IOPS  |\n"+
		"|:------------|------:|\n"+
		"| gdrbd       | 4747  |\n"+
		"| loop device | 62357 |\n"+
		"\n- a note\n\n", b.String())
}

func TestFormats(t *testing.T) {
	t.Parallel()
	require.Equal(t, "-", fmtNum(math.NaN()))
	require.Equal(t, "4747", fmtNum(4747.4))
	require.Equal(t, "40.1", fmtNum(40.12))
	require.Equal(t, "0.75", fmtNum(0.754))
	require.Equal(t, "0.50x", fmtRatio(1, 2))
	require.Equal(t, "-", fmtRatio(1, 0))
	require.Equal(t, "150", fmtMicros(150e-6))
	require.Equal(t, "16.0", fmtMiB(16<<20))
}
