package quantilesketch

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func exact(sorted []float64, q float64) float64 { return sorted[int(q*float64(len(sorted)-1))] }

// Quantiles of skewed, wide-ranging data (log-normal durations, as spans have) stay within the
// promised relative error, and memory stays at a few hundred buckets however many values.
func TestRelativeAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 300_000
	vs := make([]float64, n)
	s := New(0.01)
	for i := range vs {
		vs[i] = math.Exp(rng.NormFloat64()*2) * 1e-3 // seconds, from microseconds to seconds
		s.Add(vs[i])
	}
	slices.Sort(vs)
	for _, q := range []float64{0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999} {
		want, got := exact(vs, q), s.Quantile(q)
		if rel := math.Abs(got-want) / want; rel > 0.01+1e-9 {
			t.Errorf("q%.3f: %g, exact %g: relative error %.4f over 1%%", q, got, want, rel)
		}
	}
	if s.Quantile(0) != slices.Min(vs) || s.Quantile(1) != slices.Max(vs) {
		t.Error("min and max not exact")
	}
	if b := s.Buckets(); b > 1600 {
		t.Errorf("%d buckets for %d values", b, n)
	}
	if s.Count() != n {
		t.Errorf("count %d", s.Count())
	}
}

func TestNegativeZeroAndEmpty(t *testing.T) {
	s := New(0.01)
	if !math.IsNaN(s.Quantile(0.5)) {
		t.Error("empty sketch has a median")
	}
	for _, v := range []float64{-100, -10, 0, 0, 10, 100, math.NaN()} {
		s.Add(v)
	}
	if s.Count() != 6 {
		t.Fatalf("count %d: NaN must be ignored", s.Count())
	}
	for q, want := range map[float64]float64{0: -100, 0.2: -10, 0.4: 0, 0.6: 0, 0.8: 10, 1: 100} {
		got := s.Quantile(q)
		if math.Abs(got-want) > math.Abs(want)*0.01+1e-12 {
			t.Errorf("q%.1f = %g, want %g", q, got, want)
		}
	}
}

// A sketch merged from parts, some of them stored and read back, answers exactly as one sketch
// of all the values: what pre-aggregated metrics rely on to equal a scan.
func TestMergeAndEncodingAreExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	whole := New(0.01)
	merged := New(0.01)
	for part := range 7 {
		p := New(0.01)
		for range 1000 * part {
			v := math.Exp(rng.NormFloat64()*2) * 1e-3
			if rng.IntN(50) == 0 {
				v = -v
			}
			if rng.IntN(50) == 0 {
				v = 0
			}
			p.Add(v)
			whole.Add(v)
		}
		back, rest, err := Decode(p.AppendBinary(nil), 0.01)
		if err != nil || len(rest) != 0 {
			t.Fatalf("part %d: decode: %v, %d bytes left", part, err, len(rest))
		}
		merged.Merge(back)
	}
	for _, q := range []float64{0, 0.01, 0.5, 0.9, 0.99, 1} {
		if got, want := merged.Quantile(q), whole.Quantile(q); got != want {
			t.Errorf("q%g: merged %g, whole %g", q, got, want)
		}
	}
	if merged.Count() != whole.Count() {
		t.Errorf("count %d, want %d", merged.Count(), whole.Count())
	}
	if _, _, err := Decode([]byte{5, 1}, 0.01); err == nil {
		t.Error("a truncated encoding decoded")
	}
}
