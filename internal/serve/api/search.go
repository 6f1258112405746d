package api

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/ariadne-tracing/ariadne/internal/read/search"
	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
)

// registerSearch adds Tempo's search, tag discovery and TraceQL metrics endpoints.
func (s *Server) registerSearch() {
	h := &searchHandlers{s: s, e: search.New(s.q.Source())}
	s.engine = h.e
	s.mux.HandleFunc("GET /api/search", h.search)
	s.mux.HandleFunc("GET /api/search/tags", h.tags(false))
	s.mux.HandleFunc("GET /api/v2/search/tags", h.tags(true))
	s.mux.HandleFunc("GET /api/search/tag/{tag}/values", h.tagValues(false))
	s.mux.HandleFunc("GET /api/v2/search/tag/{tag}/values", h.tagValues(true))
	s.mux.HandleFunc("GET /api/metrics/query_range", h.metrics(false))
	s.mux.HandleFunc("GET /api/metrics/query", h.metrics(true))
}

type searchHandlers struct {
	s *Server
	e *search.Engine
}

const searchTimeout = 30 * time.Second

// Tempo's JSON is protobuf's JSON mapping: 64-bit integers are strings, zero values are left
// out, and attribute values are OTLP AnyValues.

type jsonAnyValue struct {
	StringValue *string         `json:"stringValue,omitempty"`
	IntValue    *string         `json:"intValue,omitempty"`
	DoubleValue *float64        `json:"doubleValue,omitempty"`
	BoolValue   *bool           `json:"boolValue,omitempty"`
	ArrayValue  *jsonArrayValue `json:"arrayValue,omitempty"`
}

func (v jsonAnyValue) kv(key string) jsonKeyValue { return jsonKeyValue{key, v} }

type jsonArrayValue struct {
	Values []jsonAnyValue `json:"values"`
}

type jsonKeyValue struct {
	Key   string       `json:"key"`
	Value jsonAnyValue `json:"value"`
}

func anyValueJSON(v search.Value) jsonAnyValue {
	switch v.Type {
	case "int":
		s := strconv.FormatInt(v.Int, 10)
		return jsonAnyValue{IntValue: &s}
	case "float":
		f := v.Float
		return jsonAnyValue{DoubleValue: &f}
	case "bool":
		b := v.Bool
		return jsonAnyValue{BoolValue: &b}
	case "array":
		arr := &jsonArrayValue{Values: []jsonAnyValue{}}
		for _, e := range v.Array {
			arr.Values = append(arr.Values, anyValueJSON(e))
		}
		return jsonAnyValue{ArrayValue: arr}
	}
	s := v.String
	return jsonAnyValue{StringValue: &s}
}

func attrsJSON(as []search.Attribute) []jsonKeyValue {
	out := make([]jsonKeyValue, 0, len(as))
	for _, a := range as {
		out = append(out, jsonKeyValue{a.Key, anyValueJSON(a.Value)})
	}
	return out
}

type jsonSpan struct {
	SpanID            string         `json:"spanID"`
	Name              string         `json:"name"`
	StartTimeUnixNano string         `json:"startTimeUnixNano"`
	DurationNanos     string         `json:"durationNanos"`
	Attributes        []jsonKeyValue `json:"attributes,omitempty"`
}

type jsonSpanSet struct {
	Spans      []jsonSpan     `json:"spans"`
	Matched    int            `json:"matched"`
	Attributes []jsonKeyValue `json:"attributes,omitempty"`
}

type jsonTrace struct {
	TraceID           string `json:"traceID"`
	RootServiceName   string `json:"rootServiceName"`
	RootTraceName     string `json:"rootTraceName"`
	StartTimeUnixNano string `json:"startTimeUnixNano"`
	DurationMs        int64  `json:"durationMs"`
	// DurationNanos is Ariadne's addition to Tempo's shape: durationMs is whole milliseconds, so
	// a sub-millisecond trace would read as 0.
	DurationNanos string        `json:"durationNanos"`
	SpanSet       *jsonSpanSet  `json:"spanSet,omitempty"`
	SpanSets      []jsonSpanSet `json:"spanSets"`
}

type jsonMetrics struct {
	InspectedTraces int64  `json:"inspectedTraces"`
	InspectedBytes  string `json:"inspectedBytes"`
	InspectedSpans  string `json:"inspectedSpans"`
	TotalBlocks     int    `json:"totalBlocks"`
	CompletedJobs   int    `json:"completedJobs"`
	TotalJobs       int    `json:"totalJobs"`
}

