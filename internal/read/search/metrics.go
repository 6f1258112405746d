package search

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/quantilesketch"
)

// MetricsRequest is a TraceQL metrics query over (Start, End] in steps of Step: the step
// (t−Step, t] is one sample stamped at t, as Tempo and Prometheus stamp a range at its end. An
// instant query is one step covering the whole range.
type MetricsRequest struct {
	Query      *traceql.Query
	Start, End time.Time
	Step       time.Duration
	// Exemplars is the most exemplars returned per series; 0 returns none.
	Exemplars int
	// MaxSeries caps the series of the answer; spans of further series are left out and the
	// answer is marked Truncated. 0 is no cap.
	MaxSeries int
}

// Series is one output series of a metrics query.
type Series struct {
	// Labels are the by() values ("nil" for spans without the value), "p" for each quantile of
	// quantile_over_time, or __name__ (the function) when there is nothing else.
	Labels []Attribute
	// Samples are in time order, one per step that had spans; Value is per second for rate and
	// in seconds for durations.
	Samples []Sample
	// Exemplars are spans behind the samples, spread over the range.
	Exemplars []Exemplar
}

// Sample is one step's value, stamped at the end of the step.
type Sample struct {
	TimestampMs int64
	Value       float64
}

// Exemplar is one span counted in a sample: where a graph links to a trace.
type Exemplar struct {
	TraceID     [16]byte
	SpanID      []byte
	TimestampMs int64 // the span's start
	Value       float64
	sampleMs    int64 // the sample it is counted in
}

// PromLabels renders the labels as Prometheus does, which is what Tempo puts in promLabels.
func (s Series) PromLabels() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, l := range s.Labels {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(l.Key)
		b.WriteByte('=')
		var v string
		switch l.Value.Type {
		case "int":
			v = strconv.FormatInt(l.Value.Int, 10)
		case "float":
			v = strconv.FormatFloat(l.Value.Float, 'g', -1, 64)
		case "bool":
			v = strconv.FormatBool(l.Value.Bool)
		default:
			v = l.Value.String
		}
		b.WriteString(strconv.Quote(v))
	}
	b.WriteByte('}')
	return b.String()
}

// MetricsResult is a metrics query's answer.
type MetricsResult struct {
	Series  []Series
	Metrics Metrics
	// Truncated says MaxSeries was reached: the answer lacks some series.
	Truncated bool
}

type bucketAcc struct {
	count    float64
	sum      float64
	min, max float64
	// quantiles holds the values of quantile_over_time in bounded memory (1% relative error),
	// not every value.
	quantiles *quantilesketch.Sketch
	ex        *Exemplar // the first span counted, when exemplars are asked for
}

type seriesAcc struct {
	labels  []label
	buckets []bucketAcc
	// group and total serve compare(): the series of one attribute, and its span count.
	group string
	total float64
}

// metricsRun accumulates the series of one query.
type metricsRun struct {
	fn         traceql.MetricsFunc
	start, end int64
	step       int64
	n          int
	exemplars  bool
	series     map[string]*seriesAcc
	order      []string
	maxSeries  int  // 0: no cap
	truncated  bool // a series past maxSeries was left out
}

// add counts value v of span s (started at ts) in the series labelled labels, keyed by key.
func (r *metricsRun) add(key string, labels func() []label, t *trace, s *span, v float64) {
	sa := r.series[key]
	if sa == nil && r.maxSeries > 0 && len(r.series) >= r.maxSeries {
		r.truncated = true
		return
	}
	if sa == nil {
		sa = &seriesAcc{labels: labels(), buckets: make([]bucketAcc, r.n)}
		r.series[key] = sa
		r.order = append(r.order, key)
	}
	sa.total++
	b := &sa.buckets[int((s.start-r.start-1)/r.step)]
	if b.count == 0 {
		b.min, b.max = v, v
	}
	b.count++
	b.sum += v
	b.min, b.max = min(b.min, v), max(b.max, v)
	if r.fn == traceql.MetricsQuantileOverTime {
		if b.quantiles == nil {
			b.quantiles = quantilesketch.New(0.01)
		}
		b.quantiles.Add(v)
	}
	if r.exemplars && b.ex == nil {
		b.ex = &Exemplar{TraceID: t.id, SpanID: slices.Clone(s.id), TimestampMs: s.start / 1e6, Value: v}
	}
}

