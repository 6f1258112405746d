package api

import (
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/read/search"
	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
)

// Jaeger UI's search list (/api/v3/trace-summaries) and Monitor tab (/api/metrics/*).

type jaegerServiceSummary struct {
	Name           string `json:"name"`
	SpanCount      int    `json:"spanCount"`
	ErrorSpanCount int    `json:"errorSpanCount"`
}

type jaegerTraceSummary struct {
	TraceID              string                 `json:"traceId"`
	RootServiceName      string                 `json:"rootServiceName"`
	RootOperationName    string                 `json:"rootOperationName"`
	MinStartTimeUnixNano string                 `json:"minStartTimeUnixNano"`
	MaxEndTimeUnixNano   string                 `json:"maxEndTimeUnixNano"`
	SpanCount            int                    `json:"spanCount"`
	ErrorSpanCount       int                    `json:"errorSpanCount"`
	OrphanSpanCount      int                    `json:"orphanSpanCount"`
	Services             []jaegerServiceSummary `json:"services"`
}

// summarize computes a trace's summary row: its root (the earliest span without a parent),
// times, span and error counts, spans whose parent is missing, and a per-service breakdown.
func summarize(td *tracepb.TracesData) jaegerTraceSummary {
	var out jaegerTraceSummary
	ids := map[string]bool{}
	for _, rs := range td.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				ids[string(sp.SpanId)] = true
			}
		}
	}
	byService := map[string]*jaegerServiceSummary{}
	var minStart, maxEnd uint64 = math.MaxUint64, 0
	var root *tracepb.Span
	for _, rs := range td.ResourceSpans {
		svc := serviceOf(rs.GetResource().GetAttributes())
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				if out.TraceID == "" {
					out.TraceID = hex.EncodeToString(sp.TraceId)
				}
				out.SpanCount++
				ssum := byService[svc]
				if ssum == nil {
					ssum = &jaegerServiceSummary{Name: svc}
					byService[svc] = ssum
				}
				ssum.SpanCount++
				if sp.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
					out.ErrorSpanCount++
					ssum.ErrorSpanCount++
				}
				if len(sp.ParentSpanId) > 0 && !ids[string(sp.ParentSpanId)] {
					out.OrphanSpanCount++
				}
				minStart, maxEnd = min(minStart, sp.StartTimeUnixNano), max(maxEnd, sp.EndTimeUnixNano)
				if len(sp.ParentSpanId) == 0 && (root == nil || sp.StartTimeUnixNano < root.StartTimeUnixNano) {
					root, out.RootServiceName = sp, svc
				}
			}
		}
	}
	if root != nil {
		out.RootOperationName = root.Name
	}
	if out.SpanCount > 0 {
		out.MinStartTimeUnixNano, out.MaxEndTimeUnixNano = strconv.FormatUint(minStart, 10), strconv.FormatUint(maxEnd, 10)
	}
	out.Services = []jaegerServiceSummary{}
	for _, name := range sortedKeys(byService) {
		out.Services = append(out.Services, *byService[name])
	}
	return out
}

// jaegerTraceSummariesV3 is FindTraceSummaries: the same search as /api/v3/traces, answered with
// one summary per trace instead of every span.
func (s *Server) jaegerTraceSummariesV3(w http.ResponseWriter, r *http.Request) {
	f, tr, limit, err := v3Query(r)
	if err != nil {
		jaegerError(w, 400, err.Error())
		return
	}
	traces, err := s.findJaeger(r.Context(), f, tr, limit)
	if err != nil {
		jaegerError(w, 500, err.Error())
		return
	}
	out := []jaegerTraceSummary{}
	for _, td := range traces {
		out = append(out, summarize(td))
	}
	writeJSON(w, http.StatusOK, map[string]any{"summaries": out})
}

// jaegerMinStep is the smallest step the Monitor tab may ask for, in milliseconds: a second,
// the finest bucket worth drawing.
func (s *Server) jaegerMinStep(w http.ResponseWriter, _ *http.Request) {
	writeJaegerData(w, time.Second.Milliseconds(), 0)
}

type jaegerMetricLabel struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type jaegerMetricPoint struct {
	GaugeValue struct {
		DoubleValue *float64 `json:"doubleValue"`
	} `json:"gaugeValue"`
	Timestamp string `json:"timestamp"`
}

