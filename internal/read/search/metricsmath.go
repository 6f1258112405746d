package search

import (
	"context"
	"math"
	"slices"

	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
)

// Metrics arithmetic ("({ } | rate()) / ({ } | count_over_time())", "({ } | rate()) * 100")
// runs each metrics query on its own over the same range and step, then combines their
// series, as Tempo does:
//   - two queries' series pair by their labels (__name__ aside); a series without labels
//     pairs with every series of the other side, so "total / by-name" divides each name;
//   - a sample missing on one side of a pair counts as 0, and a step whose divisor is 0 has no
//     sample (Prometheus would write NaN, which JSON cannot carry);
//   - a number applies to every sample;
//   - a result series without labels is named "(a op b)" from its operands' names.
// Thresholds and topk/bottomk after the arithmetic then apply to its result.

// mathValue is an operand's value: series, or a number.
type mathValue struct {
	series []Series
	num    float64
	isNum  bool
	name   string
}

func (e *Engine) queryMath(ctx context.Context, req MetricsRequest) (*MetricsResult, error) {
	res := &MetricsResult{}
	v, err := e.mathOperand(ctx, req, req.Query.Math, res)
	if err != nil {
		return nil, err
	}
	res.Series = applyMetricsStages(v.series, req.Query.MetricsStages)
	return res, nil
}

func (e *Engine) mathOperand(ctx context.Context, req MetricsRequest, o traceql.MetricsOperand, res *MetricsResult) (mathValue, error) {
	switch o := o.(type) {
	case traceql.MetricsNumber:
		return mathValue{num: float64(o), isNum: true, name: o.String()}, nil
	case *traceql.Query:
		sub := req
		q := *o
		q.Hints = req.Query.Hints // with(...) is written once, after the arithmetic
		sub.Query = &q
		r, err := e.QueryRange(ctx, sub)
		if err != nil {
			return mathValue{}, err
		}
		res.Metrics = addSearchMetrics(res.Metrics, r.Metrics)
		res.Truncated = res.Truncated || r.Truncated
		return mathValue{series: r.Series, name: o.Metrics.Func.String()}, nil
	case *traceql.MetricsMath:
		l, err := e.mathOperand(ctx, req, o.LHS, res)
		if err != nil {
			return mathValue{}, err
		}
		r, err := e.mathOperand(ctx, req, o.RHS, res)
		if err != nil {
			return mathValue{}, err
		}
		return combine(o.Op, l, r), nil
	}
	return mathValue{}, nil
}

func addSearchMetrics(a, b Metrics) Metrics {
	a.InspectedTraces += b.InspectedTraces
	a.InspectedSpans += b.InspectedSpans
	a.InspectedBytes += b.InspectedBytes
	a.TotalBlocks += b.TotalBlocks
	a.SkippedBlocks += b.SkippedBlocks
	return a
}

func arith(op traceql.Operator, a, b float64) (float64, bool) {
	switch op {
	case traceql.OpAdd:
		return a + b, true
	case traceql.OpSub:
		return a - b, true
	case traceql.OpMul:
		return a * b, true
	case traceql.OpDiv:
		if b == 0 {
			return 0, false
		}
		return a / b, true
	}
	return math.NaN(), false
}

// labelsKey identifies a series by its labels without __name__; "{}" when it has none.
func labelsKey(s Series) (string, []Attribute) {
	ls := slices.DeleteFunc(slices.Clone(s.Labels), func(a Attribute) bool { return a.Key == "__name__" })
	return Series{Labels: ls}.PromLabels(), ls
}

func combine(op traceql.Operator, l, r mathValue) mathValue {
	name := "(" + l.name + " " + op.String() + " " + r.name + ")"
	out := mathValue{name: name}
	if l.isNum && r.isNum {
		v, _ := arith(op, l.num, r.num)
		return mathValue{num: v, isNum: true, name: name}
	}
	named := func(ls []Attribute) []Attribute {
		if len(ls) == 0 {
			return []Attribute{{Key: "__name__", Value: Value{Type: "string", String: name}}}
		}
		return ls
	}
	if l.isNum || r.isNum {
		series := l.series
		if l.isNum {
			series = r.series
		}
		for _, s := range series {
			_, ls := labelsKey(s)
			o := Series{Labels: named(ls), Exemplars: s.Exemplars}
			for _, smp := range s.Samples {
				a, b := smp.Value, r.num
				if l.isNum {
					a, b = l.num, smp.Value
				}
				if v, ok := arith(op, a, b); ok {
					o.Samples = append(o.Samples, Sample{smp.TimestampMs, v})
				}
			}
			if len(o.Samples) > 0 {
				out.series = append(out.series, o)
			}
		}
		return out
	}
	index := func(ss []Series) (map[string]int, []string) {
		m := map[string]int{}
		var order []string
		for i, s := range ss {
			k, _ := labelsKey(s)
			if _, ok := m[k]; !ok {
				m[k] = i
				order = append(order, k)
			}
		}
		return m, order
	}
	lm, lorder := index(l.series)
	rm, rorder := index(r.series)
	// The side with labels sets the result's series; without labels on the right, the left.
	order := lorder
	if _, ok := rm["{}"]; !ok {
		order = rorder
	}
	match := func(m map[string]int, k string) (int, bool) {
		if i, ok := m[k]; ok {
			return i, true
		}
		i, ok := m["{}"]
		return i, ok
	}
	for _, k := range order {
		li, ok1 := match(lm, k)
		ri, ok2 := match(rm, k)
		if !ok1 || !ok2 {
			continue
		}
		ls, rs := l.series[li], r.series[ri]
		_, labels := labelsKey(ls)
		if len(labels) == 0 {
			_, labels = labelsKey(rs)
		}
		o := Series{Labels: named(labels), Exemplars: append(slices.Clone(ls.Exemplars), rs.Exemplars...)}
		// Samples are in time order on both sides: walk them together, a missing one as 0.
		i, j := 0, 0
		for i < len(ls.Samples) || j < len(rs.Samples) {
			var ts int64
			var a, b float64
			switch {
			case j == len(rs.Samples) || (i < len(ls.Samples) && ls.Samples[i].TimestampMs < rs.Samples[j].TimestampMs):
				ts, a = ls.Samples[i].TimestampMs, ls.Samples[i].Value
				i++
			case i == len(ls.Samples) || rs.Samples[j].TimestampMs < ls.Samples[i].TimestampMs:
				ts, b = rs.Samples[j].TimestampMs, rs.Samples[j].Value
				j++
			default:
				ts, a, b = ls.Samples[i].TimestampMs, ls.Samples[i].Value, rs.Samples[j].Value
				i++
				j++
			}
			if v, ok := arith(op, a, b); ok {
				o.Samples = append(o.Samples, Sample{ts, v})
			}
		}
		if len(o.Samples) > 0 {
			out.series = append(out.series, o)
		}
	}
	return out
}