func metricsJSON(m search.Metrics) jsonMetrics {
	jobs := m.TotalBlocks + 1 // the head is one more unit of work
	return jsonMetrics{InspectedTraces: m.InspectedTraces, InspectedBytes: strconv.FormatInt(m.InspectedBytes, 10),
		InspectedSpans: strconv.FormatInt(m.InspectedSpans, 10), TotalBlocks: m.TotalBlocks, CompletedJobs: jobs, TotalJobs: jobs}
}

type jsonSearchResponse struct {
	Traces  []jsonTrace `json:"traces"`
	Metrics jsonMetrics `json:"metrics"`
}

// parseSearchRange reads start and end as unix seconds. Unlike trace by ID, search does not
// widen the range: it bounds the traces' start times, as in Tempo.
func parseSearchRange(r *http.Request) (start, end time.Time, err error) {
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"start", &start}, {"end", &end}} {
		v := r.URL.Query().Get(p.name)
		if v == "" {
			continue
		}
		t, err := parseTime(v)
		if err != nil {
			return start, end, fmt.Errorf("%s: %w", p.name, err)
		}
		*p.dst = t
	}
	if !start.IsZero() && !end.IsZero() && end.Before(start) {
		return start, end, errors.New("end is before start")
	}
	return start, end, nil
}

// checkRange refuses a time range longer than max (0: any), as Tempo's max_duration does: the
// work of a query grows with its range.
func checkRange(start, end time.Time, max time.Duration) error {
	if max <= 0 || start.IsZero() || end.IsZero() {
		return nil
	}
	// An end in the future is how Grafana and scripts say "up to now": only the past counts.
	if now := time.Now(); end.After(now) {
		end = now
	}
	if d := end.Sub(start); d > max {
		return fmt.Errorf("the range from start to end, %v, is over the most allowed, %v", d, max)
	}
	return nil
}

// parseTime accepts unix seconds (with a fraction), unix nanoseconds, or RFC 3339.
func parseTime(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return clampTime(t), nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, fmt.Errorf("%q is neither unix seconds nor RFC 3339", v)
	}
	if f > 1e15 { // nanoseconds, as Grafana sends to the metrics API
		if f >= math.MaxInt64 {
			return maxQueryTime, nil
		}
		return time.Unix(0, int64(f)), nil
	}
	if f < 0 {
		return minQueryTime, nil
	}
	sec, frac := math.Modf(f)
	return unixSeconds(int64(sec), int64(frac*1e9)), nil
}

func positiveInt(r *http.Request, name string, def int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s must be a positive integer, got %q", name, v)
	}
	return n, nil
}

func durationParam(r *http.Request, name string) (time.Duration, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s must be a duration such as 100ms, got %q", name, v)
	}
	return d, nil
}

// tagsToTraceQL turns the legacy logfmt tags parameter into a TraceQL filter, as Tempo reads it:
// name is the span name, error=true an error status, service.name the resource's service, and
// any other key an attribute of the span or its resource.
func tagsToTraceQL(tags string) (string, error) {
	pairs, err := parseLogfmt(tags)
	if err != nil {
		return "", err
	}
	var conds []string
	for _, kv := range pairs {
		k, v := kv[0], kv[1]
		switch k {
		case "name":
			conds = append(conds, "name = "+strconv.Quote(v))
		case "status.code":
			conds = append(conds, "status = "+v)
		case "error":
			if v == "true" {
				conds = append(conds, "status = error")
			} else {
				conds = append(conds, "status != error")
			}
		case "service.name":
			conds = append(conds, "resource.service.name = "+strconv.Quote(v))
		default:
			conds = append(conds, "."+quoteName(k)+" = "+strconv.Quote(v))
		}
	}
	return "{ " + strings.Join(conds, " && ") + " }", nil
}

func quoteName(k string) string {
	for _, r := range k {
		if !(unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("._-/:", r)) {
			return strconv.Quote(k)
		}
	}
	return k
}

// parseLogfmt reads key=value pairs separated by spaces; values may be double-quoted.
func parseLogfmt(s string) ([][2]string, error) {
	var out [][2]string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("tags: %q is not key=value", s)
		}
		key := s[:eq]
		if strings.ContainsAny(key, " \"") {
			return nil, fmt.Errorf("tags: bad key %q", key)
		}
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, fmt.Errorf("tags: unterminated quoted value for %s", key)
			}
			val, _ = strconv.Unquote(q)
			s = s[len(q):]
		} else {
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				end = len(s)
			}
			val, s = s[:end], s[end:]
		}
		out = append(out, [2]string{key, val})
	}
	return out, nil
}

