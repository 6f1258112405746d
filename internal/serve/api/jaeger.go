package api

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/read/query"
	"github.com/ariadne-tracing/ariadne/internal/read/search"
	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpjson"
)

// Jaeger's query APIs, so Jaeger UI and Jaeger clients read Ariadne: API v3 (OTLP JSON) under
// /api/v3, including the trace summaries today's Jaeger UI searches with; the classic JSON API;
// and the Monitor tab's /api/metrics/*, computed from the stored spans. Every route is served
// both at the root and under /jaeger, for a Jaeger UI configured with that base path, except two
// classic ones whose root paths belong to other APIs on this port (below); today's Jaeger UI
// reads traces through /api/v3/traces/{id} and operations through /api/v3/operations anyway.

// jaegerBasePath is the base path a Jaeger UI may be configured with to reach Ariadne.
const jaegerBasePath = "/jaeger"

func (s *Server) registerJaeger() {
	for _, prefix := range []string{"", jaegerBasePath} {
		s.mux.HandleFunc("GET "+prefix+"/api/v3/services", s.jaegerServicesV3)
		s.mux.HandleFunc("GET "+prefix+"/api/v3/operations", s.jaegerOperationsV3)
		s.mux.HandleFunc("GET "+prefix+"/api/v3/traces/{id}", s.jaegerTraceV3)
		s.mux.HandleFunc("GET "+prefix+"/api/v3/traces", s.jaegerFindV3)
		s.mux.HandleFunc("GET "+prefix+"/api/v3/trace-summaries", s.jaegerTraceSummariesV3)
		s.mux.HandleFunc("GET "+prefix+"/api/v3/dependencies", s.jaegerDependenciesV3)
		s.mux.HandleFunc("GET "+prefix+"/api/dependencies", s.jaegerDependencies)
		s.mux.HandleFunc("GET "+prefix+"/api/services", s.jaegerServices)
		s.mux.HandleFunc("GET "+prefix+"/api/operations", s.jaegerOperations)
		s.mux.HandleFunc("GET "+prefix+"/api/traces", s.jaegerFind)
		s.mux.HandleFunc("GET "+prefix+"/api/metrics/minstep", s.jaegerMinStep)
		s.mux.HandleFunc("GET "+prefix+"/api/metrics/{metric}", s.jaegerMetrics)
	}
	// At the root these paths are Tempo's (/api/traces/{id}) and Ariadne's own RED view
	// (/api/services/{service}/operations).
	s.mux.HandleFunc("GET "+jaegerBasePath+"/api/traces/{id}", s.jaegerTrace)
	s.mux.HandleFunc("GET "+jaegerBasePath+"/api/services/{service}/operations", s.jaegerServiceOperations)
}

// jaegerError answers in grpc-gateway's error shape, which Jaeger's v3 clients parse.
func jaegerError(w http.ResponseWriter, code int, msg string) {
	grpcCode := map[int]int{400: 3, 404: 5, 500: 13}[code]
	writeJSON(w, code, map[string]any{"error": map[string]any{"grpcCode": grpcCode, "httpCode": code, "message": msg,
		"httpStatus": http.StatusText(code)}})
}

// lookback is the window Jaeger's lists look at when the request gives none.
const lookback = 24 * time.Hour

// serviceOperations collects services and their operations (name and kind) from recent traces and
// the span metrics, which remember every operation seen since start.
func (s *Server) serviceOperations(ctx context.Context) (map[string]map[[2]string]bool, error) {
	out := map[string]map[[2]string]bool{}
	add := func(svc, name, kind string) {
		if out[svc] == nil {
			out[svc] = map[[2]string]bool{}
		}
		if name != "" {
			out[svc][[2]string{name, kind}] = true
		}
	}
	traces, err := s.q.FindTraces(ctx, query.TimeRange{Start: time.Now().Add(-lookback)}, 200, func(*tracepb.TracesData) bool { return true })
	if err != nil {
		return nil, err
	}
	for _, td := range traces {
		for _, rs := range td.ResourceSpans {
			svc := serviceOf(rs.Resource.GetAttributes())
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					add(svc, sp.Name, kindName(sp.Kind))
				}
			}
		}
	}
	if s.ops != nil && s.graph != nil {
		for _, e := range s.graph.Edges() {
			for _, svc := range []string{e.Client, e.Server} {
				for _, o := range s.ops.Operations(svc) {
					add(svc, o.SpanName, strings.ToLower(strings.TrimPrefix(o.SpanKind, "SPAN_KIND_")))
				}
			}
		}
	}
	delete(out, "user")
	return out, nil
}

