package guidetrace

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func emit(t *testing.T) ([]Trace, tracetest.SpanStubs) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	p := NewProviders(sdktrace.WithBatcher(exp))
	ctx := context.Background()
	traces, err := EmitAll(ctx, p, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	return traces, exp.GetSpans()
}

func byTrace(stubs tracetest.SpanStubs, id trace.TraceID) map[string][]tracetest.SpanStub {
	out := map[string][]tracetest.SpanStub{}
	for _, s := range stubs {
		if s.SpanContext.TraceID() == id {
			out[s.Name] = append(out[s.Name], s)
		}
	}
	return out
}

func one(t *testing.T, m map[string][]tracetest.SpanStub, name string) tracetest.SpanStub {
	t.Helper()
	if len(m[name]) != 1 {
		t.Fatalf("span %q: got %d, want 1", name, len(m[name]))
	}
	return m[name][0]
}

func attrs(kvs []attribute.KeyValue) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

func service(s tracetest.SpanStub) string {
	v, _ := s.Resource.Set().Value("service.name")
	return v.AsString()
}

func TestEmitAllMatchesExporter(t *testing.T) {
	traces, stubs := emit(t)
	total := 0
	for _, tr := range traces {
		total += tr.SpanCount
		got := byTrace(stubs, tr.TraceID)
		n := 0
		for _, v := range got {
			n += len(v)
		}
		if n != tr.SpanCount {
			t.Errorf("%s: exported %d spans, facts say %d", tr.Name, n, tr.SpanCount)
		}
		root := one(t, got, tr.RootName)
		if root.Parent.IsValid() || root.SpanContext.SpanID() != tr.RootSpanID {
			t.Errorf("%s: root %s parent %v", tr.Name, root.SpanContext.SpanID(), root.Parent.SpanID())
		}
		if !root.StartTime.Equal(tr.Start) || !root.EndTime.Equal(tr.End) {
			t.Errorf("%s: root times %v..%v, want %v..%v", tr.Name, root.StartTime, root.EndTime, tr.Start, tr.End)
		}
		for _, f := range tr.Spans {
			var s tracetest.SpanStub
			for _, c := range got[f.Name] {
				if c.SpanContext.SpanID() == f.SpanID {
					s = c
				}
			}
			if !s.SpanContext.IsValid() {
				t.Errorf("%s: span %s %s not exported", tr.Name, f.Name, f.SpanID)
				continue
			}
			if s.Parent.SpanID() != f.ParentSpanID || s.SpanKind != f.Kind ||
				!s.StartTime.Equal(f.Start) || !s.EndTime.Equal(f.End) ||
				s.Status.Code != f.Status || s.Status.Description != f.StatusMessage ||
				service(s) != f.Service || s.InstrumentationScope.Name != f.Scope {
				t.Errorf("%s: span %s differs from its facts:\n got %+v\nwant %+v", tr.Name, f.Name, s, f)
			}
		}
	}
	if len(stubs) != total {
		t.Errorf("exported %d spans, want %d", len(stubs), total)
	}
}

