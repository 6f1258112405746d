package server_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/read/search"
	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
	"github.com/ariadne-tracing/ariadne/internal/tools/guidetrace"
)

// Short names of the guide's traces, for expectations.
const (
	ct = guidetrace.NameCreateTask
	pd = guidetrace.NamePermissionDenied
	nt = guidetrace.NameNotify
	pm = guidetrace.NameProcessMultiple
)

type searchCase struct {
	q    string
	want []string // guide traces that match, newest first; every other must not
	// check looks further at the answer: which spans, which spansets.
	check func(t *testing.T, byName map[string]search.Trace)
}

func spanNames(ss search.SpanSet) []string {
	var out []string
	for _, s := range ss.Spans {
		out = append(out, s.Name)
	}
	return out
}

func spanAttr(s search.Span, key string) (search.Value, bool) {
	for _, a := range s.Attributes {
		if a.Key == key {
			return a.Value, true
		}
	}
	return search.Value{}, false
}

var searchCases = []searchCase{
	{q: `{ resource.service.name = "task-api" && status = error }`, want: []string{pm, pd},
		check: func(t *testing.T, r map[string]search.Trace) {
			if m := r[pd].SpanSets[0].Matched; m != 3 {
				t.Errorf("permission-denied: %d error spans matched, want 3", m)
			}
			if m := r[pm].SpanSets[0].Matched; m != 3 {
				t.Errorf("process-multiple: %d error spans matched, want 3 (parent and two children)", m)
			}
		}},
	{q: `{ span.db.system = "mongodb" && name = "pymongo.insert_one" && duration > 100ms }`, want: []string{ct},
		check: func(t *testing.T, r map[string]search.Trace) {
			sp := r[ct].SpanSets[0].Spans
			if len(sp) != 1 || hex.EncodeToString(sp[0].SpanID) != guidetrace.CreateTaskDBSpanID.String() {
				t.Fatalf("spans %+v, want only the DB span", sp)
			}
			if sp[0].DurationNanos != int64(180*time.Millisecond) {
				t.Errorf("DB span lasts %d ns", sp[0].DurationNanos)
			}
			if v, ok := spanAttr(sp[0], "db.system"); !ok || v.String != "mongodb" {
				t.Errorf("DB span lacks the db.system attribute it matched on: %+v", sp[0].Attributes)
			}
		}},
	{q: `{ span.db.system = "mongodb" && duration > 200ms }`},
	{q: `{ rootName = "POST /api/tasks" } >> { span.db.system = "mongodb" }`, want: []string{ct},
		check: func(t *testing.T, r map[string]search.Trace) {
			if got := spanNames(r[ct].SpanSets[0]); !slices.Equal(got, []string{"pymongo.insert_one"}) {
				t.Errorf("structural result spans %v, want the right-hand side's", got)
			}
		}},
	{q: `{ rootName = "DELETE /api/tasks/{id}" } >> { span.db.system = "mongodb" }`},
	{q: `{ } | count() > 5`, want: []string{pm, ct}},
	{q: `{ } | count() = 5`, want: []string{nt}},
	{q: `{ status = error } | by(resource.service.name)`, want: []string{pm, pd},
		check: func(t *testing.T, r map[string]search.Trace) {
			for _, n := range []string{pm, pd} {
				ss := r[n].SpanSets
				if len(ss) != 1 || len(ss[0].Attributes) != 1 || ss[0].Attributes[0].Key != "by(resource.service.name)" ||
					ss[0].Attributes[0].Value.String != "task-api" {
					t.Errorf("%s: spansets %+v, want one labelled by(resource.service.name)=task-api", n, ss)
				}
			}
		}},
	{q: `{ status = error } | by(name)`, want: []string{pm, pd},
		check: func(t *testing.T, r map[string]search.Trace) {
			if n := len(r[pd].SpanSets); n != 3 {
				t.Errorf("permission-denied: %d spansets, want one per failing span name (3)", n)
			}
			if n := len(r[pm].SpanSets); n != 2 {
				t.Errorf("process-multiple: %d spansets, want 2 (parent, children)", n)
			}
		}},
	{q: `{ status = error } | by(name) | coalesce()`, want: []string{pm, pd},
		check: func(t *testing.T, r map[string]search.Trace) {
			if n := len(r[pd].SpanSets); n != 1 || r[pd].SpanSets[0].Matched != 3 {
				t.Errorf("coalesce left %d spansets: %+v", n, r[pd].SpanSets)
			}
		}},
	{q: `{ resource.service.name = "task-api" } > { resource.service.name = "notification-service" }`, want: []string{nt},
		check: func(t *testing.T, r map[string]search.Trace) {
			if got := spanNames(r[nt].SpanSets[0]); !slices.Equal(got, []string{"POST " + guidetrace.NotificationRoute}) {
				t.Errorf("child across services %v, want the notification server span", got)
			}
		}},
	{q: `{ resource.service.name = "notification-service" } > { resource.service.name = "task-api" }`},
	// Unscoped: the span attribute service.name the guide sets on notify_external_service counts.
	{q: `{ .service.name = "notification-service" }`, want: []string{nt},
		check: func(t *testing.T, r map[string]search.Trace) {
			if m := r[nt].SpanSets[0].Matched; m != 3 {
				t.Errorf("%d spans, want the two notification-service spans and notify_external_service", m)
			}
		}},
	{q: `{ span.service.name = "notification-service" }`, want: []string{nt},
		check: func(t *testing.T, r map[string]search.Trace) {
			if got := spanNames(r[nt].SpanSets[0]); !slices.Equal(got, []string{"notify_external_service"}) {
				t.Errorf("span-scoped match %v", got)
			}
		}},
	{q: `{ resource.service.name = "nope" }`},
	{q: `{ name =~ "process_.*" }`, want: []string{pm}},
	{q: `{ name =~ "process" }`},
	{q: `{ name !~ ".*a.*" }`, want: []string{nt, ct}}, // "POST" and "record_metrics" lack an "a"
	{q: `{ span.user.roles = "viewer" }`, want: []string{pd}},
	{q: `{ span.tasks.durations_ms = 110 }`, want: []string{pm}},
	{q: `{ span.db.system != nil }`, want: []string{ct}},
	{q: `{ name = "check_authorization" && span.db.system = nil }`, want: []string{pd}},
	{q: `{ name = "pymongo.insert_one" && span.db.system = nil }`},
	{q: `{ event:name = "exception" }`, want: []string{pm, pd}},
	{q: `{ event.task.id = "uuid-1234" }`, want: []string{ct}},
	{q: `{ kind = client }`, want: []string{nt, ct}},
	{q: `{ kind = server && status = error }`, want: []string{pd}},
	{q: `{ statusMessage = "Forbidden" }`, want: []string{pd}},
	{q: `{ traceDuration > 200ms }`, want: []string{ct}},
	{q: `{ rootServiceName = "task-api" && name = "send_notification" }`, want: []string{nt}},
	{q: `{ } | avg(duration) > 70ms`, want: []string{pm, ct}},
	{q: `{ } | avg(duration) > 100ms`},
	{q: `{ } | max(duration) > 200ms`, want: []string{ct}},
	{q: `{ } | min(duration) >= 30ms`, want: []string{pm, nt}},
	{q: `{ } | sum(duration) > 500ms`, want: []string{ct}},
	{q: `{ name = "delete_task" } !> { status = error }`, want: []string{pm, pd},
		check: func(t *testing.T, r map[string]search.Trace) {
			if got := spanNames(r[pd].SpanSets[0]); slices.Contains(got, "check_authorization") || len(got) != 2 {
				t.Errorf("negated child kept %v, want the root and delete_task only", got)
			}
		}},
	{q: `{ name = "serialize_task" } ~ { name = "pymongo.insert_one" }`, want: []string{ct}},
	{q: `{ name = "validate_input" } ~ { name = "pymongo.insert_one" }`},
	{q: `{ name = "pymongo.insert_one" } << { name = "motor_task_repository.add" }`, want: []string{ct}},
	{q: `{ name = "pymongo.insert_one" } < { name = "motor_task_repository.add" }`, want: []string{ct}},
	{q: `{ name = "pymongo.insert_one" } < { name = "POST /api/tasks" }`},
	{q: `{ name = "pymongo.insert_one" } !<< { kind = server }`, want: []string{nt, pd},
		check: func(t *testing.T, r map[string]search.Trace) {
			if got := spanNames(r[nt].SpanSets[0]); len(got) != 2 {
				t.Errorf("server spans %v, want both notify server spans", got)
			}
		}},
	{q: `{ name = "validate_input" } && { name = "record_metrics" }`, want: []string{ct},
		check: func(t *testing.T, r map[string]search.Trace) {
			if m := r[ct].SpanSets[0].Matched; m != 2 {
				t.Errorf("&& matched %d, want the union of both sides (2)", m)
			}
		}},
	{q: `{ name = "validate_input" } && { name = "check_authorization" }`},
	{q: `{ name = "validate_input" } || { name = "check_authorization" }`, want: []string{pd, ct}},
	{q: `{ name = "pymongo.insert_one" } | select(span.db.collection, status)`, want: []string{ct},
		check: func(t *testing.T, r map[string]search.Trace) {
			sp := r[ct].SpanSets[0].Spans[0]
			if v, ok := spanAttr(sp, "db.collection"); !ok || v.String != "tasks" {
				t.Errorf("select(span.db.collection) missing: %+v", sp.Attributes)
			}
			if v, ok := spanAttr(sp, "status"); !ok || v.String != "unset" {
				t.Errorf("select(status) missing: %+v", sp.Attributes)
			}
		}},
	{q: `{ span.http.response.status_code >= 400 }`, want: []string{pd}},
	{q: `{ span.http.response.status_code = 201 }`, want: []string{ct}},
	{q: `{ span.batch.success_ratio > 0.5 && span.batch.concurrent = true }`, want: []string{pm}},
	{q: `{ instrumentation:name = "opentelemetry.instrumentation.pymongo" }`, want: []string{ct}},
	{q: `{ link:traceID = "` + guidetrace.CreateTaskTraceID.String() + `" }`, want: []string{pm}},
	{q: `{ link.link.reason = "created_by" }`, want: []string{pm}},
	{q: `{ resource.deployment.environment = "development" && duration < 5ms }`, want: []string{pd}},
	{q: `{ } | { status = error } | count() >= 3`, want: []string{pm, pd}},
}