type jaegerMetric struct {
	Labels       []jaegerMetricLabel `json:"labels"`
	MetricPoints []jaegerMetricPoint `json:"metricPoints"`
}

// monitorQuery is a Monitor tab request: services, span kinds, the time window and step.
type monitorQuery struct {
	services, kinds []string
	byOperation     bool
	quantile        float64
	start, end      time.Time
	step            time.Duration
}

func msParam(r *http.Request, name string, def int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s must be milliseconds, got %q", name, v)
	}
	return n, nil
}

func parseMonitorQuery(r *http.Request) (monitorQuery, error) {
	var q monitorQuery
	qv := r.URL.Query()
	for _, v := range qv["service"] {
		// Jaeger UI joins several services as "a,service=b" into one parameter.
		for _, name := range strings.Split(v, ",service=") {
			if name != "" {
				q.services = append(q.services, name)
			}
		}
	}
	if len(q.services) == 0 {
		return q, fmt.Errorf("service is required")
	}
	for _, v := range qv["spanKind"] {
		k := strings.ToLower(strings.TrimPrefix(strings.ToUpper(v), "SPAN_KIND_"))
		if kindLiteral(k) == "unspecified" {
			return q, fmt.Errorf("spanKind %q: want server, client, producer, consumer or internal", v)
		}
		q.kinds = append(q.kinds, k)
	}
	if len(q.kinds) == 0 {
		q.kinds = []string{"server"}
	}
	q.byOperation = qv.Get("groupByOperation") == "true"
	q.quantile = 0.95
	if v := qv.Get("quantile"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > 1 {
			return q, fmt.Errorf("quantile must be in (0, 1], got %q", v)
		}
		q.quantile = f
	}
	end, err := msParam(r, "endTs", time.Now().UnixMilli())
	if err != nil {
		return q, err
	}
	look, err := msParam(r, "lookback", time.Hour.Milliseconds())
	if err != nil {
		return q, err
	}
	step, err := msParam(r, "step", time.Minute.Milliseconds())
	if err != nil {
		return q, err
	}
	q.end = time.UnixMilli(end)
	q.start = q.end.Add(-time.Duration(look) * time.Millisecond)
	q.step = max(time.Duration(step)*time.Millisecond, time.Second)
	if !q.end.After(q.start) {
		return q, fmt.Errorf("lookback must be positive")
	}
	if q.end.Sub(q.start)/q.step > 11000 {
		return q, fmt.Errorf("lookback/step gives more than 11000 points; use a larger step")
	}
	return q, nil
}

// traceQL writes the RED query for the request's services and kinds; extra is appended to the
// span condition (e.g. "status = error") and fn is the metrics function.
func (q monitorQuery) traceQL(extra, fn string) string {
	var svcs, kinds []string
	for _, s := range q.services {
		svcs = append(svcs, "resource.service.name = "+strconv.Quote(s))
	}
	for _, k := range q.kinds {
		kinds = append(kinds, "kind = "+k)
	}
	cond := "(" + strings.Join(svcs, " || ") + ") && (" + strings.Join(kinds, " || ") + ")"
	if extra != "" {
		cond += " && " + extra
	}
	by := "resource.service.name"
	if q.byOperation {
		by += ", name"
	}
	return fmt.Sprintf("{ %s } | %s by (%s)", cond, fn, by)
}

func (s *Server) monitorSeries(ctx context.Context, q monitorQuery, src string) ([]search.Series, error) {
	tq, err := traceql.Parse(src)
	if err != nil {
		return nil, fmt.Errorf("monitor query %s: %w", src, err)
	}
	res, err := s.engine.QueryRange(ctx, search.MetricsRequest{Query: tq, Start: q.start, End: q.end, Step: q.step})
	if err != nil {
		return nil, err
	}
	return res.Series, nil
}