func serviceOf(attrs []*commonpb.KeyValue) string {
	for _, kv := range attrs {
		if kv.Key == "service.name" {
			return kv.Value.GetStringValue()
		}
	}
	return "unknown_service"
}

func kindName(k tracepb.Span_SpanKind) string {
	switch k {
	case tracepb.Span_SPAN_KIND_SERVER:
		return "server"
	case tracepb.Span_SPAN_KIND_CLIENT:
		return "client"
	case tracepb.Span_SPAN_KIND_PRODUCER:
		return "producer"
	case tracepb.Span_SPAN_KIND_CONSUMER:
		return "consumer"
	case tracepb.Span_SPAN_KIND_INTERNAL:
		return "internal"
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (s *Server) jaegerServicesV3(w http.ResponseWriter, r *http.Request) {
	ops, err := s.serviceOperations(r.Context())
	if err != nil {
		jaegerError(w, 500, err.Error())
		return
	}
	writeJSON(w, 200, map[string]any{"services": sortedKeys(ops)})
}

type operationV3 struct {
	Name     string `json:"name"`
	SpanKind string `json:"spanKind"`
}

func (s *Server) operationsOf(r *http.Request, service, kind string) ([]operationV3, error) {
	all, err := s.serviceOperations(r.Context())
	if err != nil {
		return nil, err
	}
	out := []operationV3{}
	for op := range all[service] {
		if kind == "" || op[1] == kind {
			out = append(out, operationV3{op[0], op[1]})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Name < out[j].Name || out[i].Name == out[j].Name && out[i].SpanKind < out[j].SpanKind
	})
	return out, nil
}

func (s *Server) jaegerOperationsV3(w http.ResponseWriter, r *http.Request) {
	svc := r.URL.Query().Get("service")
	if svc == "" {
		jaegerError(w, 400, "service is required")
		return
	}
	ops, err := s.operationsOf(r, svc, r.URL.Query().Get("spanKind"))
	if err != nil {
		jaegerError(w, 500, err.Error())
		return
	}
	writeJSON(w, 200, map[string]any{"operations": ops})
}

// jaegerFindByID reads the trace named in the path, answering errors in Jaeger's shape itself;
// nil means it did.
func (s *Server) jaegerFindByID(w http.ResponseWriter, r *http.Request) *tracepb.TracesData {
	id, err := ParseTraceID(r.PathValue("id"))
	if err != nil {
		jaegerError(w, 400, err.Error())
		return nil
	}
	td, err := s.q.FindTrace(r.Context(), id, query.TimeRange{})
	if err != nil {
		jaegerError(w, 500, err.Error())
		return nil
	}
	if td == nil {
		jaegerError(w, 404, "trace not found")
	}
	return td
}

func (s *Server) jaegerTraceV3(w http.ResponseWriter, r *http.Request) {
	if td := s.jaegerFindByID(w, r); td != nil {
		writeResult(w, []*tracepb.TracesData{td})
	}
}

// writeResult wraps traces in grpc-gateway's {"result": TracesData} envelope, OTLP/JSON inside.
func writeResult(w http.ResponseWriter, traces []*tracepb.TracesData) {
	all := &tracepb.TracesData{}
	for _, td := range traces {
		all.ResourceSpans = append(all.ResourceSpans, td.ResourceSpans...)
	}
	b, err := otlpjson.Marshal(all)
	if err != nil {
		jaegerError(w, 500, err.Error())
		return
	}
	out, _ := json.Marshal(map[string]json.RawMessage{"result": b})
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

// traceFilter is a Jaeger search: a trace matches when one of its spans satisfies everything.
// It runs as a TraceQL query on the search engine, so Jaeger's searches get the same pruning and
// column reads as Grafana's.
type traceFilter struct {
	service, operation string
	tags               map[string]string
	minDur, maxDur     time.Duration
}

// traceQL writes the filter as one spanset. Jaeger tags are strings; a tag that reads as a number
// or a boolean also matches an attribute of that type, and error, span.kind and
// otel.status_code map to the intrinsics Jaeger derives them from.
func (f traceFilter) traceQL() string {
	var conds []string
	if f.service != "" {
		conds = append(conds, "resource.service.name = "+strconv.Quote(f.service))
	}
	if f.operation != "" {
		conds = append(conds, "name = "+strconv.Quote(f.operation))
	}
	if f.minDur > 0 {
		conds = append(conds, fmt.Sprintf("duration >= %dns", f.minDur.Nanoseconds()))
	}
	if f.maxDur > 0 {
		conds = append(conds, fmt.Sprintf("duration <= %dns", f.maxDur.Nanoseconds()))
	}
	keys := sortedKeys(f.tags)
	for _, k := range keys {
		v := f.tags[k]
		switch k {
		case "error":
			if v == "true" {
				conds = append(conds, "status = error")
			} else {
				conds = append(conds, "status != error")
			}
			continue
		case "span.kind":
			conds = append(conds, "kind = "+kindLiteral(v))
			continue
		case "otel.status_code":
			conds = append(conds, "status = "+strings.ToLower(v))
			continue
		}
		attr := "." + attrName(k)
		alts := []string{attr + " = " + strconv.Quote(v)}
		if _, err := strconv.ParseInt(v, 10, 64); err == nil {
			alts = append(alts, attr+" = "+v)
		} else if _, err := strconv.ParseFloat(v, 64); err == nil {
			alts = append(alts, attr+" = "+v)
		} else if v == "true" || v == "false" {
			alts = append(alts, attr+" = "+v)
		}
		if len(alts) == 1 {
			conds = append(conds, alts[0])
		} else {
			conds = append(conds, "("+strings.Join(alts, " || ")+")")
		}
	}
	return "{ " + strings.Join(conds, " && ") + " }"
}

func kindLiteral(v string) string {
	switch v {
	case "server", "client", "producer", "consumer", "internal":
		return v
	}
	return "unspecified"
}

// attrName writes an attribute name bare when TraceQL allows it, quoted otherwise.
func attrName(k string) string {
	for _, r := range k {
		if !(r == '.' || r == '_' || r == '-' || r == '/' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return strconv.Quote(k)
		}
	}
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		return strconv.Quote(k)
	}
	return k
}

// findJaeger runs a filter and returns the matching traces whole, newest first.
func (s *Server) findJaeger(ctx context.Context, f traceFilter, tr query.TimeRange, limit int) ([]*tracepb.TracesData, error) {
	q, err := traceql.Parse(f.traceQL())
	if err != nil {
		return nil, fmt.Errorf("jaeger search: %w", err)
	}
	res, err := s.engine.Search(ctx, search.Request{Query: q, Start: tr.Start, End: tr.End, Limit: limit})
	if err != nil {
		return nil, err
	}
	var out []*tracepb.TracesData
	for _, t := range res.Traces {
		td, err := s.q.FindTrace(ctx, t.ID, query.TimeRange{})
		if err != nil {
			return nil, err
		}
		if td != nil {
			out = append(out, td)
		}
	}
	return out, nil
}

// v3Param reads a query.* parameter in either spelling (camelCase today, snake_case before).
func v3Param(r *http.Request, camel, snake string) string {
	if v := r.URL.Query().Get("query." + camel); v != "" {
		return v
	}
	return r.URL.Query().Get("query." + snake)
}

// v3Query reads the query.* parameters FindTraces and FindTraceSummaries share.
func v3Query(r *http.Request) (traceFilter, query.TimeRange, int, error) {
	f := traceFilter{service: v3Param(r, "serviceName", "service_name"), operation: v3Param(r, "operationName", "operation_name"),
		tags: map[string]string{}}
	var tr query.TimeRange
	for _, p := range []struct {
		camel, snake string
		dst          *time.Time
	}{{"startTimeMin", "start_time_min", &tr.Start}, {"startTimeMax", "start_time_max", &tr.End}} {
		v := v3Param(r, p.camel, p.snake)
		if v == "" {
			return f, tr, 0, fmt.Errorf("query.%s is required (RFC 3339)", p.camel)
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return f, tr, 0, fmt.Errorf("query.%s: %v", p.camel, err)
		}
		*p.dst = clampTime(t)
	}
	for _, p := range []struct {
		camel, snake string
		dst          *time.Duration
	}{{"durationMin", "duration_min", &f.minDur}, {"durationMax", "duration_max", &f.maxDur}} {
		if v := v3Param(r, p.camel, p.snake); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return f, tr, 0, fmt.Errorf("query.%s: %v", p.camel, err)
			}
			*p.dst = d
		}
	}
	// Attributes come as grpc-gateway map parameters, query.attributes[key]=value, or, as Jaeger
	// UI sends them, as one JSON object of strings in query.attributes.
	for k, vs := range r.URL.Query() {
		if key, ok := strings.CutPrefix(k, "query.attributes["); ok && strings.HasSuffix(key, "]") && len(vs) > 0 {
			f.tags[strings.TrimSuffix(key, "]")] = vs[0]
		}
	}
	if v := r.URL.Query().Get("query.attributes"); v != "" {
		if err := json.Unmarshal([]byte(v), &f.tags); err != nil {
			return f, tr, 0, fmt.Errorf("query.attributes must be a JSON object of strings: %v", err)
		}
	}
	limit := 20
	if v := v3Param(r, "searchDepth", "search_depth"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return f, tr, 0, errors.New("query.searchDepth must be a positive integer")
		}
		limit = n
	}
	return f, tr, limit, nil
}