func TestCreateTask(t *testing.T) {
	traces, stubs := emit(t)
	tr := traces[0]
	if tr.TraceID.String() != "4bf92f3577b34da6a3ce929d0e0e4736" || tr.SpanCount != 9 ||
		tr.RootName != "POST /api/tasks" || tr.Duration() != 250*time.Millisecond || tr.ErrorCount != 0 {
		t.Fatalf("facts: %+v", tr)
	}
	m := byTrace(stubs, tr.TraceID)
	root := one(t, m, "POST /api/tasks")
	if root.SpanKind != trace.SpanKindServer {
		t.Errorf("root kind %v", root.SpanKind)
	}
	ra := attrs(root.Attributes)
	if ra["http.request.method"].AsString() != "POST" || ra["url.path"].AsString() != "/api/tasks" ||
		ra["http.response.status_code"].AsInt64() != 201 {
		t.Errorf("root attributes %v", root.Attributes)
	}
	res := root.Resource.Set()
	for k, want := range map[attribute.Key]string{"service.name": "task-api", "service.version": ServiceVersion, "deployment.environment": Environment} {
		if v, _ := res.Value(k); v.AsString() != want {
			t.Errorf("resource %s = %q, want %q", k, v.AsString(), want)
		}
	}

	parents := map[string]string{
		"create_task_entity":        "POST /api/tasks",
		"validate_input":            "create_task_entity",
		"create_domain_object":      "create_task_entity",
		"motor_task_repository.add": "POST /api/tasks",
		"serialize_task":            "motor_task_repository.add",
		"pymongo.insert_one":        "motor_task_repository.add",
		"publish_domain_events":     "motor_task_repository.add",
		"record_metrics":            "POST /api/tasks",
	}
	for child, parent := range parents {
		if one(t, m, child).Parent.SpanID() != one(t, m, parent).SpanContext.SpanID() {
			t.Errorf("%s is not a child of %s", child, parent)
		}
	}

	ent := one(t, m, "create_task_entity")
	if d := ent.EndTime.Sub(ent.StartTime); d != 15*time.Millisecond {
		t.Errorf("create_task_entity took %v", d)
	}
	if ent.Status.Code != codes.Ok || ent.InstrumentationScope.Name != ScopeCreateTask || ent.InstrumentationScope.Version != ServiceVersion {
		t.Errorf("create_task_entity status %v scope %v", ent.Status, ent.InstrumentationScope)
	}
	var keys []string
	for _, kv := range ent.Attributes {
		keys = append(keys, string(kv.Key))
	}
	if got := strings.Join(keys, ","); got != "task.title,task.priority,task.assignee_id,task.id,task.created_at" {
		t.Errorf("create_task_entity attribute order %s", got)
	}
	if v := attrs(ent.Attributes)["task.created_at"].AsString(); v != "2024-01-15T10:30:00Z" {
		t.Errorf("task.created_at %q", v)
	}
	if len(ent.Events) != 2 || ent.Events[0].Name != "creating_task_entity" || !ent.Events[0].Time.Equal(ent.StartTime) ||
		ent.Events[1].Name != "task_entity_created" || ent.Events[1].Time.Sub(ent.StartTime) != 15*time.Millisecond ||
		attrs(ent.Events[1].Attributes)["task.id"].AsString() != TaskID {
		t.Errorf("create_task_entity events %+v", ent.Events)
	}

	db := one(t, m, "pymongo.insert_one")
	da := attrs(db.Attributes)
	if db.SpanKind != trace.SpanKindClient || db.EndTime.Sub(db.StartTime) != 180*time.Millisecond ||
		da["db.system"].AsString() != "mongodb" || da["db.collection"].AsString() != "tasks" || da["db.operation"].AsString() != "insert" {
		t.Errorf("pymongo.insert_one: %+v", db)
	}
	if db.SpanContext.SpanID().String() != "7d2ea792e2df6a01" || db.Parent.SpanID().String() != "f3e7a0b2c1d4e5f6" {
		t.Errorf("pymongo.insert_one IDs %s parent %s", db.SpanContext.SpanID(), db.Parent.SpanID())
	}
}

func TestPermissionDenied(t *testing.T) {
	traces, stubs := emit(t)
	tr := traces[1]
	if tr.SpanCount != 3 || tr.ErrorCount != 3 || tr.RootName != "DELETE /api/tasks/{id}" {
		t.Fatalf("facts: %+v", tr)
	}
	m := byTrace(stubs, tr.TraceID)
	auth := one(t, m, "check_authorization")
	if auth.Status.Code != codes.Error || auth.Status.Description != "Forbidden" {
		t.Errorf("check_authorization status %+v", auth.Status)
	}
	if len(auth.Events) != 1 || auth.Events[0].Name != "exception" {
		t.Fatalf("check_authorization events %+v", auth.Events)
	}
	ea := attrs(auth.Events[0].Attributes)
	if ea["exception.type"].AsString() != PermissionErrorType || !strings.HasSuffix(PermissionErrorType, ".PermissionError") ||
		ea["exception.message"].AsString() != "User lacks admin role" ||
		!strings.Contains(ea["exception.stacktrace"].AsString(), "goroutine") {
		t.Errorf("exception attributes %v", auth.Events[0].Attributes)
	}
	if !auth.Events[0].Time.Equal(auth.EndTime) {
		t.Errorf("exception at %v, span ends %v", auth.Events[0].Time, auth.EndTime)
	}
	root := one(t, m, "DELETE /api/tasks/{id}")
	if root.Status.Code != codes.Error || root.Status.Description == "" {
		t.Errorf("root status %+v", root.Status)
	}
}