// parseQuery parses the q parameter, or the tags parameter when q is absent; an absent query
// is "{ }". A parse error's message carries the parser's line:col.
func parseQuery(r *http.Request) (*traceql.Query, error) {
	src := r.URL.Query().Get("q")
	if src == "" {
		if tags := r.URL.Query().Get("tags"); tags != "" {
			var err error
			if src, err = tagsToTraceQL(tags); err != nil {
				return nil, err
			}
		}
	}
	if strings.TrimSpace(src) == "" {
		src = "{ }"
	}
	q, err := traceql.Parse(src)
	if err != nil {
		return nil, fmt.Errorf("invalid TraceQL query: %w", err)
	}
	return q, nil
}

func (h *searchHandlers) search(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if q.IsMetrics() {
		writeError(w, http.StatusBadRequest, "a metrics query is answered by /api/metrics/query_range")
		return
	}
	req := search.Request{Query: q}
	var errs [5]error
	req.Start, req.End, errs[0] = parseSearchRange(r)
	req.Limit, errs[1] = positiveInt(r, "limit", 20)
	req.SpansPerSpanSet, errs[2] = positiveInt(r, "spss", 3)
	req.MinDuration, errs[3] = durationParam(r, "minDuration")
	req.MaxDuration, errs[4] = durationParam(r, "maxDuration")
	if err := errors.Join(errs[:]...); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	lim := h.s.limits()
	if lim.MaxResultLimit > 0 && req.Limit > lim.MaxResultLimit {
		req.Limit = lim.MaxResultLimit // as Tempo's max_result_limit: capped, not refused
	}
	if lim.MaxSpansPerSpanSet > 0 && req.SpansPerSpanSet > lim.MaxSpansPerSpanSet {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("spss %d is over the most spans per spanset, %d", req.SpansPerSpanSet, lim.MaxSpansPerSpanSet))
		return
	}
	if err := checkRange(req.Start, req.End, lim.MaxDuration); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), searchTimeout)
	defer cancel()
	res, err := h.e.Search(ctx, req)
	if err != nil {
		h.s.queryFailed(w, r, "search "+q.String(), err)
		return
	}
	out := jsonSearchResponse{Traces: []jsonTrace{}, Metrics: metricsJSON(res.Metrics)}
	for _, t := range res.Traces {
		jt := jsonTrace{
			TraceID:           hex.EncodeToString(t.ID[:]),
			RootServiceName:   t.RootServiceName,
			RootTraceName:     t.RootTraceName,
			StartTimeUnixNano: strconv.FormatInt(t.StartUnixNano, 10),
			DurationMs:        t.DurationNanos / 1e6,
			DurationNanos:     strconv.FormatInt(t.DurationNanos, 10),
			SpanSets:          []jsonSpanSet{},
		}
		if t.RootTraceName == "" && t.RootServiceName == "" {
			// What Tempo answers for a trace whose root has not arrived (or never will).
			jt.RootServiceName = "<root span not yet received>"
		}
		for _, ss := range t.SpanSets {
			js := jsonSpanSet{Spans: []jsonSpan{}, Matched: ss.Matched, Attributes: attrsJSON(ss.Attributes)}
			for _, sp := range ss.Spans {
				js.Spans = append(js.Spans, jsonSpan{
					SpanID:            hex.EncodeToString(sp.SpanID),
					Name:              sp.Name,
					StartTimeUnixNano: strconv.FormatInt(sp.StartUnixNano, 10),
					DurationNanos:     strconv.FormatInt(sp.DurationNanos, 10),
					Attributes:        attrsJSON(sp.Attributes),
				})
			}
			jt.SpanSets = append(jt.SpanSets, js)
		}
		if len(jt.SpanSets) > 0 {
			jt.SpanSet = &jt.SpanSets[0]
		}
		out.Traces = append(out.Traces, jt)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *searchHandlers) tagsRequest(r *http.Request, v2 bool) (search.TagsRequest, error) {
	var req search.TagsRequest
	var errs [3]error
	req.Start, req.End, errs[0] = parseSearchRange(r)
	req.Limit, errs[1] = positiveInt(r, "limit", 0)
	req.Scope = r.URL.Query().Get("scope")
	switch req.Scope {
	case "", "all":
		req.Scope = ""
	case search.ScopeResource, search.ScopeSpan, search.ScopeIntrinsic, search.ScopeEvent, search.ScopeLink:
	default:
		errs[2] = fmt.Errorf("scope must be resource, span, event, link or intrinsic, got %q", req.Scope)
	}
	if err := errors.Join(errs[:]...); err != nil {
		return req, err
	}
	if err := checkRange(req.Start, req.End, h.s.limits().MaxDuration); err != nil {
		return req, err
	}
	if src := r.URL.Query().Get("q"); v2 && strings.TrimSpace(src) != "" && strings.TrimSpace(src) != "{}" {
		q, err := traceql.Parse(src)
		if err != nil {
			return req, fmt.Errorf("invalid TraceQL query: %w", err)
		}
		if q.IsMetrics() {
			return req, errors.New("q must be a spanset query, not a metrics query")
		}
		req.Query = q
	}
	return req, nil
}

