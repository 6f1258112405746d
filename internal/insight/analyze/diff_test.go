package analyze

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/tools/guidetrace"
)

// slowCreateTask emits the guide's create-task request again, with the same
// spans, except that the insert takes insertMs and everything after it
// waits for it.
func slowCreateTask(t *testing.T, insertMs float64) *tracepb.TracesData {
	c := newCollector(t)
	tp := c.provider(guidetrace.ServiceTaskAPI)
	tr := func(scope string) trace.Tracer { return tp.Tracer(scope) }
	slow := insertMs - 180

	ctx, root := serverSpan(context.Background(), tr(guidetrace.ScopeFastAPI), "POST", "/api/tasks", 0)
	ectx, ent := tr(guidetrace.ScopeCreateTask).Start(ctx, "create_task_entity", at(10))
	_, v := tr(guidetrace.ScopeCreateTask).Start(ectx, "validate_input", at(10))
	v.End(endAt(15))
	_, d := tr(guidetrace.ScopeCreateTask).Start(ectx, "create_domain_object", at(15))
	d.End(endAt(25))
	ent.End(endAt(25))
	rctx, repo := tr(guidetrace.ScopeRepository).Start(ctx, "motor_task_repository.add", at(30))
	_, ser := tr(guidetrace.ScopeRepository).Start(rctx, "serialize_task", at(30))
	ser.End(endAt(40))
	_, db := tr(guidetrace.ScopePyMongo).Start(rctx, "pymongo.insert_one", at(40),
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system", "mongodb"), attribute.String("db.collection", "tasks")))
	db.End(endAt(40 + insertMs))
	_, pub := tr(guidetrace.ScopeRepository).Start(rctx, "publish_domain_events", at(220+slow))
	pub.End(endAt(230 + slow))
	repo.End(endAt(230 + slow))
	_, met := tr(guidetrace.ScopeController).Start(ctx, "record_metrics", at(235+slow))
	met.End(endAt(240 + slow))
	endServer(root, 201, 250+slow)
	return c.all()
}

func TestDiffSlowInsert(t *testing.T) {
	_, a := guideTrace(t, guidetrace.NameCreateTask)
	b := slowCreateTask(t, 300)
	r := Diff(a, b)
	if len(r.Added) != 0 || len(r.Missing) != 0 {
		t.Fatalf("added %v, missing %v", r.Added, r.Missing)
	}
	if len(r.Changed) != 9 || r.TotalA != ms(250) || r.TotalB != ms(370) {
		t.Fatalf("%d changes, totals %v -> %v", len(r.Changed), r.TotalA, r.TotalB)
	}
	top := r.Changed[0]
	if top.Path != "POST /api/tasks/motor_task_repository.add/pymongo.insert_one" ||
		top.Delta != ms(120) || top.SelfDelta != ms(120) || top.SpanA != guidetrace.CreateTaskDBSpanID.String() {
		t.Errorf("first change %+v", top)
	}
	// The ancestors slowed by as much, but none of it is their own time.
	for _, c := range r.Changed[1:3] {
		if c.Delta != ms(120) || c.SelfDelta != 0 {
			t.Errorf("ancestor change %+v", c)
		}
	}
	for _, c := range r.Changed[3:] {
		if c.Delta != 0 {
			t.Errorf("unexpected change %+v", c)
		}
	}
}

func TestDiffAddedMissingAndRepeatedSiblings(t *testing.T) {
	_, a := guideTrace(t, guidetrace.NameProcessMultiple)
	c := newCollector(t)
	tr := c.provider(guidetrace.ServiceTaskAPI).Tracer(guidetrace.ScopeTaskBatch)
	ctx, root := tr.Start(context.Background(), "process_multiple_tasks", at(0))
	// Three tasks instead of five, the second much slower, and a new step.
	for i, d := range []float64{40, 200, 60} {
		_, s := tr.Start(ctx, "process_single_task", at(2+float64(i)))
		s.End(endAt(2 + float64(i) + d))
	}
	_, s := tr.Start(ctx, "report_results", at(210))
	s.End(endAt(215))
	root.End(endAt(216))

	r := Diff(a, c.all())
	want := []string{"process_multiple_tasks/process_single_task[3]", "process_multiple_tasks/process_single_task[4]"}
	if strings.Join(r.Missing, ",") != strings.Join(want, ",") {
		t.Errorf("missing %v, want %v", r.Missing, want)
	}
	if strings.Join(r.Added, ",") != "process_multiple_tasks/report_results" {
		t.Errorf("added %v", r.Added)
	}
	if c := r.Changed[0]; c.Path != "process_multiple_tasks/process_single_task[1]" || c.Delta != ms(105) {
		t.Errorf("first change %+v", c)
	}
	if got := Diff(a, a); len(got.Added)+len(got.Missing) != 0 || got.Changed[0].Delta != 0 || got.Changed[0].SelfDelta != time.Duration(0) {
		t.Errorf("self diff: %+v", got)
	}
}
