package spanmetrics

import (
	"cmp"
	"slices"
	"time"
)

// OperationStats sums one operation of a service over every status code and dimension value.
// Counts are cumulative since the series started, ready for a caller to turn two readings into
// rates.
type OperationStats struct {
	SpanName string
	SpanKind string // as the span_kind label, e.g. SPAN_KIND_SERVER
	Calls    uint64
	Errors   uint64 // spans with STATUS_CODE_ERROR
	// Total is the summed duration of the calls.
	Total time.Duration
	// P50 and P95 are estimated from the histogram by linear interpolation within a bucket, as
	// Prometheus's histogram_quantile does, so their precision is that of the buckets.
	P50, P95 time.Duration
}

// Typical estimates the median duration of the spans named spanName of service, over every kind,
// status and dimension value. ok is false when no such span was counted.
func (m *Metrics) Typical(service, spanName string) (p50 time.Duration, ok bool) {
	counts := make([]uint64, len(m.bounds)+1)
	sum := make([]uint64, len(m.bounds)+1)
	var total uint64
	m.each(func(se *series) {
		if se == m.overflow || se.labels[0] != service || se.labels[1] != spanName {
			return
		}
		total += se.snapshot(counts)
		for i, c := range counts {
			sum[i] += c
		}
	})
	if total == 0 {
		return 0, false
	}
	return m.quantile(0.5, sum), true
}

// Operations lists the operations of service, ordered by span name and then kind.
func (m *Metrics) Operations(service string) []OperationStats {
	type opKey struct{ name, kind string }
	type acc struct {
		OperationStats
		buckets []uint64
	}
	ops := map[opKey]*acc{}
	counts := make([]uint64, len(m.bounds)+1)
	m.each(func(se *series) {
		if se == m.overflow || se.labels[0] != service {
			return
		}
		k := opKey{se.labels[1], se.labels[2]}
		a := ops[k]
		if a == nil {
			a = &acc{OperationStats: OperationStats{SpanName: k.name, SpanKind: k.kind}, buckets: make([]uint64, len(counts))}
			ops[k] = a
		}
		se.snapshot(counts)
		for i, c := range counts {
			a.buckets[i] += c
		}
		calls := se.calls.Load()
		a.Calls += calls
		if se.labels[3] == statusCodes[2] {
			a.Errors += calls
		}
		a.Total += time.Duration(se.nanosSum.Load())
	})
	out := make([]OperationStats, 0, len(ops))
	for _, a := range ops {
		a.P50 = m.quantile(0.5, a.buckets)
		a.P95 = m.quantile(0.95, a.buckets)
		out = append(out, a.OperationStats)
	}
	slices.SortFunc(out, func(a, b OperationStats) int {
		return cmp.Or(cmp.Compare(a.SpanName, b.SpanName), cmp.Compare(a.SpanKind, b.SpanKind))
	})
	return out
}

func (m *Metrics) quantile(q float64, counts []uint64) time.Duration {
	return time.Duration(Quantile(q, m.bounds, counts) * 1e9)
}

// Quantile estimates the q-quantile (0..1) of a histogram with the given upper bounds and
// per-bucket (not cumulative) counts, the last for +Inf. The lowest bucket is taken to start at
// zero, and a quantile falling in the +Inf bucket is reported as the highest finite bound since
// nothing better is known.
func Quantile(q float64, bounds []float64, counts []uint64) float64 {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 || len(bounds) == 0 {
		return 0
	}
	rank := q * float64(total)
	var below float64
	for i, c := range counts {
		if i == len(bounds) {
			break
		}
		if c > 0 && below+float64(c) >= rank {
			lo := 0.0
			if i > 0 {
				lo = bounds[i-1]
			}
			return lo + (bounds[i]-lo)*(rank-below)/float64(c)
		}
		below += float64(c)
	}
	return bounds[len(bounds)-1]
}

// CallsBySpanName is the cumulative count of spans by service and span name, over every kind,
// status and dimension value: what the head-sampling adapter turns into rates. The overflow
// series is left out, since its spans have no service or name to be counted under.
func (m *Metrics) CallsBySpanName() map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	m.each(func(se *series) {
		if se == m.overflow {
			return
		}
		ops := out[se.labels[0]]
		if ops == nil {
			ops = map[string]uint64{}
			out[se.labels[0]] = ops
		}
		ops[se.labels[1]] += se.calls.Load()
	})
	return out
}