// QueryRange evaluates a metrics query: the spans left by the query's pipeline are counted or
// aggregated into steps by their start time.
func (e *Engine) QueryRange(ctx context.Context, req MetricsRequest) (*MetricsResult, error) {
	q := req.Query
	if q == nil || !q.IsMetrics() {
		return nil, errors.New("search: not a metrics query: it must end in a metrics function such as rate()")
	}
	if !req.End.After(req.Start) {
		return nil, errors.New("search: end must be after start")
	}
	if q.Math != nil {
		return e.queryMath(ctx, req)
	}
	step := req.Step
	if step <= 0 {
		step = req.End.Sub(req.Start)
	}
	n := int((req.End.Sub(req.Start) + step - 1) / step)
	if n > 11000 {
		return nil, fmt.Errorf("search: %d buckets; use a larger step", n)
	}
	m := q.Metrics
	run := &metricsRun{fn: m.Func, start: req.Start.UnixNano(), end: req.End.UnixNano(), step: int64(step), n: n,
		exemplars: req.Exemplars > 0, series: map[string]*seriesAcc{}, maxSeries: req.MaxSeries}
	p := newPlan(q, req.Start.Add(-time.Hour), req.End)
	if m.Func == traceql.MetricsCompare {
		// compare() reports every attribute and the intrinsics it breaks down by.
		p.cols.AllSpanAttrs, p.cols.Kind, p.cols.Status = true, true, true
	}
	res := &MetricsResult{}
	if agg := aggregatable(req); agg != nil && !e.fullScan {
		// The blocks are taken once for both ways of reading them, so that a block merged
		// meanwhile is neither counted twice nor missed.
		blocks, release := e.src.AcquireBlocks()
		defer release()
		p.blocks = []*block.Reader{}
		for _, b := range blocks {
			ok, err := e.blockAggregates(ctx, b, agg, run)
			if block.SkipDamaged(ctx, err) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if ok {
				res.Metrics.TotalBlocks++
				p.perPlace = true
				continue
			}
			p.blocks = append(p.blocks, b)
		}
		ok, err := headAggregates(e.head(ctx), agg, run)
		if err != nil {
			return nil, err
		}
		if ok {
			p.skipHead, p.perPlace = true, true
		}
	}
	err := e.scanAll(ctx, p, &res.Metrics, func(t *trace) {
		res.Metrics.InspectedTraces++
		res.Metrics.InspectedSpans += int64(len(t.spans))
		res.Metrics.InspectedBytes += t.bytes
		sets := evalPipeline(q, t)
		if len(sets) == 0 {
			return
		}
		if m.Func == traceql.MetricsCompare {
			run.compare(m, t, sets)
			return
		}
		seen := map[int32]bool{}
		for _, ss := range sets {
			for _, i := range ss.spans {
				s := &t.spans[i]
				if seen[i] || s.start <= run.start || s.start > run.end {
					continue
				}
				seen[i] = true
				var v float64
				if m.Field != nil {
					fv := evalField(m.Field, t, s)
					f, ok := fv.number()
					if !ok {
						continue
					}
					if fv.k == kDuration {
						f /= 1e9
					}
					v = f
				}
				var key strings.Builder
				byVals := make([]value, len(m.By))
				for bi, by := range m.By {
					bv := evalField(by, t, s)
					byVals[bi] = bv
					key.WriteByte(byte(bv.k))
					key.WriteString(bv.text())
					key.WriteByte(0)
				}
				var ub float64
				if m.Func == traceql.MetricsHistogramOverTime {
					// A series per power-of-two bucket, labelled with its upper bound, as
					// Grafana's heatmaps read TraceQL histograms.
					ub = histogramBucket(v)
					key.WriteString(strconv.FormatFloat(ub, 'g', -1, 64))
					key.WriteByte(0)
				}
				run.add(key.String(), func() []label {
					labels := make([]label, 0, len(m.By)+1)
					for bi, by := range m.By {
						labels = append(labels, label{key: by.String(), val: byVals[bi]})
					}
					if m.Func == traceql.MetricsHistogramOverTime {
						labels = append(labels, label{key: "__bucket", val: value{k: kFloat, f: ub}})
					}
					return labels
				}, t, s, v)
			}
		}
	}, func() (int64, bool) { return 0, false })
	if err != nil {
		return nil, err
	}
	res.Truncated = run.truncated
	if m.Func == traceql.MetricsCompare {
		run.keepTopValues(cmp.Or(m.TopN, 10))
	}
	out, err := run.toSeries(m, req.Exemplars)
	if err != nil {
		return nil, err
	}
	res.Series = applyMetricsStages(out, q.MetricsStages)
	return res, nil
}

