package search

import (
	"context"
	"fmt"
	"strings"

	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
	"github.com/ariadne-tracing/ariadne/internal/storage/quantilesketch"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// TraceQL metrics from pre-aggregates. A block's index (block.Index) and the head's
// (head.Aggregates) count spans per (resource, name, status, kind) and time bucket as they are
// written. A query whose filter and by() read only those fields, such as
//
//	{ } | rate() by (name)
//	{ resource.service.name = "api" && status = error } | quantile_over_time(duration, .9) by (name)
//
// is the same for every span of one such combination, so it is evaluated once per combination
// and the buckets are added up, without reading a span. Steps must be made of whole buckets
// (start, end and step multiples of the bucket width, 1 s unless a big compacted block widened
// it); a block or head whose buckets do not fit is scanned as before.
//
// One difference from scanning, by design: each place (head, block) counts the spans it holds,
// so a trace split across places is not merged first. For span counts that changes nothing but
// the treatment of a span stored twice in two places (a sender's retry across a cut), which a
// merged trace counts once; and spans of a trace that began over an hour before the range, which
// the scan does not look for, are counted.

// aggQuery is a metrics query the aggregates can answer.
type aggQuery struct {
	q      *traceql.Query
	m      *traceql.MetricsAggregate
	filter traceql.SpansetExpr
	// start, end and step in nanoseconds.
	start, end, step int64
}

// aggregatable returns how to answer req from aggregates, or nil when it needs spans.
func aggregatable(req MetricsRequest) *aggQuery {
	q, m := req.Query, req.Query.Metrics
	if req.Exemplars > 0 || len(q.Stages) != 1 || m.Selection != nil {
		return nil
	}
	f, ok := q.Stages[0].(*traceql.SpansetFilter)
	if !ok {
		return nil
	}
	switch m.Func {
	case traceql.MetricsRate, traceql.MetricsCountOverTime:
		if m.Field != nil {
			return nil
		}
	case traceql.MetricsQuantileOverTime, traceql.MetricsMinOverTime, traceql.MetricsMaxOverTime,
		traceql.MetricsAvgOverTime, traceql.MetricsSumOverTime:
		if m.Field != traceql.FieldExpr(traceql.IntrinsicDuration) {
			return nil
		}
	default:
		return nil
	}
	for _, by := range m.By {
		if !aggField(by) {
			return nil
		}
	}
	cols := (&traceql.Query{Stages: q.Stages}).Columns()
	for _, in := range cols.Intrinsics {
		if !aggField(in) {
			return nil
		}
	}
	for _, a := range cols.Attributes {
		if !aggField(a) {
			return nil
		}
	}
	step := req.Step
	if step <= 0 {
		step = req.End.Sub(req.Start)
	}
	return &aggQuery{q: q, m: m, filter: f, start: req.Start.UnixNano(), end: req.End.UnixNano(), step: int64(step)}
}

// aggField reports whether a field is the same for every span of an aggregate's combination.
func aggField(f traceql.FieldExpr) bool {
	switch f := f.(type) {
	case traceql.Intrinsic:
		return f == traceql.IntrinsicName || f == traceql.IntrinsicStatus || f == traceql.IntrinsicKind
	case traceql.Attribute:
		return f.Scope == traceql.ScopeResource
	}
	return false
}

// fits reports whether steps are made of whole buckets of width ns.
func (a *aggQuery) fits(width int64) bool {
	return width > 0 && a.start%width == 0 && a.end%width == 0 && a.step%width == 0
}

// aggSeries is what one combination contributes to: its series key and labels, or ok=false
// when the filter leaves it out.
type aggSeries struct {
	ok     bool
	key    string
	labels func() []label
}

// seriesOf evaluates the filter and by() on a span of the combination.
func (a *aggQuery) seriesOf(res *resource, name string, status, kind int32) aggSeries {
	t := &trace{spans: []span{{parent: -1, name: name, status: status, kind: kind, res: res}}}
	if len(evalSpanset(a.filter, t, []int32{0})) == 0 {
		return aggSeries{}
	}
	s := &t.spans[0]
	var key strings.Builder
	byVals := make([]value, len(a.m.By))
	for bi, by := range a.m.By {
		bv := evalField(by, t, s)
		byVals[bi] = bv
		key.WriteByte(byte(bv.k))
		key.WriteString(bv.text())
		key.WriteByte(0)
	}
	return aggSeries{ok: true, key: key.String(), labels: func() []label {
		labels := make([]label, 0, len(a.m.By))
		for bi, by := range a.m.By {
			labels = append(labels, label{key: by.String(), val: byVals[bi]})
		}
		return labels
	}}
}

// aggBucket is one bucket's spans of one combination, from a block or the head.
type aggBucket struct {
	// from, to: the bucket is (from, to] in nanoseconds.
	from, to int64
	count    uint64
	sum      float64
	min, max float64
	sketch   func() (*quantilesketch.Sketch, error) // nil when there is none
}

// addBucket adds a bucket to the series key, if it lies inside the range.
func (r *metricsRun) addBucket(key string, labels func() []label, b aggBucket) error {
	if b.count == 0 || b.from < r.start || b.to > r.end {
		return nil
	}
	sa := r.series[key]
	if sa == nil && r.maxSeries > 0 && len(r.series) >= r.maxSeries {
		r.truncated = true
		return nil
	}
	if sa == nil {
		sa = &seriesAcc{labels: labels(), buckets: make([]bucketAcc, r.n)}
		r.series[key] = sa
		r.order = append(r.order, key)
	}
	sa.total += float64(b.count)
	acc := &sa.buckets[int((b.from-r.start)/r.step)]
	if acc.count == 0 {
		acc.min, acc.max = b.min, b.max
	}
	acc.count += float64(b.count)
	acc.sum += b.sum
	acc.min, acc.max = min(acc.min, b.min), max(acc.max, b.max)
	if r.fn == traceql.MetricsQuantileOverTime {
		if b.sketch == nil {
			return fmt.Errorf("search: aggregate without a sketch")
		}
		sk, err := b.sketch()
		if err != nil {
			return err
		}
		if acc.quantiles == nil {
			acc.quantiles = quantilesketch.New(block.SketchAccuracy)
		}
		acc.quantiles.Merge(sk)
	}
	return nil
}

// blockAggregates adds a block's aggregates to run; false when the block cannot answer (no
// index, a damaged one, or buckets that do not fit the steps), and it must be scanned.
func (e *Engine) blockAggregates(ctx context.Context, b *block.Reader, a *aggQuery, run *metricsRun) (bool, error) {
	meta := b.Meta()
	if meta.Traces == 0 || meta.MaxEnd <= a.start || meta.MinStart > a.end {
		return true, nil // no span of it starts in the range
	}
	idx, err := b.Index(ctx)
	if err != nil || idx == nil || !a.fits(idx.Width) {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return false, nil
	}
	res, err := e.groups.get(b)
	if err != nil {
		return false, fmt.Errorf("search: %w", err)
	}
	series := make([]aggSeries, len(idx.Combos))
	for i, c := range idx.Combos {
		if c.Group < 0 || int(c.Group) >= len(res) {
			return false, nil
		}
		series[i] = a.seriesOf(res[c.Group], c.Name, c.Status, c.Kind)
	}
	for i := range idx.Buckets {
		bk := &idx.Buckets[i]
		s := series[bk.Combo]
		if !s.ok {
			continue
		}
		err := run.addBucket(s.key, s.labels, aggBucket{from: bk.Bucket * idx.Width, to: (bk.Bucket + 1) * idx.Width,
			count: bk.Count, sum: bk.Sum, min: bk.Min, max: bk.Max, sketch: bk.Sketch})
		if err != nil {
			return false, fmt.Errorf("search: block %s: %w", meta.ID, err)
		}
	}
	return true, nil
}

// headAggregates adds the head's aggregates to run; false when they cannot answer (minimum,
// maximum and quantiles, which the head cannot keep as it lets traces go; buckets that do not
// fit; or aggregates the head reports incomplete), and the head must be scanned.
func headAggregates(h *head.Head, a *aggQuery, run *metricsRun) (bool, error) {
	switch a.m.Func {
	case traceql.MetricsRate, traceql.MetricsCountOverTime, traceql.MetricsAvgOverTime, traceql.MetricsSumOverTime:
	default:
		return false, nil
	}
	if !a.fits(head.AggBucketWidth) {
		return false, nil
	}
	type combo struct {
		g            *otlpwire.Group
		name         string
		status, kind int32
	}
	var cells []head.AggCell
	complete := h.Aggregates(func(c *head.AggCell) {
		if from := c.Bucket * head.AggBucketWidth; from >= a.start && from+head.AggBucketWidth <= a.end {
			cells = append(cells, *c)
		}
	})
	if !complete {
		return false, nil
	}
	resources := map[*otlpwire.Group]*resource{}
	series := map[combo]aggSeries{}
	for i := range cells {
		c := &cells[i]
		k := combo{c.Group, c.Name, c.Status, c.Kind}
		s, ok := series[k]
		if !ok {
			res, ok := resources[c.Group]
			if !ok {
				var err error
				if res, err = decodeResource(c.Group.Resource, c.Group.Scope); err != nil {
					return false, fmt.Errorf("search: head: %w", err)
				}
				resources[c.Group] = res
			}
			s = a.seriesOf(res, c.Name, c.Status, c.Kind)
			series[k] = s
		}
		if !s.ok {
			continue
		}
		from := c.Bucket * head.AggBucketWidth
		if err := run.addBucket(s.key, s.labels, aggBucket{from: from, to: from + head.AggBucketWidth,
			count: uint64(c.Count), sum: float64(c.DurationSum) / 1e9}); err != nil {
			return false, err
		}
	}
	return true, nil
}