func (s *Server) jaegerFindV3(w http.ResponseWriter, r *http.Request) {
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
	writeResult(w, traces)
}

type dependency struct {
	Parent    string `json:"parent"`
	Child     string `json:"child"`
	CallCount uint64 `json:"callCount"`
}

func (s *Server) dependencies() []dependency {
	out := []dependency{}
	if s.graph == nil {
		return out
	}
	for _, e := range s.graph.Edges() {
		if e.Client == "user" {
			continue
		}
		out = append(out, dependency{e.Client, e.Server, e.Requests})
	}
	return out
}

func (s *Server) jaegerDependenciesV3(w http.ResponseWriter, r *http.Request) {
	type depV3 struct {
		Parent    string `json:"parent"`
		Child     string `json:"child"`
		CallCount string `json:"callCount"` // uint64 in proto3 JSON is a string
	}
	out := []depV3{}
	for _, d := range s.dependencies() {
		out = append(out, depV3{d.Parent, d.Child, strconv.FormatUint(d.CallCount, 10)})
	}
	writeJSON(w, 200, map[string]any{"dependencies": out})
}

// jaegerDependencies is the classic API's shape; counts are since start, whatever endTs and
// lookback ask for, as the service graph keeps no history.
func (s *Server) jaegerDependencies(w http.ResponseWriter, r *http.Request) {
	deps := s.dependencies()
	writeJSON(w, 200, map[string]any{"data": deps, "total": len(deps), "limit": 0, "offset": 0, "errors": nil})
}

