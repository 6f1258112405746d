package analyze

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math"
	"math/bits"
	"slices"
	"strings"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// hllPrecision gives 2^10 one-byte registers per series: 1 KiB, with a
// standard error of about 3% (1.04/sqrt(1024)), and exact-looking counts in
// the hundreds thanks to linear counting.
const hllPrecision = 10

const hllRegisters = 1 << hllPrecision

// MaxCardinalitySeries bounds the (service, span name, key) series a
// CardinalityTracker keeps, so its memory is fixed (about 1 KiB each)
// whatever it is fed; series beyond it are counted in Dropped.
const MaxCardinalitySeries = 4096

type seriesKey struct{ service, name, key string }

type series struct {
	regs         [hllRegisters]uint8
	spans        int
	traceID, sID string // first span seen, as an example
}

// CardinalityTracker estimates, over a window of traces, how many distinct
// values each attribute key takes per operation, to find keys with too
// many (free text where a category was meant). It is not safe for
// concurrent use.
type CardinalityTracker struct {
	cfg     LintConfig
	series  map[seriesKey]*series
	Dropped int // series not tracked because MaxCardinalitySeries was reached
}

// NewCardinalityTracker returns an empty tracker using cfg.Cardinality and
// cfg.CardinalityIgnore.
func NewCardinalityTracker(cfg LintConfig) *CardinalityTracker {
	return &CardinalityTracker{cfg: cfg.withDefaults(), series: map[seriesKey]*series{}}
}

// Observe adds the span attributes of td to the window.
func (c *CardinalityTracker) Observe(td *tracepb.TracesData) {
	for _, t := range Trees(td) {
		for _, s := range t.Spans {
			for _, kv := range s.Raw.GetAttributes() {
				if c.cfg.CardinalityIgnore.MatchString(kv.GetKey()) {
					continue
				}
				k := seriesKey{s.Service, s.Name, kv.GetKey()}
				sr, ok := c.series[k]
				if !ok {
					if len(c.series) >= MaxCardinalitySeries {
						c.Dropped++
						continue
					}
					sr = &series{traceID: s.TraceID, sID: s.ID}
					c.series[k] = sr
				}
				sr.spans++
				sr.add(valueString(kv.GetValue()))
			}
		}
	}
}

// Reset empties the window.
func (c *CardinalityTracker) Reset() {
	c.series = map[seriesKey]*series{}
	c.Dropped = 0
}

// Distinct estimates the distinct values of key on span name in service.
func (c *CardinalityTracker) Distinct(service, name, key string) int {
	sr, ok := c.series[seriesKey{service, name, key}]
	if !ok {
		return 0
	}
	return sr.estimate()
}

// Findings reports the keys with more than cfg.Cardinality distinct values
// in the window, one finding per (service, span name, key), with the first
// span seen as the example.
func (c *CardinalityTracker) Findings() []Finding {
	keys := make([]seriesKey, 0, len(c.series))
	for k := range c.series {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b seriesKey) int {
		return cmp.Or(strings.Compare(a.service, b.service), strings.Compare(a.name, b.name), strings.Compare(a.key, b.key))
	})
	var out []Finding
	for _, k := range keys {
		sr := c.series[k]
		n := sr.estimate()
		if n <= c.cfg.Cardinality {
			continue
		}
		out = append(out, Finding{
			Rule: RuleHighCardinality, Severity: SeverityInfo, Service: k.service,
			Message: fmt.Sprintf("attribute %q on %q has about %d distinct values in %d spans (threshold %d)",
				k.key, k.name, n, sr.spans, c.cfg.Cardinality),
			Fix: fixCardinality, TraceID: sr.traceID, SpanIDs: []string{sr.sID}, Count: n,
		})
	}
	return out
}

func (s *series) add(v string) {
	h := fnv.New64a()
	h.Write([]byte(v))
	x := mix64(h.Sum64())
	idx := x >> (64 - hllPrecision)
	// The position of the first 1 bit in the remaining bits; the sentinel
	// bit bounds it when they are all zero.
	rank := uint8(bits.LeadingZeros64(x<<hllPrecision|1<<(hllPrecision-1)) + 1)
	if rank > s.regs[idx] {
		s.regs[idx] = rank
	}
}

// mix64 spreads FNV's weak low-entropy bits over the whole word (the
// splitmix64 finaliser), which HyperLogLog's register choice relies on.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func (s *series) estimate() int {
	m := float64(hllRegisters)
	sum, zeros := 0.0, 0
	for _, r := range s.regs {
		sum += math.Ldexp(1, -int(r))
		if r == 0 {
			zeros++
		}
	}
	e := 0.7213 / (1 + 1.079/m) * m * m / sum
	// Small counts: linear counting is far more accurate there.
	if e <= 2.5*m && zeros > 0 {
		e = m * math.Log(m/float64(zeros))
	}
	return int(math.Round(e))
}
