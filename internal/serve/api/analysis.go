package api

import (
	"context"
	"encoding/hex"
	"net/http"
	"strconv"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/insight/analyze"
	"github.com/ariadne-tracing/ariadne/internal/read/query"
)

// Analysis endpoints: Ariadne's own API (Tempo has no equivalent), used by the UI and the
// `why`, `lint` and `diff` commands. Durations are integer nanoseconds, IDs lowercase hex.

type segmentJSON struct {
	SpanID        string `json:"spanID"`
	Name          string `json:"name"`
	Service       string `json:"service"`
	SelfNanos     int64  `json:"selfNanos"`
	StartUnixNano int64  `json:"startUnixNano"`
	EndUnixNano   int64  `json:"endUnixNano"`
	Depth         int    `json:"depth"`
}

type adjustmentJSON struct {
	SpanID     string `json:"spanID"`
	ShiftNanos int64  `json:"shiftNanos"`
	Reason     string `json:"reason"`
}

type criticalPathJSON struct {
	TotalNanos  int64            `json:"totalNanos"`
	Segments    []segmentJSON    `json:"segments"`
	Adjustments []adjustmentJSON `json:"adjustments"`
}

type contributorJSON struct {
	SpanID    string  `json:"spanID"`
	Service   string  `json:"service"`
	Name      string  `json:"name"`
	Label     string  `json:"label"`
	SelfNanos int64   `json:"selfNanos"`
	Share     float64 `json:"share"`
}

type whySlowJSON struct {
	Sentence     string  `json:"sentence"`
	Root         string  `json:"root"`
	RootService  string  `json:"rootService"`
	TotalNanos   int64   `json:"totalNanos"`
	SingleCause  bool    `json:"singleCause"`
	TopSpanID    string  `json:"topSpanID"`
	Share        float64 `json:"share"`
	Factor       float64 `json:"factor"`
	TypicalNanos int64   `json:"typicalNanos"`
	// WithinUsual: the trace took no longer than usual for its root operation (from span
	// metrics), so the UI does not present the sentence as an explanation of slowness.
	WithinUsual      bool              `json:"withinUsual"`
	RootTypicalNanos int64             `json:"rootTypicalNanos"`
	Top              []contributorJSON `json:"top"`
}

type findingJSON struct {
	Rule     string   `json:"rule"`
	Severity string   `json:"severity"`
	Service  string   `json:"service"`
	Message  string   `json:"message"`
	Fix      string   `json:"fix"`
	TraceID  string   `json:"traceID"`
	SpanIDs  []string `json:"spanIDs"`
	Count    int      `json:"count"`
}

type traceAnalysisJSON struct {
	TraceID      string           `json:"traceID"`
	WhySlow      whySlowJSON      `json:"whySlow"`
	CriticalPath criticalPathJSON `json:"criticalPath"`
	Lints        []findingJSON    `json:"lints"`
}

func toPathJSON(p analyze.Path) criticalPathJSON {
	out := criticalPathJSON{TotalNanos: int64(p.Total), Segments: []segmentJSON{}, Adjustments: []adjustmentJSON{}}
	for _, s := range p.Segments {
		out.Segments = append(out.Segments, segmentJSON{s.SpanID, s.Name, s.Service, int64(s.Self), s.Start.UnixNano(), s.End.UnixNano(), s.Depth})
	}
	for _, a := range p.Adjustments {
		out.Adjustments = append(out.Adjustments, adjustmentJSON{a.SpanID, int64(a.Shift), a.Reason})
	}
	return out
}

func toFindingsJSON(fs []analyze.Finding) []findingJSON {
	out := []findingJSON{}
	for _, f := range fs {
		ids := f.SpanIDs
		if ids == nil {
			ids = []string{}
		}
		out = append(out, findingJSON{f.Rule, string(f.Severity), f.Service, f.Message, f.Fix, f.TraceID, ids, f.Count})
	}
	return out
}

func toWhyJSON(e analyze.Explanation) whySlowJSON {
	out := whySlowJSON{Sentence: e.Sentence, Root: e.Root, RootService: e.RootService, TotalNanos: int64(e.Total),
		SingleCause: e.SingleCause, TopSpanID: e.TopSpanID, Share: e.Share, Factor: e.Factor, TypicalNanos: int64(e.Typical),
		WithinUsual: e.WithinUsual, RootTypicalNanos: int64(e.RootTypical), Top: []contributorJSON{}}
	for _, c := range e.Top {
		out.Top = append(out.Top, contributorJSON{c.SpanID, c.Service, c.Name, c.Label, int64(c.Self), c.Share})
	}
	return out
}

// findForAnalysis reads a trace by the ID in the named path value or query parameter, answering
// the error itself when it cannot.
func (s *Server) findForAnalysis(w http.ResponseWriter, r *http.Request, raw string) *tracepb.TracesData {
	id, err := ParseTraceID(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	td, err := s.q.FindTrace(ctx, id, query.TimeRange{})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return nil
	}
	if td == nil {
		writeError(w, http.StatusNotFound, "trace "+hex.EncodeToString(id[:])+" not found")
		return nil
	}
	return td
}