// ---- classic Jaeger JSON (Jaeger UI) ----

type jTag struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

type jRef struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

type jLog struct {
	Timestamp int64  `json:"timestamp"`
	Fields    []jTag `json:"fields"`
}

type jSpan struct {
	TraceID       string   `json:"traceID"`
	SpanID        string   `json:"spanID"`
	OperationName string   `json:"operationName"`
	References    []jRef   `json:"references"`
	StartTime     int64    `json:"startTime"`
	Duration      int64    `json:"duration"`
	Tags          []jTag   `json:"tags"`
	Logs          []jLog   `json:"logs"`
	ProcessID     string   `json:"processID"`
	Warnings      []string `json:"warnings"`
	Flags         uint32   `json:"flags"`
}

type jProcess struct {
	ServiceName string `json:"serviceName"`
	Tags        []jTag `json:"tags"`
}

type jTrace struct {
	TraceID   string              `json:"traceID"`
	Spans     []jSpan             `json:"spans"`
	Processes map[string]jProcess `json:"processes"`
	Warnings  []string            `json:"warnings"`
}

func jTags(kvs []*commonpb.KeyValue) []jTag {
	out := []jTag{}
	for _, kv := range kvs {
		t := jTag{Key: kv.Key}
		switch x := kv.Value.GetValue().(type) {
		case *commonpb.AnyValue_BoolValue:
			t.Type, t.Value = "bool", x.BoolValue
		case *commonpb.AnyValue_IntValue:
			t.Type, t.Value = "int64", x.IntValue
		case *commonpb.AnyValue_DoubleValue:
			t.Type, t.Value = "float64", x.DoubleValue
		case *commonpb.AnyValue_BytesValue:
			t.Type, t.Value = "binary", base64.StdEncoding.EncodeToString(x.BytesValue)
		default:
			t.Type, t.Value = "string", anyString(kv.Value)
		}
		out = append(out, t)
	}
	return out
}

