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
	"encoding/binary"
	"errors"
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

// Merge adds every value of o to s, as if each had been added to s. Both must have been made
// with the same accuracy; bucket counts add exactly, so merging is lossless and the order of
// merges does not change any answer.
func (s *Sketch) Merge(o *Sketch) {
	if o == nil || o.count == 0 {
		return
	}
	if s.count == 0 || o.min < s.min {
		s.min = o.min
	}
	if s.count == 0 || o.max > s.max {
		s.max = o.max
	}
	s.count += o.count
	s.zeros += o.zeros
	for i, n := range o.pos {
		s.pos[i] += n
	}
	for i, n := range o.neg {
		s.neg[i] += n
	}
}

// AppendBinary appends the sketch's state (not its accuracy, which the reader supplies) to b:
// what a stored pre-aggregate keeps so that quantiles merged from it equal quantiles of the
// values themselves.
func (s *Sketch) AppendBinary(b []byte) []byte {
	b = binary.AppendUvarint(b, s.count)
	if s.count == 0 {
		return b
	}
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(s.min))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(s.max))
	b = binary.AppendUvarint(b, s.zeros)
	for _, m := range []map[int32]uint64{s.pos, s.neg} {
		b = binary.AppendUvarint(b, uint64(len(m)))
		prev := int64(0)
		for _, i := range keys(m) {
			b = binary.AppendVarint(b, int64(i)-prev)
			b = binary.AppendUvarint(b, m[i])
			prev = int64(i)
		}
	}
	return b
}

var errCorrupt = errors.New("quantilesketch: corrupt encoding")

// Decode reads a sketch written by AppendBinary from b, made with relativeAccuracy, and
// returns the rest of b.
func Decode(b []byte, relativeAccuracy float64) (*Sketch, []byte, error) {
	s := New(relativeAccuracy)
	uv := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			b = nil
			return 0
		}
		b = b[n:]
		return v
	}
	var err error
	s.count = uv()
	if s.count == 0 {
		return s, b, nil
	}
	if len(b) < 16 {
		return nil, nil, errCorrupt
	}
	s.min = math.Float64frombits(binary.LittleEndian.Uint64(b))
	s.max = math.Float64frombits(binary.LittleEndian.Uint64(b[8:]))
	b = b[16:]
	s.zeros = uv()
	total := s.zeros
	for _, m := range []map[int32]uint64{s.pos, s.neg} {
		n := uv()
		if n > uint64(len(b)) {
			return nil, nil, errCorrupt
		}
		prev := int64(0)
		for range n {
			d, k := binary.Varint(b)
			if k <= 0 {
				return nil, nil, errCorrupt
			}
			b = b[k:]
			prev += d
			c := uv()
			m[int32(prev)] = c
			total += c
		}
	}
	if b == nil || total != s.count {
		err = errCorrupt
	}
	if err != nil {
		return nil, nil, err
	}
	return s, b, nil
}