type jsonScope struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

func (h *searchHandlers) tags(v2 bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, err := h.tagsRequest(r, v2)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if !v2 && req.Scope == search.ScopeIntrinsic {
			writeError(w, http.StatusBadRequest, "scope intrinsic is only offered by /api/v2/search/tags")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), searchTimeout)
		defer cancel()
		byScope, err := h.e.TagNames(ctx, req)
		if err != nil {
			h.s.queryFailed(w, r, "search tags", err)
			return
		}
		if v2 {
			out := struct {
				Scopes []jsonScope `json:"scopes"`
			}{Scopes: []jsonScope{}}
			for _, sc := range []string{search.ScopeResource, search.ScopeSpan, search.ScopeEvent, search.ScopeLink, search.ScopeIntrinsic} {
				if names, ok := byScope[sc]; ok && (len(names) > 0 || sc == req.Scope) {
					out.Scopes = append(out.Scopes, jsonScope{Name: sc, Tags: names})
				}
			}
			writeJSON(w, http.StatusOK, out)
			return
		}
		// v1 lists span and resource attribute names together, unscoped.
		seen := map[string]bool{}
		names := []string{}
		for _, sc := range []string{search.ScopeResource, search.ScopeSpan} {
			for _, n := range byScope[sc] {
				if !seen[n] {
					seen[n] = true
					names = append(names, n)
				}
			}
		}
		slices.Sort(names)
		writeJSON(w, http.StatusOK, map[string][]string{"tagNames": names})
	}
}

type jsonTagValue struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

func tagValueText(v search.Value) string {
	switch v.Type {
	case "int":
		return strconv.FormatInt(v.Int, 10)
	case "float":
		return strconv.FormatFloat(v.Float, 'g', -1, 64)
	case "bool":
		return strconv.FormatBool(v.Bool)
	}
	return v.String
}

func (h *searchHandlers) tagValues(v2 bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tag := r.PathValue("tag")
		if _, err := search.ParseTag(tag); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		treq, err := h.tagsRequest(r, v2)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		req := search.TagValuesRequest{Tag: tag, Start: treq.Start, End: treq.End, Limit: treq.Limit, Query: treq.Query,
			MaxBytes: h.s.limits().MaxBytesPerTagValuesQuery}
		if !v2 && !strings.HasPrefix(tag, ".") && !strings.Contains(tag, ":") {
			// v1 names are unscoped attributes, even where they spell an intrinsic ("name").
			req.Tag = "." + tag
		}
		ctx, cancel := context.WithTimeout(r.Context(), searchTimeout)
		defer cancel()
		vals, err := h.e.TagValues(ctx, req)
		if err != nil {
			h.s.queryFailed(w, r, "search tag values "+tag, err)
			return
		}
		if v2 {
			out := []jsonTagValue{}
			for _, v := range vals {
				if v.Type != "array" {
					out = append(out, jsonTagValue{Type: v.Type, Value: tagValueText(v)})
				}
			}
			writeJSON(w, http.StatusOK, map[string]any{"tagValues": out})
			return
		}
		out := []string{}
		seen := map[string]bool{}
		for _, v := range vals {
			if s := tagValueText(v); v.Type != "array" && !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
		writeJSON(w, http.StatusOK, map[string][]string{"tagValues": out})
	}
}

type jsonSample struct {
	TimestampMs string  `json:"timestampMs"`
	Value       float64 `json:"value"`
}