// toJaeger converts an OTLP trace the way Jaeger's own OTLP translator does: a process per
// resource, span kind and status as tags, events as logs, parent and links as references.
func toJaeger(td *tracepb.TracesData) jTrace {
	t := jTrace{Processes: map[string]jProcess{}, Spans: []jSpan{}}
	for i, rs := range td.ResourceSpans {
		pid := fmt.Sprintf("p%d", i+1)
		var tags []*commonpb.KeyValue
		for _, kv := range rs.Resource.GetAttributes() {
			if kv.Key != "service.name" {
				tags = append(tags, kv)
			}
		}
		t.Processes[pid] = jProcess{ServiceName: serviceOf(rs.Resource.GetAttributes()), Tags: jTags(tags)}
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				js := jSpan{TraceID: hex.EncodeToString(sp.TraceId), SpanID: hex.EncodeToString(sp.SpanId), OperationName: sp.Name,
					References: []jRef{}, StartTime: int64(sp.StartTimeUnixNano / 1000),
					Duration: int64((sp.EndTimeUnixNano - sp.StartTimeUnixNano) / 1000), ProcessID: pid, Flags: sp.Flags & 0xff,
					Tags: jTags(sp.Attributes), Logs: []jLog{}}
				t.TraceID = js.TraceID
				if len(sp.ParentSpanId) > 0 {
					js.References = append(js.References, jRef{"CHILD_OF", js.TraceID, hex.EncodeToString(sp.ParentSpanId)})
				}
				for _, l := range sp.Links {
					js.References = append(js.References, jRef{"FOLLOWS_FROM", hex.EncodeToString(l.TraceId), hex.EncodeToString(l.SpanId)})
				}
				if k := kindName(sp.Kind); k != "" && k != "internal" {
					js.Tags = append(js.Tags, jTag{"span.kind", "string", k})
				}
				if sp.Status.GetCode() != tracepb.Status_STATUS_CODE_UNSET {
					js.Tags = append(js.Tags, jTag{"otel.status_code", "string", strings.TrimPrefix(sp.Status.GetCode().String(), "STATUS_CODE_")})
					if sp.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR {
						js.Tags = append(js.Tags, jTag{"error", "bool", true})
					}
					if sp.Status.GetMessage() != "" {
						js.Tags = append(js.Tags, jTag{"otel.status_description", "string", sp.Status.GetMessage()})
					}
				}
				if n := ss.Scope.GetName(); n != "" {
					js.Tags = append(js.Tags, jTag{"otel.scope.name", "string", n})
				}
				for _, ev := range sp.Events {
					fields := append([]jTag{{"event", "string", ev.Name}}, jTags(ev.Attributes)...)
					js.Logs = append(js.Logs, jLog{int64(ev.TimeUnixNano / 1000), fields})
				}
				t.Spans = append(t.Spans, js)
			}
		}
	}
	return t
}