// series_ turns the accumulated steps into output series, in label order.
func (r *metricsRun) toSeries(m *traceql.MetricsAggregate, maxExemplars int) ([]Series, error) {
	slices.Sort(r.order)
	var out []Series
	for _, k := range r.order {
		sa := r.series[k]
		var labels []Attribute
		for _, l := range sa.labels {
			v := exportValue(l.val)
			if l.val.k == kNil {
				// The group of spans without the value, labelled as Tempo labels it.
				v = Value{Type: "string", String: "nil"}
			}
			labels = append(labels, Attribute{Key: l.key, Value: v})
		}
		outs := []Series{{Labels: labels}}
		if m.Func == traceql.MetricsQuantileOverTime {
			outs = outs[:0]
			for _, qt := range m.Quantiles {
				outs = append(outs, Series{Labels: append(slices.Clone(labels), Attribute{Key: "p", Value: Value{Type: "float", Float: qt}})})
			}
		}
		for oi := range outs {
			if len(outs[oi].Labels) == 0 {
				// A series with no labels is named by its function, as in Prometheus.
				outs[oi].Labels = []Attribute{{Key: "__name__", Value: Value{Type: "string", String: m.Func.String()}}}
			}
		}
		// Exemplar candidates per output series, one per step that has one.
		cands := make([][]Exemplar, len(outs))
		for bi, b := range sa.buckets {
			if b.count == 0 {
				continue
			}
			ts := (r.start + int64(bi+1)*r.step) / 1e6
			for oi := range outs {
				var v float64
				switch m.Func {
				case traceql.MetricsRate:
					v = b.count / (float64(r.step) / 1e9)
				case traceql.MetricsCountOverTime, traceql.MetricsHistogramOverTime, traceql.MetricsCompare:
					v = b.count
				case traceql.MetricsMinOverTime:
					v = b.min
				case traceql.MetricsMaxOverTime:
					v = b.max
				case traceql.MetricsAvgOverTime:
					v = b.sum / b.count
				case traceql.MetricsSumOverTime:
					v = b.sum
				case traceql.MetricsQuantileOverTime:
					v = b.quantiles.Quantile(m.Quantiles[oi])
				default:
					return nil, fmt.Errorf("search: metrics function %s is not supported", m.Func)
				}
				outs[oi].Samples = append(outs[oi].Samples, Sample{TimestampMs: ts, Value: v})
				if b.ex != nil {
					ex := *b.ex
					ex.sampleMs = ts
					if m.Field == nil {
						// Counting functions have no value per span: the exemplar sits on the line.
						ex.Value = v
					}
					cands[oi] = append(cands[oi], ex)
				}
			}
		}
		// Exemplars spread evenly over the steps.
		for oi, cs := range cands {
			pick := min(maxExemplars, len(cs))
			for j := range pick {
				outs[oi].Exemplars = append(outs[oi].Exemplars, cs[j*len(cs)/pick])
			}
		}
		out = append(out, outs...)
	}
	return out, nil
}

// compare counts, for every attribute value of the spans the pipeline left, the spans in the
// selection (matching compare()'s spanset, within its window if it has one) and the others
// (the baseline), with a total per attribute for each side, as Tempo's compare() reports them.
func (r *metricsRun) compare(m *traceql.MetricsAggregate, t *trace, sets []spanset) {
	var all []int32
	for _, ss := range sets {
		all = union(all, ss.spans)
	}
	inSel := map[int32]bool{}
	for _, i := range evalSpanset(m.Selection, t, all) {
		s := &t.spans[i]
		if m.CompareStart != 0 && (s.start < m.CompareStart || s.start > m.CompareEnd) {
			continue
		}
		inSel[i] = true
	}
	for _, i := range all {
		s := &t.spans[i]
		if s.start <= r.start || s.start > r.end {
			continue
		}
		side := "baseline"
		if inSel[i] {
			side = "selection"
		}
		compareValues(t, s, func(key string, v value) {
			group := side + "\x00" + key
			r.add(group+"\x00"+string(rune('a'+v.k))+v.text(), func() []label {
				return []label{{key: "__meta_type", val: value{k: kString, s: side}}, {key: key, val: v}}
			}, t, s, 1)
			r.series[group+"\x00"+string(rune('a'+v.k))+v.text()].group = group
			r.add(group, func() []label {
				return []label{{key: "__meta_type", val: value{k: kString, s: side + "_total"}}, {key: key}}
			}, t, s, 1)
		})
	}
}

