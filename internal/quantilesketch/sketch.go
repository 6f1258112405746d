// Package quantilesketch estimates quantiles of a stream of values in bounded memory, with a
// bounded relative error: the DDSketch idea (Masson, Rim and Lee, VLDB 2019). Values fall into
// logarithmic buckets whose width grows with the value, so any quantile is answered within the
// relative accuracy however many values were added, and the number of buckets depends only on
// the range of the values (for durations between a nanosecond and a day at 1%, under 1,600),
// not on their count.
//
// TraceQL's quantile_over_time uses it so a metrics query over millions of spans holds a few
// kilobytes per series and step instead of every duration.
package quantilesketch

import (
	"math"
	"slices"
)

// Sketch is a quantile sketch. The zero value is not usable; call New.
type Sketch struct {
	gamma, logGamma float64
	pos, neg        map[int32]uint64 // bucket index → count, for positive and negated negative values
	zeros           uint64
	count           uint64
	min, max        float64
}

// minIndexable is the smallest magnitude given its own bucket; smaller ones count as zero.
const minIndexable = 1e-12

// New returns a sketch answering within relativeAccuracy (0.01 is 1%).
func New(relativeAccuracy float64) *Sketch {
	if relativeAccuracy <= 0 || relativeAccuracy >= 1 {
		relativeAccuracy = 0.01
	}
	g := (1 + relativeAccuracy) / (1 - relativeAccuracy)
	return &Sketch{gamma: g, logGamma: math.Log(g), pos: map[int32]uint64{}, neg: map[int32]uint64{}}
}

func (s *Sketch) index(v float64) int32 { return int32(math.Ceil(math.Log(v) / s.logGamma)) }

// value is the estimate for bucket i: the point of (γ^(i-1), γ^i] with equal relative error to
// both ends.
func (s *Sketch) value(i int32) float64 {
	return 2 * math.Pow(s.gamma, float64(i)) / (s.gamma + 1)
}

// Add adds one value. NaN is ignored.
func (s *Sketch) Add(v float64) {
	if math.IsNaN(v) {
		return
	}
	if s.count == 0 || v < s.min {
		s.min = v
	}
	if s.count == 0 || v > s.max {
		s.max = v
	}
	s.count++
	switch {
	case v > minIndexable:
		s.pos[s.index(v)]++
	case v < -minIndexable:
		s.neg[s.index(-v)]++
	default:
		s.zeros++
	}
}

// Count is how many values were added.
func (s *Sketch) Count() uint64 { return s.count }

// Buckets is how many buckets the sketch holds: its memory, in map entries.
func (s *Sketch) Buckets() int { return len(s.pos) + len(s.neg) }

// Quantile estimates the q-quantile (0 ≤ q ≤ 1) of the values added, NaN when there are none.
// The exact minimum and maximum are kept, so q = 0 and q = 1 are exact.
func (s *Sketch) Quantile(q float64) float64 {
	if s.count == 0 || math.IsNaN(q) {
		return math.NaN()
	}
	if q <= 0 {
		return s.min
	}
	if q >= 1 {
		return s.max
	}
	rank := uint64(q * float64(s.count-1))
	// Negative values first, largest magnitude first.
	var seen uint64
	if len(s.neg) > 0 {
		idx := keys(s.neg)
		for i := len(idx) - 1; i >= 0; i-- {
			seen += s.neg[idx[i]]
			if seen > rank {
				return clamp(-s.value(idx[i]), s.min, s.max)
			}
		}
	}
	seen += s.zeros
	if seen > rank {
		return 0
	}
	for _, i := range keys(s.pos) {
		seen += s.pos[i]
		if seen > rank {
			return clamp(s.value(i), s.min, s.max)
		}
	}
	return s.max
}

func keys(m map[int32]uint64) []int32 {
	ks := make([]int32, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func clamp(v, lo, hi float64) float64 { return min(max(v, lo), hi) }
