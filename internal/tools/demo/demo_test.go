package demo_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/insight/analyze"
	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
	"github.com/ariadne-tracing/ariadne/internal/tools/demo"
	"github.com/ariadne-tracing/ariadne/internal/tools/demo/traffic"
)

func startAriadne(t *testing.T) *server.Server {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.OTLPGRPCAddr, cfg.OTLPHTTPAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ZipkinAddr = "127.0.0.1:0"
	s, err := server.Start(cfg, api.BuildInfo{Version: "test"}, nil)
	if err != nil {
		t.Fatalf("start Ariadne: %v", err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	return s
}

// span is a span with the service that reported it.
type span struct {
	*tracepb.Span
	service string
}

func (s span) attr(key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return anyString(kv.Value)
		}
	}
	return ""
}

func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	}
	return v.String()
}

type traceTree struct {
	td    *tracepb.TracesData
	spans []span
}

func (tr traceTree) named(name string) []span {
	var out []span
	for _, s := range tr.spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func (tr traceTree) one(t *testing.T, name string) span {
	t.Helper()
	got := tr.named(name)
	if len(got) != 1 {
		t.Fatalf("want one %q span, got %d; trace has %v", name, len(got), tr.names())
	}
	return got[0]
}

func (tr traceTree) children(parent span) []span {
	var out []span
	for _, s := range tr.spans {
		if string(s.ParentSpanId) == string(parent.SpanId) && len(s.ParentSpanId) > 0 {
			out = append(out, s)
		}
	}
	return out
}

func (tr traceTree) names() []string {
	var out []string
	for _, s := range tr.spans {
		out = append(out, s.Name)
	}
	return out
}

func childNames(spans []span) map[string]int {
	out := map[string]int{}
	for _, s := range spans {
		out[s.Name]++
	}
	return out
}

// fetch reads a trace back from Ariadne through the protobuf form of the v2 API, waiting for it to
// have at least minSpans spans: the two services' spans may arrive in separate exports.
func fetch(t *testing.T, s *server.Server, traceID string, minSpans int) traceTree {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var last string
	for {
		tr, err := fetchOnce(s, traceID)
		if err == nil && len(tr.spans) >= minSpans {
			return tr
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%d spans: %v", len(tr.spans), tr.names())
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s: %s", traceID, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func fetchOnce(s *server.Server, traceID string) (traceTree, error) {
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/api/v2/traces/%s", s.HTTPAddr, traceID), nil)
	if err != nil {
		return traceTree{}, err
	}
	req.Header.Set("Accept", "application/protobuf")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return traceTree{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return traceTree{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return traceTree{}, fmt.Errorf("status %d: %.200s", resp.StatusCode, body)
	}
	num, typ, n := protowire.ConsumeTag(body)
	if num != 1 || typ != protowire.BytesType {
		return traceTree{}, fmt.Errorf("unexpected first field %d/%d", num, typ)
	}
	inner, m := protowire.ConsumeBytes(body[n:])
	if m < 0 {
		return traceTree{}, fmt.Errorf("truncated answer")
	}
	td := &tracepb.TracesData{}
	if err := proto.Unmarshal(inner, td); err != nil {
		return traceTree{}, err
	}
	tr := traceTree{td: td}
	for _, rs := range td.ResourceSpans {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				service = anyString(kv.Value)
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				tr.spans = append(tr.spans, span{sp, service})
			}
		}
	}
	return tr, nil
}

// TestDemoAgainstAriadne runs the whole demo for a few seconds against an in-process Ariadne and
// checks the guide's stories in the traces it stored.
func TestDemoAgainstAriadne(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo for several seconds")
	}
	s := startAriadne(t)
	rec := tracetest.NewSpanRecorder()

	var mu sync.Mutex
	first := map[traffic.Story]demo.Trace{}
	stories := []traffic.Story{traffic.StoryCreate, traffic.StoryNotify, traffic.StorySlowQuery,
		traffic.StoryPermissionDenied, traffic.StoryBatch, traffic.StoryBroken}
	// The traffic's first round plays every story once; the demo stops as soon as each has
	// finished, however long a busy machine takes, up to a bound far beyond that.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := demo.Run(ctx, demo.Config{
		OTLPEndpoint:   s.GRPCAddr,
		ArchiveRows:    5_000, // its scan is still by far the slowest span, and stays well inside the client timeout under -race on a busy machine
		Rate:           10,
		SpanProcessors: []sdktrace.SpanProcessor{rec},
		OnTrace: func(tr demo.Trace) {
			mu.Lock()
			defer mu.Unlock()
			if _, ok := first[tr.Story]; !ok && tr.TraceID != "" {
				first[tr.Story] = tr
			}
			for _, st := range stories {
				if _, ok := first[st]; !ok {
					return
				}
			}
			cancel()
		},
	})
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	for _, st := range stories {
		if _, ok := first[st]; !ok {
			t.Fatalf("no %s request was made; got %v", st, first)
		}
	}

	t.Run("create", func(t *testing.T) {
		tr := fetch(t, s, first[traffic.StoryCreate].TraceID, 10)
		root := tr.one(t, "POST /api/tasks")
		if len(root.ParentSpanId) != 0 || root.Kind != tracepb.Span_SPAN_KIND_SERVER || root.service != "task-api" {
			t.Fatalf("root %v kind %v service %s", root.Name, root.Kind, root.service)
		}
		want := map[string]map[string]int{
			"POST /api/tasks":       {"create_task_entity": 1, "task_repository.add": 1, "record_metrics": 1},
			"create_task_entity":    {"validate_input": 1, "create_domain_object": 1},
			"task_repository.add":   {"serialize_task": 1, "INSERT tasks": 1, "publish_domain_events": 1},
			"publish_domain_events": {"INSERT task_events": 1},
		}
		for parent, kids := range want {
			got := childNames(tr.children(tr.one(t, parent)))
			if fmt.Sprint(got) != fmt.Sprint(kids) {
				t.Errorf("children of %s: got %v, want %v", parent, got, kids)
			}
		}
		entity := tr.one(t, "create_task_entity")
		var events []string
		for _, e := range entity.Events {
			events = append(events, e.Name)
		}
		if strings.Join(events, ",") != "creating_task_entity,task_entity_created" {
			t.Errorf("create_task_entity events %v", events)
		}
		if entity.attr("task.id") == "" || entity.attr("task.priority") == "" || entity.Status.GetCode() != tracepb.Status_STATUS_CODE_OK {
			t.Errorf("create_task_entity attributes/status: %v %v", entity.Attributes, entity.Status)
		}
		insert := tr.one(t, "INSERT tasks")
		if insert.attr("db.system") != "sqlite" || insert.attr("db.operation.name") != "INSERT" ||
			insert.attr("db.collection.name") != "tasks" || !strings.HasPrefix(insert.attr("db.query.text"), "INSERT INTO tasks") ||
			insert.Kind != tracepb.Span_SPAN_KIND_CLIENT {
			t.Errorf("db span: kind %v %v", insert.Kind, insert.Attributes)
		}
	})

	t.Run("notify crosses services", func(t *testing.T) {
		tr := fetch(t, s, first[traffic.StoryNotify].TraceID, 7)
		var client, srv span
		for _, sp := range tr.spans {
			if sp.service == "task-api" && sp.Kind == tracepb.Span_SPAN_KIND_CLIENT && sp.attr("db.system") == "" {
				client = sp
			}
			if sp.service == "notification-service" && sp.Kind == tracepb.Span_SPAN_KIND_SERVER {
				srv = sp
			}
		}
		if client.Span == nil || srv.Span == nil {
			t.Fatalf("want a task-api CLIENT span and a notification-service SERVER span, got %v", tr.names())
		}
		if string(srv.ParentSpanId) != string(client.SpanId) {
			t.Errorf("notification-service span's parent %x is not the client span %x", srv.ParentSpanId, client.SpanId)
		}
		notify := tr.one(t, "notify_external_service")
		if string(client.ParentSpanId) != string(notify.SpanId) {
			t.Errorf("client span is not under notify_external_service")
		}
		if srv.Name != "POST /api/notify" {
			t.Errorf("server span name %q", srv.Name)
		}
		if n := len(tr.named("deliver_notification")); n == 0 {
			t.Errorf("no deliver_notification spans in %v", tr.names())
		}
	})

	t.Run("slow query", func(t *testing.T) {
		tr := fetch(t, s, first[traffic.StorySlowQuery].TraceID, 4)
		// Self time, as Ariadne's tree view ranks spans: duration minus the children's.
		var slowest span
		var most uint64
		for _, sp := range tr.spans {
			self := sp.EndTimeUnixNano - sp.StartTimeUnixNano
			for _, c := range tr.children(sp) {
				self -= min(self, c.EndTimeUnixNano-c.StartTimeUnixNano)
			}
			if self >= most {
				slowest, most = sp, self
			}
		}
		if slowest.Name != "SELECT tasks_archive" || !strings.Contains(slowest.attr("db.query.text"), "lower(department)") {
			t.Fatalf("slowest span is %q (%v self time), want the archive scan; trace %v", slowest.Name, time.Duration(most), tr.names())
		}
		t.Logf("archive scan over 5,000 rows: %v", time.Duration(slowest.EndTimeUnixNano-slowest.StartTimeUnixNano))
		// Ariadne's own explanation must name the unindexed query too.
		why := analyze.WhySlow(tr.td, nil)
		if why.TopSpanID != hex.EncodeToString(slowest.SpanId) || !strings.Contains(why.Sentence, "SELECT tasks_archive") ||
			!strings.Contains(why.Sentence, "db.system=sqlite") {
			t.Errorf("why-slow does not name the archive scan: %q", why.Sentence)
		}
		t.Logf("why-slow: %s", why.Sentence)
	})

	t.Run("permission denied", func(t *testing.T) {
		if got := first[traffic.StoryPermissionDenied].Status; got != http.StatusForbidden {
			t.Errorf("status %d", got)
		}
		tr := fetch(t, s, first[traffic.StoryPermissionDenied].TraceID, 3)
		auth := tr.one(t, "check_authorization")
		if auth.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || auth.Status.GetMessage() != "Forbidden" {
			t.Errorf("check_authorization status %v", auth.Status)
		}
		var exc *tracepb.Span_Event
		for _, e := range auth.Events {
			if e.Name == "exception" {
				exc = e
			}
		}
		if exc == nil {
			t.Fatalf("check_authorization has no exception event")
		}
		attrs := map[string]string{}
		for _, kv := range exc.Attributes {
			attrs[kv.Key] = anyString(kv.Value)
		}
		if !strings.Contains(attrs["exception.type"], "PermissionError") || attrs["exception.stacktrace"] == "" {
			t.Errorf("exception event %v", attrs)
		}
		del := tr.one(t, "delete_task")
		if del.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || del.attr("error.type") != "permission" {
			t.Errorf("delete_task %v %v", del.Status, del.Attributes)
		}
	})

	t.Run("batch", func(t *testing.T) {
		tr := fetch(t, s, first[traffic.StoryBatch].TraceID, 8)
		parent := tr.one(t, "process_multiple_tasks")
		kids := tr.children(parent)
		failed := 0
		for _, k := range kids {
			if k.Name != "process_single_task" {
				t.Errorf("unexpected child %s", k.Name)
			}
			if k.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR {
				failed++
			}
		}
		if len(kids) != 5 || failed == 0 || parent.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR {
			t.Errorf("%d children, %d failed, parent status %v", len(kids), failed, parent.Status)
		}
	})

	t.Run("broken instrumentation", func(t *testing.T) {
		reqTrace := first[traffic.StoryBroken].TraceID
		tr := fetch(t, s, reqTrace, 4)
		tr.one(t, "POST /api/tasks/{id}/reindex")
		if n := len(tr.named("reindex_task")); n != 0 {
			t.Errorf("reindex_task was exported, but it is never ended")
		}
		// Its children were ended and exported, naming a parent the trace lacks.
		sched := tr.one(t, "schedule_reindex")
		load := tr.one(t, "task_repository.get_by_id")
		if string(sched.ParentSpanId) != string(load.ParentSpanId) {
			t.Errorf("schedule_reindex and the task lookup should share the unended parent")
		}
		for _, sp := range tr.spans {
			if string(sp.SpanId) == string(sched.ParentSpanId) {
				t.Errorf("the parent of schedule_reindex, %s, was exported", sp.Name)
			}
		}
		for _, sp := range rec.Ended() {
			if sp.Name() == "reindex_task" {
				t.Errorf("reindex_task ended")
			}
		}

		// The background work of this very request, found by its job id.
		var orphan sdktrace.ReadOnlySpan
		for _, sp := range rec.Ended() {
			for _, kv := range sp.Attributes() {
				if sp.Name() == "rebuild_search_index" && kv.Key == "reindex.job_id" && kv.Value.AsString() == sched.attr("reindex.job_id") {
					orphan = sp
				}
			}
		}
		if orphan == nil {
			t.Fatal("no rebuild_search_index span for the request's job")
		}
		if orphan.Parent().IsValid() {
			t.Errorf("rebuild_search_index has a parent, want a root")
		}
		orphanTrace := orphan.SpanContext().TraceID().String()
		if orphanTrace == reqTrace {
			t.Fatalf("rebuild_search_index is in the request's trace")
		}
		mu.Lock()
		_, reported := first[traffic.StoryOrphan]
		mu.Unlock()
		if !reported {
			t.Errorf("no orphan trace was reported")
		}
		ot := fetch(t, s, orphanTrace, 3)
		ot.one(t, "rebuild_search_index")
		ot.one(t, "task_repository.mark_indexed")

		// And Ariadne's lints name both mistakes.
		rules := map[string]bool{}
		for _, f := range analyze.Lint(tr.td, analyze.LintConfig{}) {
			rules[f.Rule] = true
		}
		for _, f := range analyze.LintAcross([]*tracepb.TracesData{tr.td, ot.td}, analyze.LintConfig{}) {
			rules[f.Rule] = true
		}
		if !rules[analyze.RuleUnendedParent] || !rules[analyze.RuleLostInGoroutine] {
			t.Errorf("lint findings %v, want %s and %s", rules, analyze.RuleUnendedParent, analyze.RuleLostInGoroutine)
		}
	})
}