// compareValues calls fn with every attribute value compare() reports for a span: its name,
// status and kind, and its resource and span attributes other than arrays.
func compareValues(t *trace, s *span, fn func(key string, v value)) {
	for _, in := range []traceql.Intrinsic{traceql.IntrinsicName, traceql.IntrinsicStatus, traceql.IntrinsicKind} {
		fn(in.String(), intrinsic(in, t, s))
	}
	if s.res != nil {
		for _, a := range s.res.attrs {
			if a.val.k != kArray && a.val.k != kNil {
				fn("resource."+a.key, a.val)
			}
		}
	}
	for _, a := range s.attrs {
		if a.val.k != kArray && a.val.k != kNil {
			fn("span."+a.key, a.val)
		}
	}
}

// keepTopValues keeps, of compare()'s series, the n values of each attribute and side with the
// most spans, and every total.
func (r *metricsRun) keepTopValues(n int) {
	byGroup := map[string][]string{}
	for _, k := range r.order {
		if g := r.series[k].group; g != "" {
			byGroup[g] = append(byGroup[g], k)
		}
	}
	for _, keys := range byGroup {
		slices.SortStableFunc(keys, func(a, b string) int {
			return cmp.Or(cmpFloat(r.series[b].total, r.series[a].total), strings.Compare(a, b))
		})
		for _, k := range keys[min(n, len(keys)):] {
			delete(r.series, k)
		}
	}
	r.order = slices.DeleteFunc(r.order, func(k string) bool { return r.series[k] == nil })
}

// applyMetricsStages applies thresholds and topk/bottomk to the series, in query order. A
// series left without samples is dropped, and so are exemplars whose step lost its sample.
func applyMetricsStages(series []Series, stages []traceql.MetricsStage) []Series {
	for _, st := range stages {
		switch st := st.(type) {
		case *traceql.MetricsFilter:
			want := value{k: kFloat, f: staticFloat(st.Value)}
			for i := range series {
				series[i].Samples = slices.DeleteFunc(series[i].Samples, func(s Sample) bool {
					return !compare(st.Op, value{k: kFloat, f: s.Value}, want, nil)
				})
			}
		case *traceql.TopK:
			// Per step, as Prometheus ranks: the K series with the largest (smallest) value.
			type entry struct {
				series int
				value  float64
			}
			bySt := map[int64][]entry{}
			for i, s := range series {
				for _, smp := range s.Samples {
					bySt[smp.TimestampMs] = append(bySt[smp.TimestampMs], entry{i, smp.Value})
				}
			}
			keep := map[[2]int64]bool{}
			for ts, es := range bySt {
				slices.SortStableFunc(es, func(a, b entry) int {
					c := cmpFloat(b.value, a.value)
					if st.Bottom {
						c = -c
					}
					return c
				})
				for _, e := range es[:min(st.K, len(es))] {
					keep[[2]int64{int64(e.series), ts}] = true
				}
			}
			for i := range series {
				series[i].Samples = slices.DeleteFunc(series[i].Samples, func(s Sample) bool {
					return !keep[[2]int64{int64(i), s.TimestampMs}]
				})
			}
		}
	}
	out := series[:0]
	for _, s := range series {
		if len(s.Samples) == 0 {
			continue
		}
		if len(s.Exemplars) > 0 && len(stages) > 0 {
			s.Exemplars = slices.DeleteFunc(s.Exemplars, func(ex Exemplar) bool {
				return !slices.ContainsFunc(s.Samples, func(smp Sample) bool { return smp.TimestampMs == ex.sampleMs })
			})
		}
		out = append(out, s)
	}
	return out
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// staticFloat is a threshold's value in the unit series carry: seconds for a duration.
func staticFloat(s traceql.Static) float64 {
	switch s.Type {
	case traceql.TypeInt:
		return float64(s.Int)
	case traceql.TypeDuration:
		return s.Dur.Seconds()
	}
	return s.Float
}

// histogramBucket is the smallest power of two not below v (v > 0), the bucket bound
// histogram_over_time groups a value under.
func histogramBucket(v float64) float64 {
	if v <= 0 {
		return 0
	}
	return math.Pow(2, math.Ceil(math.Log2(v)))
}
