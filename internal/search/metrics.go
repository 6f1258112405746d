package search

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/traceql"
)

// MetricsRequest is a TraceQL metrics query over [Start, End) in buckets of Step. An instant
// query is one bucket covering the whole range.
type MetricsRequest struct {
	Query      *traceql.Query
	Start, End time.Time
	Step       time.Duration
}

// Series is one output series of a metrics query.
type Series struct {
	// Labels are the by() values, and "p" for each quantile of quantile_over_time.
	Labels []Attribute
	// Samples are in time order, one per bucket that had spans; Value is per second for rate and
	// in seconds for durations.
	Samples []Sample
}

// Sample is one bucket's value.
type Sample struct {
	TimestampMs int64
	Value       float64
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
}

type bucketAcc struct {
	count    float64
	sum      float64
	min, max float64
	vals     []float64 // for quantiles
}

// QueryRange evaluates a metrics query: the spans left by the query's pipeline are counted or
// aggregated into buckets by their start time.
func (e *Engine) QueryRange(ctx context.Context, req MetricsRequest) (*MetricsResult, error) {
	q := req.Query
	if q == nil || !q.IsMetrics() {
		return nil, errors.New("search: not a metrics query: it must end in a metrics function such as rate()")
	}
	if !req.End.After(req.Start) {
		return nil, errors.New("search: end must be after start")
	}
	if q.Metrics.Func == traceql.MetricsCompare || len(q.MetricsStages) > 0 {
		return nil, fmt.Errorf("search: %s is not supported yet", q.Metrics.Func)
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
	type seriesAcc struct {
		labels  []label
		buckets []bucketAcc
	}
	series := map[string]*seriesAcc{}
	var order []string
	p := newPlan(q, req.Start.Add(-time.Hour), req.End)
	start, end := req.Start.UnixNano(), req.End.UnixNano()
	res := &MetricsResult{}
	err := e.scanAll(ctx, p, &res.Metrics, func(t *trace) {
		res.Metrics.InspectedTraces++
		res.Metrics.InspectedSpans += int64(len(t.spans))
		res.Metrics.InspectedBytes += t.bytes
		seen := map[int32]bool{}
		for _, ss := range evalPipeline(q, t) {
			for _, i := range ss.spans {
				s := &t.spans[i]
				if seen[i] || s.start < start || s.start >= end {
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
				var labels []label
				for _, by := range m.By {
					bv := evalField(by, t, s)
					key.WriteString(bv.text())
					key.WriteByte(0)
					labels = append(labels, label{key: by.String(), val: bv})
				}
				if m.Func == traceql.MetricsHistogramOverTime {
					// A series per power-of-two bucket, labelled with its upper bound, as
					// Grafana's heatmaps read TraceQL histograms.
					ub := histogramBucket(v)
					key.WriteString(strconv.FormatFloat(ub, 'g', -1, 64))
					key.WriteByte(0)
					labels = append(labels, label{key: "__bucket", val: value{k: kFloat, f: ub}})
				}
				sa := series[key.String()]
				if sa == nil {
					sa = &seriesAcc{labels: labels, buckets: make([]bucketAcc, n)}
					series[key.String()] = sa
					order = append(order, key.String())
				}
				b := &sa.buckets[int((s.start-start)/int64(step))]
				if b.count == 0 {
					b.min, b.max = v, v
				}
				b.count++
				b.sum += v
				b.min, b.max = min(b.min, v), max(b.max, v)
				if m.Func == traceql.MetricsQuantileOverTime {
					b.vals = append(b.vals, v)
				}
			}
		}
	}, func() (int64, bool) { return 0, false })
	if err != nil {
		return nil, err
	}
	slices.Sort(order)
	for _, k := range order {
		sa := series[k]
		var labels []Attribute
		for _, l := range sa.labels {
			if l.val.k != kNil {
				labels = append(labels, Attribute{Key: l.key, Value: exportValue(l.val)})
			}
		}
		outs := []Series{{Labels: labels}}
		if m.Func == traceql.MetricsQuantileOverTime {
			outs = outs[:0]
			for _, qt := range m.Quantiles {
				outs = append(outs, Series{Labels: append(slices.Clone(labels), Attribute{Key: "p", Value: Value{Type: "float", Float: qt}})})
			}
		}
		for bi, b := range sa.buckets {
			if b.count == 0 {
				continue
			}
			ts := (start + int64(bi)*int64(step)) / 1e6
			for oi := range outs {
				var v float64
				switch m.Func {
				case traceql.MetricsRate:
					v = b.count / step.Seconds()
				case traceql.MetricsCountOverTime, traceql.MetricsHistogramOverTime:
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
					v = quantile(b.vals, m.Quantiles[oi])
				default:
					return nil, fmt.Errorf("search: metrics function %s is not supported", m.Func)
				}
				outs[oi].Samples = append(outs[oi].Samples, Sample{TimestampMs: ts, Value: v})
			}
		}
		res.Series = append(res.Series, outs...)
	}
	return res, nil
}

// histogramBucket is the smallest power of two not below v (v > 0), the bucket bound
// histogram_over_time groups a value under.
func histogramBucket(v float64) float64 {
	if v <= 0 {
		return 0
	}
	return math.Pow(2, math.Ceil(math.Log2(v)))
}

// quantile is the q-quantile of vs by linear interpolation between closest ranks.
func quantile(vs []float64, q float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	slices.Sort(vs)
	pos := q * float64(len(vs)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(vs)-1)
	return vs[lo] + (vs[hi]-vs[lo])*(pos-float64(lo))
}