func runSearchCases(t *testing.T, e *search.Engine, traces []guidetrace.Trace) map[string]string {
	t.Helper()
	nameOf := map[[16]byte]string{}
	for _, tr := range traces {
		nameOf[tr.TraceID] = tr.Name
	}
	answers := map[string]string{}
	for _, c := range searchCases {
		q, err := traceql.Parse(c.q)
		if err != nil {
			t.Fatalf("%s: %v", c.q, err)
		}
		res, err := e.Search(context.Background(), search.Request{Query: q, Limit: 50, SpansPerSpanSet: 100})
		if err != nil {
			t.Fatalf("%s: %v", c.q, err)
		}
		var got []string
		byName := map[string]search.Trace{}
		for _, tr := range res.Traces {
			n, ok := nameOf[tr.ID]
			if !ok {
				t.Errorf("%s: unknown trace %x", c.q, tr.ID)
				continue
			}
			got = append(got, n)
			byName[n] = tr
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s\n got %v\nwant %v (newest first)", c.q, got, c.want)
			continue
		}
		if c.check != nil {
			t.Run(c.q, func(t *testing.T) { c.check(t, byName) })
		}
		b, _ := json.Marshal(res.Traces)
		answers[c.q] = string(b)
	}
	return answers
}

func TestSearchGuideHeadAndBlocks(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	traces, _ := exportGuide(t, s, "grpc")
	e := search.New(s.Store)
	head := runSearchCases(t, e, traces)
	if err := s.Store.Flush(); err != nil {
		t.Fatal(err)
	}
	if st := s.Store.Head().Stats(); st.Spans != 0 || len(s.Store.Blocks()) == 0 {
		t.Fatalf("after flush: head holds %d spans, %d blocks", st.Spans, len(s.Store.Blocks()))
	}
	blocks := runSearchCases(t, e, traces)
	for q, h := range head {
		if b := blocks[q]; b != h {
			t.Errorf("%s: head and blocks differ\nhead   %s\nblocks %s", q, h, b)
		}
	}
}