func writeJaegerData(w http.ResponseWriter, data any, total int) {
	writeJSON(w, 200, map[string]any{"data": data, "total": total, "limit": 0, "offset": 0, "errors": nil})
}

func (s *Server) jaegerServices(w http.ResponseWriter, r *http.Request) {
	ops, err := s.serviceOperations(r.Context())
	if err != nil {
		jaegerError(w, 500, err.Error())
		return
	}
	names := sortedKeys(ops)
	writeJaegerData(w, names, len(names))
}

func (s *Server) jaegerServiceOperations(w http.ResponseWriter, r *http.Request) {
	ops, err := s.operationsOf(r, r.PathValue("service"), "")
	if err != nil {
		jaegerError(w, 500, err.Error())
		return
	}
	seen := map[string]bool{}
	names := []string{}
	for _, o := range ops {
		if !seen[o.Name] {
			seen[o.Name] = true
			names = append(names, o.Name)
		}
	}
	writeJaegerData(w, names, len(names))
}

func (s *Server) jaegerOperations(w http.ResponseWriter, r *http.Request) {
	ops, err := s.operationsOf(r, r.URL.Query().Get("service"), r.URL.Query().Get("spanKind"))
	if err != nil {
		jaegerError(w, 500, err.Error())
		return
	}
	writeJaegerData(w, ops, len(ops))
}

func (s *Server) jaegerTrace(w http.ResponseWriter, r *http.Request) {
	if td := s.jaegerFindByID(w, r); td != nil {
		writeJaegerData(w, []jTrace{toJaeger(td)}, 1)
	}
}

// jaegerFind is Jaeger UI's search: service, operation, tags (JSON or key:value logfmt),
// start/end in microseconds, minDuration/maxDuration as Go durations, limit.
func (s *Server) jaegerFind(w http.ResponseWriter, r *http.Request) {
	qv := r.URL.Query()
	f := traceFilter{service: qv.Get("service"), operation: qv.Get("operation"), tags: map[string]string{}}
	if t := qv.Get("tags"); t != "" {
		if err := json.Unmarshal([]byte(t), &f.tags); err != nil {
			jaegerError(w, 400, "tags must be a JSON object of strings: "+err.Error())
			return
		}
	}
	for _, t := range qv["tag"] { // key:value, repeated
		k, v, ok := strings.Cut(t, ":")
		if !ok {
			jaegerError(w, 400, "tag must be key:value")
			return
		}
		f.tags[k] = v
	}
	var tr query.TimeRange
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"start", &tr.Start}, {"end", &tr.End}} {
		if v := qv.Get(p.name); v != "" {
			us, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				jaegerError(w, 400, p.name+" must be microseconds since the epoch")
				return
			}
			*p.dst = clampTime(time.UnixMicro(us))
		}
	}
	if tr.Start.IsZero() {
		tr.Start = time.Now().Add(-time.Hour)
	}
	for _, p := range []struct {
		name string
		dst  *time.Duration
	}{{"minDuration", &f.minDur}, {"maxDuration", &f.maxDur}} {
		if v := qv.Get(p.name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				jaegerError(w, 400, p.name+": "+err.Error())
				return
			}
			*p.dst = d
		}
	}
	limit := 20
	if v := qv.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			jaegerError(w, 400, "limit must be a positive integer")
			return
		}
		limit = n
	}
	traces, err := s.findJaeger(r.Context(), f, tr, limit)
	if err != nil {
		jaegerError(w, 500, err.Error())
		return
	}
	out := make([]jTrace, 0, len(traces))
	for _, td := range traces {
		out = append(out, toJaeger(td))
	}
	writeJaegerData(w, out, len(out))
}

// anyString renders an attribute value as Jaeger's string tags show it.
func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BytesValue:
		return base64.StdEncoding.EncodeToString(x.BytesValue)
	}
	b, _ := json.Marshal(v)
	return string(b)
}