func (s *Server) handleTraceAnalysis(w http.ResponseWriter, r *http.Request) {
	td := s.findForAnalysis(w, r, r.PathValue("id"))
	if td == nil {
		return
	}
	id, _ := ParseTraceID(r.PathValue("id"))
	writeJSON(w, http.StatusOK, traceAnalysisJSON{
		TraceID:      hex.EncodeToString(id[:]),
		WhySlow:      toWhyJSON(analyze.WhySlow(td, s.typical)),
		CriticalPath: toPathJSON(analyze.CriticalPath(td)),
		Lints:        toFindingsJSON(analyze.Lint(td, analyze.LintConfig{})),
	})
}

type pathDeltaJSON struct {
	Path           string `json:"path"`
	ANanos         int64  `json:"aNanos"`
	BNanos         int64  `json:"bNanos"`
	DeltaNanos     int64  `json:"deltaNanos"`
	SelfDeltaNanos int64  `json:"selfDeltaNanos"`
	SpanA          string `json:"spanA"`
	SpanB          string `json:"spanB"`
}

type diffJSON struct {
	TotalANanos int64           `json:"totalANanos"`
	TotalBNanos int64           `json:"totalBNanos"`
	Added       []string        `json:"added"`
	Missing     []string        `json:"missing"`
	Changed     []pathDeltaJSON `json:"changed"`
}

func (s *Server) handleDiff(w http.ResponseWriter, r *http.Request) {
	a := s.findForAnalysis(w, r, r.URL.Query().Get("a"))
	if a == nil {
		return
	}
	b := s.findForAnalysis(w, r, r.URL.Query().Get("b"))
	if b == nil {
		return
	}
	d := analyze.Diff(a, b)
	out := diffJSON{TotalANanos: int64(d.TotalA), TotalBNanos: int64(d.TotalB), Added: append([]string{}, d.Added...),
		Missing: append([]string{}, d.Missing...), Changed: []pathDeltaJSON{}}
	for _, c := range d.Changed {
		out.Changed = append(out.Changed, pathDeltaJSON{c.Path, int64(c.A), int64(c.B), int64(c.Delta), int64(c.SelfDelta), c.SpanA, c.SpanB})
	}
	writeJSON(w, http.StatusOK, out)
}

type ruleCountJSON struct {
	Rule           string `json:"rule"`
	Severity       string `json:"severity"`
	Findings       int    `json:"findings"`
	Count          int    `json:"count"`
	Traces         int    `json:"traces"`
	ExampleTraceID string `json:"exampleTraceID"`
	ExampleSpanID  string `json:"exampleSpanID"`
	Fix            string `json:"fix"`
}

type serviceReportJSON struct {
	Service  string          `json:"service"`
	Findings int             `json:"findings"`
	Rules    []ruleCountJSON `json:"rules"`
}

// handleLintReport lints the most recent traces in a window and aggregates per service and rule,
// including the rules that need several traces (lost propagation, context lost in goroutines)
// and attribute cardinality.
func (s *Server) handleLintReport(w http.ResponseWriter, r *http.Request) {
	since := time.Hour
	if v := r.URL.Query().Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "since must be a positive duration such as 1h, got "+strconv.Quote(v))
			return
		}
		since = d
	}
	limit := 500
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			writeError(w, http.StatusBadRequest, "limit must be a positive integer")
			return
		}
		limit = n
	}
	// Every trace examined is held decoded until the cross-trace rules have run: the count is
	// capped whatever since and limit ask for.
	if m := s.limits().MaxTracesPerLintReport; m > 0 {
		limit = min(limit, m)
	} else {
		limit = min(limit, 5000)
	}
	service := r.URL.Query().Get("service")
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	// Twice the traces wanted, since some may have no spans left to read; Recent holds only
	// those, however long since is.
	sums, err := s.q.Recent(ctx, query.TimeRange{Start: time.Now().Add(-since)}, 2*limit)
	if err != nil {
		s.queryFailed(w, r, "lint report", err)
		return
	}
	cfg := analyze.LintConfig{}
	card := analyze.NewCardinalityTracker(cfg)
	var findings []analyze.Finding
	var traces []*tracepb.TracesData
	for _, sum := range sums {
		if len(traces) >= limit {
			break
		}
		td, err := s.q.FindTrace(ctx, sum.ID, query.TimeRange{})
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		if td == nil {
			continue
		}
		traces = append(traces, td)
		card.Observe(td)
		findings = append(findings, analyze.Lint(td, cfg)...)
	}
	findings = append(findings, analyze.LintAcross(traces, cfg)...)
	findings = append(findings, card.Findings()...)
	out := struct {
		TracesExamined int                 `json:"tracesExamined"`
		Services       []serviceReportJSON `json:"services"`
	}{TracesExamined: len(traces), Services: []serviceReportJSON{}}
	for _, rep := range analyze.Aggregate(findings) {
		if service != "" && rep.Service != service {
			continue
		}
		sr := serviceReportJSON{Service: rep.Service, Findings: rep.Findings, Rules: []ruleCountJSON{}}
		for _, rc := range rep.Rules {
			sr.Rules = append(sr.Rules, ruleCountJSON{rc.Rule, string(rc.Severity), rc.Findings, rc.Count, rc.Traces, rc.ExampleTraceID, rc.ExampleSpanID, rc.Fix})
		}
		out.Services = append(out.Services, sr)
	}
	writeJSON(w, http.StatusOK, out)
}