// seriesKey and labels name a series as Jaeger does: service_name, and operation when grouped.
func seriesLabels(ser search.Series) []jaegerMetricLabel {
	var out []jaegerMetricLabel
	for _, l := range ser.Labels {
		switch l.Key {
		case "resource.service.name":
			out = append(out, jaegerMetricLabel{Name: "service_name", Value: l.Value.String})
		case "name":
			out = append(out, jaegerMetricLabel{Name: "operation", Value: l.Value.String})
		}
	}
	slices.SortFunc(out, func(a, b jaegerMetricLabel) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func labelsKey(ls []jaegerMetricLabel) string {
	var b strings.Builder
	for _, l := range ls {
		b.WriteString(l.Name + "=" + l.Value + "\x00")
	}
	return b.String()
}

// jaegerMetrics answers the Monitor tab's latencies (the quantile, in milliseconds), calls (per
// second) and errors (the share of calls that failed), from the spans Ariadne stores: the same
// RED figures as the span metrics, over time. Buckets without calls are left out.
func (s *Server) jaegerMetrics(w http.ResponseWriter, r *http.Request) {
	metric := r.PathValue("metric")
	q, err := parseMonitorQuery(r)
	if err != nil {
		jaegerError(w, 400, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), searchTimeout)
	defer cancel()
	scope := "service"
	if q.byOperation {
		scope = "service_operation"
	}
	var name, help string
	values := map[string]map[int64]float64{} // series → bucket → value
	labels := map[string][]jaegerMetricLabel{}
	collect := func(series []search.Series, f func(key string, ts int64, v float64)) {
		for _, ser := range series {
			ls := seriesLabels(ser)
			key := labelsKey(ls)
			labels[key] = ls
			for _, smp := range ser.Samples {
				f(key, smp.TimestampMs, smp.Value)
			}
		}
	}
	put := func(key string, ts int64, v float64) {
		if values[key] == nil {
			values[key] = map[int64]float64{}
		}
		values[key][ts] = v
	}
	switch metric {
	case "latencies":
		name, help = scope+"_latencies", fmt.Sprintf("%gth quantile latency, grouped by %s", q.quantile, strings.ReplaceAll(scope, "_", " & "))
		series, err := s.monitorSeries(ctx, q, q.traceQL("", fmt.Sprintf("quantile_over_time(duration, %g)", q.quantile)))
		if err != nil {
			jaegerError(w, 500, err.Error())
			return
		}
		collect(series, func(key string, ts int64, v float64) { put(key, ts, v*1000) })
	case "calls":
		name, help = scope+"_call_rate", "calls/sec, grouped by "+strings.ReplaceAll(scope, "_", " & ")
		series, err := s.monitorSeries(ctx, q, q.traceQL("", "rate()"))
		if err != nil {
			jaegerError(w, 500, err.Error())
			return
		}
		collect(series, put)
	case "errors":
		name, help = scope+"_error_rate", "error rate, computed as a fraction of errors/sec over calls/sec, grouped by "+strings.ReplaceAll(scope, "_", " & ")
		calls, err := s.monitorSeries(ctx, q, q.traceQL("", "rate()"))
		if err != nil {
			jaegerError(w, 500, err.Error())
			return
		}
		errs, err := s.monitorSeries(ctx, q, q.traceQL("status = error", "rate()"))
		if err != nil {
			jaegerError(w, 500, err.Error())
			return
		}
		failed := map[string]map[int64]float64{}
		collect(errs, func(key string, ts int64, v float64) {
			if failed[key] == nil {
				failed[key] = map[int64]float64{}
			}
			failed[key][ts] = v
		})
		collect(calls, func(key string, ts int64, v float64) {
			if v > 0 {
				put(key, ts, failed[key][ts]/v)
			}
		})
	default:
		jaegerError(w, 404, fmt.Sprintf("unknown metric %q: want latencies, calls, errors or minstep", metric))
		return
	}
	out := []jaegerMetric{}
	for _, key := range sortedKeys(values) {
		m := jaegerMetric{Labels: labels[key], MetricPoints: []jaegerMetricPoint{}}
		var stamps []int64
		for ts := range values[key] {
			stamps = append(stamps, ts)
		}
		slices.Sort(stamps)
		for _, ts := range stamps {
			v := values[key][ts]
			var p jaegerMetricPoint
			p.GaugeValue.DoubleValue = &v
			p.Timestamp = time.UnixMilli(ts).UTC().Format("2006-01-02T15:04:05.000Z")
			m.MetricPoints = append(m.MetricPoints, p)
		}
		out = append(out, m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "type": "GAUGE", "help": help, "metrics": out})
}