// jsonExemplar is an exemplar as Tempo writes it: the span's trace and span IDs as labels.
type jsonExemplar struct {
	Labels      []jsonKeyValue `json:"labels"`
	Value       float64        `json:"value"`
	TimestampMs string         `json:"timestampMs"`
}

type jsonSeries struct {
	Labels     []jsonKeyValue `json:"labels"`
	PromLabels string         `json:"promLabels"`
	Samples    []jsonSample   `json:"samples,omitempty"`
	Value      *float64       `json:"value,omitempty"`
	Exemplars  []jsonExemplar `json:"exemplars,omitempty"`
}

// maxExemplars bounds exemplars= per series, so a request cannot ask for one per span.
const maxExemplars = 1000

func (h *searchHandlers) metrics(instant bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		src := r.URL.Query().Get("q")
		if strings.TrimSpace(src) == "" {
			writeError(w, http.StatusBadRequest, "q is required")
			return
		}
		q, err := traceql.Parse(src)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid TraceQL query: %v", err))
			return
		}
		if !q.IsMetrics() {
			writeError(w, http.StatusBadRequest, "q must end in a metrics function such as rate() or quantile_over_time()")
			return
		}
		start, end, err := parseSearchRange(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if end.IsZero() {
			end = time.Now()
		}
		if start.IsZero() {
			start = end.Add(-time.Hour)
		}
		if !end.After(start) {
			writeError(w, http.StatusBadRequest, "end must be after start")
			return
		}
		if err := checkRange(start, end, h.s.limits().MetricsMaxDuration); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		var step time.Duration
		if v := r.URL.Query().Get("step"); v != "" && !instant {
			if step, err = time.ParseDuration(v); err != nil {
				f, ferr := strconv.ParseFloat(v, 64)
				if ferr != nil || f <= 0 {
					writeError(w, http.StatusBadRequest, fmt.Sprintf("step must be a duration or seconds, got %q", v))
					return
				}
				step = time.Duration(f * float64(time.Second))
			}
			if step <= 0 {
				writeError(w, http.StatusBadRequest, "step must be positive")
				return
			}
		}
		if step == 0 && !instant {
			// As Tempo does when no step is given: about a hundred points over the range.
			step = max(end.Sub(start)/100, time.Second)
		}
		exemplars := 0
		if v := r.URL.Query().Get("exemplars"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("exemplars must be a whole number of exemplars per series, got %q", v))
				return
			}
			exemplars = min(n, maxExemplars)
		}
		ctx, cancel := context.WithTimeout(r.Context(), searchTimeout)
		defer cancel()
		res, err := h.e.QueryRange(ctx, search.MetricsRequest{Query: q, Start: start, End: end, Step: step, Exemplars: exemplars,
			MaxSeries: h.s.limits().MaxResponseSeries})
		if err != nil {
			h.s.queryFailed(w, r, "metrics query "+src, err)
			return
		}
		series := []jsonSeries{}
		for _, s := range res.Series {
			js := jsonSeries{Labels: attrsJSON(s.Labels), PromLabels: s.PromLabels()}
			if instant {
				var v float64
				for _, smp := range s.Samples {
					v += smp.Value
				}
				js.Value = &v
			} else {
				for _, smp := range s.Samples {
					js.Samples = append(js.Samples, jsonSample{TimestampMs: strconv.FormatInt(smp.TimestampMs, 10), Value: smp.Value})
				}
			}
			for _, ex := range s.Exemplars {
				js.Exemplars = append(js.Exemplars, jsonExemplar{
					Labels: []jsonKeyValue{
						anyValueJSON(search.Value{Type: "string", String: hex.EncodeToString(ex.TraceID[:])}).kv("trace:id"),
						anyValueJSON(search.Value{Type: "string", String: hex.EncodeToString(ex.SpanID)}).kv("span:id"),
					},
					Value: ex.Value, TimestampMs: strconv.FormatInt(ex.TimestampMs, 10)})
			}
			series = append(series, js)
		}
		out := map[string]any{"series": series, "metrics": metricsJSON(res.Metrics)}
		if res.Truncated {
			// Tempo's partial answer: the series past max_response_series are left out.
			out["status"] = "PARTIAL"
			out["message"] = fmt.Sprintf("the answer has more than %d series; the rest are left out (narrow the query or its by())", h.s.limits().MaxResponseSeries)
		}
		writeJSON(w, http.StatusOK, out)
	}
}