func TestSearchLimitAndTimeRange(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	traces, _ := exportGuide(t, s, "http")
	if err := s.Store.Flush(); err != nil {
		t.Fatal(err)
	}
	e := search.New(s.Store)
	q, _ := traceql.Parse("{ }")
	res, err := e.Search(context.Background(), search.Request{Query: q, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Traces) != 2 || res.Traces[0].ID != traces[3].TraceID || res.Traces[1].ID != traces[2].TraceID {
		t.Fatalf("limit 2 gave %d traces, want the two newest", len(res.Traces))
	}
	// Only the permission-denied trace starts in this window.
	res, err = e.Search(context.Background(), search.Request{Query: q, Start: traces[1].Start.Add(-time.Millisecond), End: traces[1].Start.Add(time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Traces) != 1 || res.Traces[0].ID != traces[1].TraceID {
		t.Fatalf("time window gave %d traces", len(res.Traces))
	}
	res, err = e.Search(context.Background(), search.Request{Query: q, MinDuration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Traces) != 1 || res.Traces[0].ID != traces[0].TraceID {
		t.Fatalf("minDuration gave %d traces", len(res.Traces))
	}
	// A service no block holds is ruled out from the groups, without reading spans.
	q, _ = traceql.Parse(`{ resource.service.name = "nope" }`)
	res, err = e.Search(context.Background(), search.Request{Query: q})
	if err != nil {
		t.Fatal(err)
	}
	if res.Metrics.SkippedBlocks != res.Metrics.TotalBlocks || res.Metrics.InspectedSpans != 0 {
		t.Errorf("absent service: %+v, want every block skipped", res.Metrics)
	}
	q, _ = traceql.Parse(`{ name = "no-such-span" }`)
	res, _ = e.Search(context.Background(), search.Request{Query: q})
	if res.Metrics.SkippedBlocks != res.Metrics.TotalBlocks {
		t.Errorf("absent span name: %+v, want every block skipped by its name dictionary", res.Metrics)
	}
}

func getJSON(t *testing.T, base, path string, code int, v any) string {
	t.Helper()
	got, body := httpGet(t, base+path, "")
	if got != code {
		t.Fatalf("GET %s: %d %s, want %d", path, got, body, code)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
	}
	return string(body)
}

type searchResponse struct {
	Traces []struct {
		TraceID           string `json:"traceID"`
		RootServiceName   string `json:"rootServiceName"`
		RootTraceName     string `json:"rootTraceName"`
		StartTimeUnixNano string `json:"startTimeUnixNano"`
		DurationMs        *int   `json:"durationMs"`
		SpanSet           *struct {
			Matched int `json:"matched"`
		} `json:"spanSet"`
		SpanSets []struct {
			Spans []struct {
				SpanID            string `json:"spanID"`
				Name              string `json:"name"`
				StartTimeUnixNano string `json:"startTimeUnixNano"`
				DurationNanos     string `json:"durationNanos"`
				Attributes        []struct {
					Key   string         `json:"key"`
					Value map[string]any `json:"value"`
				} `json:"attributes"`
			} `json:"spans"`
			Matched    int `json:"matched"`
			Attributes []struct {
				Key   string         `json:"key"`
				Value map[string]any `json:"value"`
			} `json:"attributes"`
		} `json:"spanSets"`
	} `json:"traces"`
	Metrics map[string]any `json:"metrics"`
}

func TestSearchHTTP(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	traces, _ := exportGuide(t, s, "grpc")
	base := "http://" + s.HTTPAddr
	check := func(stage string) {
		t.Run(stage, func(t *testing.T) { checkSearchHTTP(t, s, base, traces) })
	}
	check("head")
	if err := s.Store.Flush(); err != nil {
		t.Fatal(err)
	}
	check("blocks")
}

func checkSearchHTTP(t *testing.T, s *server.Server, base string, traces []guidetrace.Trace) {
	ct := traces[0]
	q := url.QueryEscape(`{ span.db.system = "mongodb" && name = "pymongo.insert_one" && duration > 100ms }`)
	var sr searchResponse
	getJSON(t, base, "/api/search?q="+q, 200, &sr)
	if len(sr.Traces) != 1 {
		t.Fatalf("%d traces", len(sr.Traces))
	}
	tr := sr.Traces[0]
	if tr.TraceID != ct.TraceID.String() || tr.RootServiceName != "task-api" || tr.RootTraceName != "POST /api/tasks" ||
		tr.DurationMs == nil || *tr.DurationMs != 250 || tr.StartTimeUnixNano != fmt.Sprint(ct.Start.UnixNano()) {
		t.Errorf("trace %+v", tr)
	}
	if tr.SpanSet == nil || tr.SpanSet.Matched != 1 || len(tr.SpanSets) != 1 {
		t.Fatalf("spansets %+v", tr.SpanSets)
	}
	sp := tr.SpanSets[0].Spans[0]
	if sp.SpanID != guidetrace.CreateTaskDBSpanID.String() || sp.Name != "pymongo.insert_one" || sp.DurationNanos != "180000000" {
		t.Errorf("span %+v", sp)
	}
	if len(sp.Attributes) != 1 || sp.Attributes[0].Key != "db.system" || sp.Attributes[0].Value["stringValue"] != "mongodb" {
		t.Errorf("span attributes %+v", sp.Attributes)
	}
	for _, k := range []string{"inspectedTraces", "inspectedBytes", "inspectedSpans", "totalBlocks"} {
		if _, ok := sr.Metrics[k]; !ok {
			t.Errorf("metrics lack %s: %v", k, sr.Metrics)
		}
	}

	// Every trace newest first, spss and limit honoured.
	getJSON(t, base, "/api/search?q="+url.QueryEscape("{}")+"&spss=2", 200, &sr)
	var ids []string
	for _, tr := range sr.Traces {
		ids = append(ids, tr.TraceID)
		if len(tr.SpanSets[0].Spans) > 2 {
			t.Errorf("spss=2 gave %d spans", len(tr.SpanSets[0].Spans))
		}
	}
	want := []string{traces[3].TraceID.String(), traces[2].TraceID.String(), traces[1].TraceID.String(), ct.TraceID.String()}
	if !slices.Equal(ids, want) {
		t.Errorf("{} gave %v, want %v", ids, want)
	}
	getJSON(t, base, "/api/search?q="+url.QueryEscape("{}")+"&limit=1", 200, &sr)
	if len(sr.Traces) != 1 || sr.Traces[0].TraceID != want[0] {
		t.Errorf("limit=1: %d traces", len(sr.Traces))
	}
	// by() labels on spansets.
	getJSON(t, base, "/api/search?q="+url.QueryEscape(`{ status = error } | by(resource.service.name)`), 200, &sr)
	if len(sr.Traces) != 2 || len(sr.Traces[0].SpanSets[0].Attributes) != 1 ||
		sr.Traces[0].SpanSets[0].Attributes[0].Value["stringValue"] != "task-api" {
		t.Errorf("by(): %+v", sr.Traces)
	}
	// Legacy tags and durations.
	getJSON(t, base, "/api/search?tags="+url.QueryEscape("service.name=task-api error=true"), 200, &sr)
	if len(sr.Traces) != 2 {
		t.Errorf("tags error=true: %d traces, want 2", len(sr.Traces))
	}
	getJSON(t, base, "/api/search?tags="+url.QueryEscape(`name="check_authorization"`), 200, &sr)
	if len(sr.Traces) != 1 || sr.Traces[0].TraceID != traces[1].TraceID.String() {
		t.Errorf("tags name=: %+v", sr.Traces)
	}
	getJSON(t, base, "/api/search?minDuration=200ms", 200, &sr)
	if len(sr.Traces) != 1 || sr.Traces[0].TraceID != ct.TraceID.String() {
		t.Errorf("minDuration: %d traces", len(sr.Traces))
	}
	getJSON(t, base, "/api/search?maxDuration=50ms", 200, &sr)
	if len(sr.Traces) != 1 || sr.Traces[0].TraceID != traces[1].TraceID.String() {
		t.Errorf("maxDuration: %d traces", len(sr.Traces))
	}
	start, end := ct.Start.Unix()-1, traces[3].Start.Unix()+1
	getJSON(t, base, fmt.Sprintf("/api/search?start=%d&end=%d", start, end), 200, &sr)
	if len(sr.Traces) != 4 {
		t.Errorf("start/end covering all: %d traces", len(sr.Traces))
	}
	getJSON(t, base, fmt.Sprintf("/api/search?start=%d&end=%d", end+10, end+20), 200, &sr)
	if len(sr.Traces) != 0 {
		t.Errorf("start/end after all: %d traces", len(sr.Traces))
	}

	// Bad requests carry the parser's position.
	body := getJSON(t, base, "/api/search?q="+url.QueryEscape(`{ name = }`), 400, nil)
	if !strings.Contains(body, "1:") {
		t.Errorf("parse error without line:col: %s", body)
	}
	// An intrinsic always has a value, so comparing one with nil is refused, as Tempo does.
	body = getJSON(t, base, "/api/search?q="+url.QueryEscape(`{ span:status = nil }`), 400, nil)
	if !strings.Contains(body, "1:15: cannot compare status with nil") {
		t.Errorf("intrinsic = nil: %s", body)
	}
	for _, p := range []string{"/api/search?limit=-1", "/api/search?spss=x", "/api/search?start=abc", "/api/search?start=20&end=10",
		"/api/search?minDuration=fast", "/api/search?tags=novalue", "/api/search?q=" + url.QueryEscape("{} | rate()")} {
		getJSON(t, base, p, 400, nil)
	}

	// Tag names.
	var v1 struct {
		TagNames []string `json:"tagNames"`
	}
	getJSON(t, base, "/api/search/tags", 200, &v1)
	for _, n := range []string{"service.name", "db.system", "http.route", "deployment.environment"} {
		if !slices.Contains(v1.TagNames, n) {
			t.Errorf("tag names lack %s: %v", n, v1.TagNames)
		}
	}
	var v2 struct {
		Scopes []struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		} `json:"scopes"`
	}
	getJSON(t, base, "/api/v2/search/tags", 200, &v2)
	scopes := map[string][]string{}
	for _, sc := range v2.Scopes {
		scopes[sc.Name] = sc.Tags
	}
	if !slices.Contains(scopes["resource"], "service.name") || slices.Contains(scopes["resource"], "db.system") ||
		!slices.Contains(scopes["span"], "db.system") || !slices.Contains(scopes["intrinsic"], "duration") ||
		!slices.Contains(scopes["event"], "exception.message") || !slices.Contains(scopes["link"], "link.reason") {
		t.Errorf("v2 scopes %v", scopes)
	}
	getJSON(t, base, "/api/v2/search/tags?scope=resource", 200, &v2)
	if len(v2.Scopes) != 1 || v2.Scopes[0].Name != "resource" {
		t.Errorf("scope=resource: %+v", v2.Scopes)
	}
	getJSON(t, base, "/api/v2/search/tags?scope=span&q="+url.QueryEscape(`{ name = "pymongo.insert_one" }`), 200, &v2)
	if len(v2.Scopes) != 1 || !slices.Equal(v2.Scopes[0].Tags, []string{"db.collection", "db.operation", "db.system", "task.priority"}) {
		t.Errorf("span tags of the DB span: %+v", v2.Scopes)
	}
	for _, p := range []string{"/api/v2/search/tags?scope=nope", "/api/v2/search/tags?q=" + url.QueryEscape("{ name = "),
		"/api/search/tags?limit=0", "/api/search/tags?scope=intrinsic"} {
		getJSON(t, base, p, 400, nil)
	}

	// Tag values.
	var tv1 struct {
		TagValues []string `json:"tagValues"`
	}
	getJSON(t, base, "/api/search/tag/service.name/values", 200, &tv1)
	if !slices.Equal(tv1.TagValues, []string{"notification-service", "task-api"}) {
		t.Errorf("v1 service.name values %v", tv1.TagValues)
	}
	type typed struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	}
	var tv2 struct {
		TagValues []typed `json:"tagValues"`
	}
	getJSON(t, base, "/api/v2/search/tag/resource.service.name/values", 200, &tv2)
	if !slices.Equal(tv2.TagValues, []typed{{"string", "notification-service"}, {"string", "task-api"}}) {
		t.Errorf("v2 resource.service.name values %v", tv2.TagValues)
	}
	getJSON(t, base, "/api/v2/search/tag/span.http.response.status_code/values", 200, &tv2)
	if !slices.Equal(tv2.TagValues, []typed{{"int", "200"}, {"int", "201"}, {"int", "202"}, {"int", "403"}}) {
		t.Errorf("v2 status code values %v", tv2.TagValues)
	}
	getJSON(t, base, "/api/v2/search/tag/status/values", 200, &tv2)
	if !slices.Equal(tv2.TagValues, []typed{{"status", "error"}, {"status", "ok"}, {"status", "unset"}}) {
		t.Errorf("v2 status values %v", tv2.TagValues)
	}
	getJSON(t, base, "/api/v2/search/tag/name/values?q="+url.QueryEscape(`{ status = error }`), 200, &tv2)
	if !slices.Equal(tv2.TagValues, []typed{{"string", "DELETE /api/tasks/{id}"}, {"string", "check_authorization"},
		{"string", "delete_task"}, {"string", "process_multiple_tasks"}, {"string", "process_single_task"}}) {
		t.Errorf("v2 names of error spans %v", tv2.TagValues)
	}
	getJSON(t, base, "/api/v2/search/tag/span.batch.concurrent/values", 200, &tv2)
	if !slices.Equal(tv2.TagValues, []typed{{"bool", "true"}}) {
		t.Errorf("bool values %v", tv2.TagValues)
	}
	for _, p := range []string{"/api/v2/search/tag/span.a%20b%20c/values", "/api/v2/search/tag/name/values?q=" + url.QueryEscape("{ name = "),
		"/api/v2/search/tag/name/values?limit=x"} {
		getJSON(t, base, p, 400, nil)
	}

	// TraceQL metrics.
	mstart, mend := ct.Start.Add(-time.Second).Unix(), traces[3].End.Add(2*time.Second).Unix()
	rng := fmt.Sprintf("&start=%d&end=%d", mstart, mend)
	type series struct {
		Labels []struct {
			Key   string         `json:"key"`
			Value map[string]any `json:"value"`
		} `json:"labels"`
		PromLabels string `json:"promLabels"`
		Samples    []struct {
			TimestampMs string  `json:"timestampMs"`
			Value       float64 `json:"value"`
		} `json:"samples"`
		Value     *float64 `json:"value"`
		Exemplars []struct {
			Labels []struct {
				Key   string            `json:"key"`
				Value map[string]string `json:"value"`
			} `json:"labels"`
			Value       float64 `json:"value"`
			TimestampMs string  `json:"timestampMs"`
		} `json:"exemplars"`
	}
	var mr struct {
		Series  []series       `json:"series"`
		Metrics map[string]any `json:"metrics"`
	}
	sum := func(s series) float64 {
		var v float64
		for _, x := range s.Samples {
			v += x.Value
		}
		return v
	}
	getJSON(t, base, "/api/metrics/query_range?q="+url.QueryEscape(`{ } | count_over_time() by (resource.service.name)`)+rng+"&step=1s", 200, &mr)
	counts := map[string]float64{}
	for _, s := range mr.Series {
		counts[s.PromLabels] = sum(s)
		if len(s.Labels) != 1 || s.Labels[0].Key != "resource.service.name" {
			t.Errorf("labels %+v", s.Labels)
		}
	}
	if counts[`{resource.service.name="task-api"}`] != 21 || counts[`{resource.service.name="notification-service"}`] != 2 {
		t.Errorf("span counts by service %v, want 21 and 2", counts)
	}
	getJSON(t, base, "/api/metrics/query_range?q="+url.QueryEscape(`{ status = error } | rate()`)+rng+"&step=60s", 200, &mr)
	if len(mr.Series) != 1 || len(mr.Series[0].Samples) == 0 || sum(mr.Series[0])*60 < 5.99 || sum(mr.Series[0])*60 > 6.01 {
		t.Errorf("rate of error spans %+v, want 6 spans over 60s steps", mr.Series)
	}
	getJSON(t, base, "/api/metrics/query_range?q="+url.QueryEscape(`{ name = "process_single_task" } | quantile_over_time(duration, .5, .99)`)+rng+"&step=1h", 200, &mr)
	// Quantiles come from a sketch with 1% relative error.
	if len(mr.Series) != 2 || mr.Series[0].Labels[0].Key != "p" || abs(mr.Series[0].Samples[0].Value-0.06) > 0.0006 {
		t.Errorf("quantiles %+v, want p50 of 30,40,60,95,110 ms = 0.06s (within 1%%)", mr.Series)
	}
	for fn, want := range map[string]float64{"min_over_time": 0.03, "max_over_time": 0.11, "sum_over_time": 0.335, "avg_over_time": 0.067} {
		getJSON(t, base, "/api/metrics/query_range?q="+url.QueryEscape(`{ name = "process_single_task" } | `+fn+`(duration)`)+rng+"&step=1h", 200, &mr)
		if len(mr.Series) != 1 || len(mr.Series[0].Samples) != 1 || abs(mr.Series[0].Samples[0].Value-want) > 1e-9 {
			t.Errorf("%s: %+v, want %v", fn, mr.Series, want)
		}
	}
	// process_single_task durations 30, 40, 60, 95, 110 ms fall in the power-of-two buckets
	// 0.03125 (30), 0.0625 (40, 60) and 0.125 (95, 110) seconds.
	getJSON(t, base, "/api/metrics/query_range?q="+url.QueryEscape(`{ name = "process_single_task" } | histogram_over_time(duration)`)+rng+"&step=1h", 200, &mr)
	hist := map[string]float64{}
	for _, s := range mr.Series {
		hist[s.PromLabels] = sum(s)
	}
	if hist[`{__bucket="0.03125"}`] != 1 || hist[`{__bucket="0.0625"}`] != 2 || hist[`{__bucket="0.125"}`] != 2 || len(hist) != 3 {
		t.Errorf("histogram_over_time %v", hist)
	}
	// Exemplars when asked, as Tempo writes them: trace:id and span:id labels, value, time.
	mr.Series = nil
	getJSON(t, base, "/api/metrics/query_range?q="+url.QueryEscape(`{ name = "process_single_task" } | max_over_time(duration)`)+rng+"&step=1h&exemplars=3", 200, &mr)
	if len(mr.Series) != 1 || len(mr.Series[0].Exemplars) != 1 {
		t.Fatalf("exemplars: %+v, want one series with one exemplar (one step)", mr.Series)
	}
	ex := mr.Series[0].Exemplars[0]
	if len(ex.Labels) != 2 || ex.Labels[0].Key != "trace:id" || len(ex.Labels[0].Value["stringValue"]) != 32 ||
		ex.Labels[1].Key != "span:id" || len(ex.Labels[1].Value["stringValue"]) != 16 || ex.TimestampMs == "" {
		t.Errorf("exemplar %+v", ex)
	}
	if ex.Value < 0.03 || ex.Value > 0.11 {
		t.Errorf("exemplar value %v, want a process_single_task duration in seconds", ex.Value)
	}
	mr.Series = nil
	getJSON(t, base, "/api/metrics/query_range?q="+url.QueryEscape(`{ } | rate()`)+rng+"&step=1h", 200, &mr)
	if len(mr.Series) != 1 || mr.Series[0].PromLabels != `{__name__="rate"}` || len(mr.Series[0].Exemplars) != 0 {
		t.Errorf("unlabelled rate: %+v, want one series named rate and no exemplars unasked", mr.Series)
	}
	getJSON(t, base, "/api/metrics/query_range?q="+url.QueryEscape(`{ } | rate()`)+rng+"&exemplars=x", 400, nil)
	getJSON(t, base, "/api/metrics/query?q="+url.QueryEscape(`{ } | count_over_time()`)+rng, 200, &mr)
	if len(mr.Series) != 1 || mr.Series[0].Value == nil || *mr.Series[0].Value != 23 {
		t.Errorf("instant count %+v, want 23 spans", mr.Series)
	}
	for _, p := range []string{"/api/metrics/query_range", "/api/metrics/query_range?q=" + url.QueryEscape("{ }"),
		"/api/metrics/query_range?q=" + url.QueryEscape("{ } | rate(") + rng,
		"/api/metrics/query_range?q=" + url.QueryEscape("{ } | rate()") + rng + "&step=abc",
		"/api/metrics/query?q=" + url.QueryEscape("{ } | rate()") + "&start=20&end=10"} {
		getJSON(t, base, p, 400, nil)
	}
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}
