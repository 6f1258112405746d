package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/insight/compare"
	"github.com/ariadne-tracing/ariadne/internal/read/search"
	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
)

// GET /api/analysis/compare?q=<selection>&baseline=<filter>&start=&end=&limit=: what sets the
// selection's spans apart from the baseline's (internal/insight/compare). start and end are unix
// seconds or RFC 3339 and default to the last hour.

type compareValueJSON struct {
	Key             string       `json:"key"`
	Value           jsonAnyValue `json:"value"`
	Text            string       `json:"text"` // the value as TraceQL writes it, for a filter
	Selection       int64        `json:"selection"`
	Baseline        int64        `json:"baseline"`
	SelectionPct    float64      `json:"selectionPct"`
	BaselinePct     float64      `json:"baselinePct"`
	Score           float64      `json:"score"`
	Significant     bool         `json:"significant"`
	ExampleTraceIDs []string     `json:"exampleTraceIDs"`
}

type compareQuantilesJSON struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
}

type compareShiftJSON struct {
	Key             string               `json:"key"`
	Selection       compareQuantilesJSON `json:"selection"`
	Baseline        compareQuantilesJSON `json:"baseline"`
	D               float64              `json:"d"`
	Score           float64              `json:"score"`
	Significant     bool                 `json:"significant"`
	ExampleTraceIDs []string             `json:"exampleTraceIDs"`
}

type compareJSON struct {
	Selection       string             `json:"selection"`
	Baseline        string             `json:"baseline"` // "" for the default baseline
	StartUnixNano   int64              `json:"startUnixNano"`
	EndUnixNano     int64              `json:"endUnixNano"`
	SelectionSpans  int64              `json:"selectionSpans"`
	BaselineSpans   int64              `json:"baselineSpans"`
	Values          []compareValueJSON `json:"values"`
	Shifts          []compareShiftJSON `json:"shifts"`
	HighCardinality []string           `json:"highCardinality"`
	Tested          []string           `json:"tested"`
	Metrics         jsonMetrics        `json:"metrics"`
}

func parseSpansetParam(r *http.Request, name string, required bool) (*traceql.Query, error) {
	src := strings.TrimSpace(r.URL.Query().Get(name))
	if src == "" {
		if required {
			return nil, fmt.Errorf("%s is required: a TraceQL spanset filter such as { duration > 500ms }", name)
		}
		return nil, nil
	}
	q, err := traceql.Parse(src)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid TraceQL query: %w", name, err)
	}
	if q.IsMetrics() {
		return nil, fmt.Errorf("%s must be a spanset filter, not a metrics query", name)
	}
	return q, nil
}

func (s *Server) handleCompare(w http.ResponseWriter, r *http.Request) {
	sel, err := parseSpansetParam(r, "q", true)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	base, err := parseSpansetParam(r, "baseline", false)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	start, end, err := analysisRange(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit, err := positiveInt(r, "limit", 20)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), searchTimeout)
	defer cancel()
	res, err := compare.Compare(ctx, s.engine, compare.Request{Selection: sel, Baseline: base, Start: start, End: end, Limit: min(limit, 1000)})
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, context.DeadlineExceeded) {
			code = http.StatusGatewayTimeout
		}
		writeError(w, code, err.Error())
		return
	}
	out := compareJSON{Selection: r.URL.Query().Get("q"), Baseline: r.URL.Query().Get("baseline"),
		StartUnixNano: start.UnixNano(), EndUnixNano: end.UnixNano(),
		SelectionSpans: res.SelectionSpans, BaselineSpans: res.BaselineSpans, Values: []compareValueJSON{}, Shifts: []compareShiftJSON{},
		HighCardinality: res.HighCardinality, Tested: res.Tested, Metrics: metricsJSON(res.Metrics)}
	for _, v := range res.Values {
		out.Values = append(out.Values, compareValueJSON{Key: v.Key, Value: anyValueJSON(v.Value), Text: traceqlLiteral(v.Value),
			Selection: v.Selection, Baseline: v.Baseline, SelectionPct: v.SelectionPct, BaselinePct: v.BaselinePct,
			Score: v.Score, Significant: v.Significant, ExampleTraceIDs: v.ExampleTraceIDs})
	}
	q := func(x compare.Quantiles) compareQuantilesJSON {
		return compareQuantilesJSON{x.Count, x.P50, x.P90, x.P99}
	}
	for _, sh := range res.Shifts {
		out.Shifts = append(out.Shifts, compareShiftJSON{Key: sh.Key, Selection: q(sh.Selection), Baseline: q(sh.Baseline),
			D: sh.D, Score: sh.Score, Significant: sh.Significant, ExampleTraceIDs: sh.ExampleTraceIDs})
	}
	writeJSON(w, http.StatusOK, out)
}

// traceqlLiteral writes v as a TraceQL literal: strings quoted, statuses and kinds bare.
func traceqlLiteral(v search.Value) string {
	switch v.Type {
	case "string":
		return fmt.Sprintf("%q", v.String)
	case "int":
		return fmt.Sprint(v.Int)
	case "bool":
		return fmt.Sprint(v.Bool)
	case "float":
		return fmt.Sprint(v.Float)
	}
	return v.String
}

// GET /api/analysis/heatmap?q=<filter>&start=&end=&columns=: how many of the filter's spans
// started in each time column at each duration (log-scale rows), what the UI's compare page
// draws and brushes (internal/insight/compare.ComputeHeatmap). start and end default to the last hour.

type heatmapJSON struct {
	Query         string      `json:"query"`
	StartUnixNano int64       `json:"startUnixNano"`
	EndUnixNano   int64       `json:"endUnixNano"`
	StepNanos     int64       `json:"stepNanos"`
	Bounds        []int64     `json:"boundsNanos"` // row edges, fastest first: rows+1 of them
	Counts        [][]int64   `json:"counts"`      // [column][row]
	Total         int64       `json:"total"`
	Max           int64       `json:"max"`
	Metrics       jsonMetrics `json:"metrics"`
}

func (s *Server) handleHeatmap(w http.ResponseWriter, r *http.Request) {
	q, err := parseSpansetParam(r, "q", true)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	start, end, err := analysisRange(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	columns, err := positiveInt(r, "columns", 60)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), searchTimeout)
	defer cancel()
	h, err := compare.ComputeHeatmap(ctx, s.engine, compare.HeatmapRequest{Filter: q, Start: start, End: end, Columns: columns})
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, context.DeadlineExceeded) {
			code = http.StatusGatewayTimeout
		}
		writeError(w, code, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, heatmapJSON{Query: r.URL.Query().Get("q"), StartUnixNano: h.StartUnixNano, EndUnixNano: h.EndUnixNano,
		StepNanos: h.StepNanos, Bounds: h.Bounds, Counts: h.Counts, Total: h.Total, Max: h.Max, Metrics: metricsJSON(h.Metrics)})
}

// analysisRange is a compare or heatmap request's time range: the search range parameters,
// defaulting to the hour up to now.
func analysisRange(r *http.Request) (start, end time.Time, err error) {
	if start, end, err = parseSearchRange(r); err != nil {
		return start, end, err
	}
	if end.IsZero() {
		end = time.Now()
	}
	if start.IsZero() {
		start = end.Add(-time.Hour)
	}
	if !end.After(start) {
		return start, end, errors.New("end must be after start")
	}
	return start, end, nil
}