func TestNotifyCrossesServices(t *testing.T) {
	traces, stubs := emit(t)
	tr := traces[2]
	if tr.SpanCount != 5 || len(tr.Services) != 2 || tr.Services[1] != ServiceNotification {
		t.Fatalf("facts: %+v", tr)
	}
	m := byTrace(stubs, NotifyTraceID)
	client := one(t, m, "POST")
	srv := one(t, m, "POST /api/notify")
	if client.SpanKind != trace.SpanKindClient || srv.SpanKind != trace.SpanKindServer {
		t.Errorf("kinds %v %v", client.SpanKind, srv.SpanKind)
	}
	if service(client) != ServiceTaskAPI || service(srv) != ServiceNotification {
		t.Errorf("services %q %q", service(client), service(srv))
	}
	if srv.SpanContext.TraceID() != client.SpanContext.TraceID() || srv.Parent.SpanID() != client.SpanContext.SpanID() || !srv.Parent.IsRemote() {
		t.Errorf("server parent %+v, client %+v", srv.Parent, client.SpanContext)
	}
	want := "00-" + NotifyTraceID.String() + "-" + client.SpanContext.SpanID().String() + "-01"
	if got := tr.Headers.Get("traceparent"); got != want {
		t.Errorf("traceparent %q, want %q", got, want)
	}
	if tr.Headers.Get("tracestate") != NotifyTraceState || srv.SpanContext.TraceState().String() != NotifyTraceState {
		t.Errorf("tracestate header %q, server span %q", tr.Headers.Get("tracestate"), srv.SpanContext.TraceState())
	}
	if one(t, m, "send_notification").Parent.SpanID() != srv.SpanContext.SpanID() {
		t.Error("send_notification is not under the server span")
	}
}

func TestProcessMultiple(t *testing.T) {
	traces, stubs := emit(t)
	tr := traces[3]
	if tr.SpanCount != ProcessMultipleTasks+1 || tr.ErrorCount != ProcessMultipleFailed+1 {
		t.Fatalf("facts: %+v", tr)
	}
	m := byTrace(stubs, ProcessMultipleTraceID)
	parent := one(t, m, "process_multiple_tasks")
	kids := m["process_single_task"]
	if len(kids) != ProcessMultipleTasks {
		t.Fatalf("%d children", len(kids))
	}
	failed := 0
	for _, k := range kids {
		if k.Parent.SpanID() != parent.SpanContext.SpanID() {
			t.Errorf("child %s parent %s", k.SpanContext.SpanID(), k.Parent.SpanID())
		}
		if k.Status.Code == codes.Error {
			failed++
			if len(k.Events) != 1 || attrs(k.Events[0].Attributes)["exception.type"].AsString() != TaskProcessingErrorType {
				t.Errorf("failed child events %+v", k.Events)
			}
		}
	}
	if failed != ProcessMultipleFailed {
		t.Errorf("%d failed children", failed)
	}
	if len(parent.Links) != 1 || parent.Links[0].SpanContext.TraceID() != CreateTaskTraceID ||
		parent.Links[0].SpanContext.SpanID() != CreateTaskRootSpanID {
		t.Errorf("links %+v", parent.Links)
	}
	types := map[attribute.Type]bool{}
	for _, kv := range parent.Attributes {
		types[kv.Value.Type()] = true
	}
	for _, want := range []attribute.Type{attribute.STRING, attribute.BOOL, attribute.INT64, attribute.FLOAT64,
		attribute.STRINGSLICE, attribute.INT64SLICE, attribute.BOOLSLICE, attribute.FLOAT64SLICE} {
		if !types[want] {
			t.Errorf("no %v attribute on the parent", want)
		}
	}
	if parent.Status.Description != "2 tasks failed" {
		t.Errorf("parent status %+v", parent.Status)
	}
}

// Emitting twice must give identical facts, or golden files would churn.
func TestDeterministic(t *testing.T) {
	a, _ := emit(t)
	b, _ := emit(t)
	for i := range a {
		if len(a[i].Spans) != len(b[i].Spans) {
			t.Fatalf("%s: span counts differ", a[i].Name)
		}
		for j := range a[i].Spans {
			if a[i].Spans[j] != b[i].Spans[j] {
				t.Errorf("%s: %+v != %+v", a[i].Name, a[i].Spans[j], b[i].Spans[j])
			}
		}
	}
}

func TestIDGeneratorPlanIsSingleUse(t *testing.T) {
	g := &IDGenerator{}
	ctx := ContextWithIDs(context.Background(), CreateTaskTraceID, CreateTaskRootSpanID)
	tid, sid := g.NewIDs(ctx)
	if tid != CreateTaskTraceID || sid != CreateTaskRootSpanID {
		t.Fatalf("planned IDs not used: %s %s", tid, sid)
	}
	if again := g.NewSpanID(ctx, tid); again == sid || !again.IsValid() {
		t.Errorf("plan reused or invalid: %s", again)
	}
	if tid2, _ := g.NewIDs(context.Background()); !tid2.IsValid() || tid2 == tid {
		t.Errorf("counter trace ID %s", tid2)
	}
}
