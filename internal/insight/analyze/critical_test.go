package analyze

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/ariadne-tracing/ariadne/internal/tools/guidetrace"
)

func segmentNames(p Path) string {
	var parts []string
	for _, s := range p.Segments {
		parts = append(parts, fmt.Sprintf("%s=%s", s.Name, formatDuration(s.Self)))
	}
	return strings.Join(parts, " ")
}

func checkSum(t *testing.T, p Path) {
	t.Helper()
	var sum time.Duration
	for _, s := range p.Segments {
		sum += s.Self
	}
	if sum != p.Total {
		t.Errorf("self times sum to %v, want the total %v", sum, p.Total)
	}
}

func TestCriticalPathCreateTask(t *testing.T) {
	_, td := guideTrace(t, guidetrace.NameCreateTask)
	p := CriticalPath(td)
	checkSum(t, p)
	if p.Total != ms(250) || len(p.Adjustments) != 0 {
		t.Fatalf("total %v, adjustments %v", p.Total, p.Adjustments)
	}
	// The root's own time is the gaps between its children: 0-10, 25-30,
	// 230-235 and 240-250.
	want := "POST /api/tasks=30ms create_task_entity=0s validate_input=5ms create_domain_object=10ms " +
		"motor_task_repository.add=0s serialize_task=10ms pymongo.insert_one=180ms publish_domain_events=10ms record_metrics=5ms"
	want = strings.ReplaceAll(want, "=0s", "=0ns")
	if got := segmentNames(p); got != want {
		t.Errorf("path\n got %s\nwant %s", got, want)
	}

	e := WhySlow(td, typicalMap{guidetrace.ServiceTaskAPI + "/pymongo.insert_one": ms(12)})
	wantS := "POST /api/tasks took 250ms; 180ms (72%) is pymongo.insert_one on tasks (db.system=mongodb) on the critical path, 15x its usual 12ms"
	if e.Sentence != wantS {
		t.Errorf("sentence\n got %s\nwant %s", e.Sentence, wantS)
	}
	if e.TopSpanID != guidetrace.CreateTaskDBSpanID.String() || !e.SingleCause || e.Factor != 15 || e.Share != 0.72 || e.Root != "POST /api/tasks" {
		t.Errorf("explanation fields: %+v", e)
	}
	if e := WhySlow(td, nil); !strings.HasSuffix(e.Sentence, "(db.system=mongodb) on the critical path") || e.Factor != 0 {
		t.Errorf("without typical: %q", e.Sentence)
	}
}

func TestCriticalPathFollowsSlowestConcurrentChild(t *testing.T) {
	_, td := guideTrace(t, guidetrace.NameProcessMultiple)
	p := CriticalPath(td)
	checkSum(t, p)
	if len(p.Segments) != 2 {
		t.Fatalf("path: %s", segmentNames(p))
	}
	// The fourth child (110ms) ends last; the others ran beside it.
	slowest := p.Segments[1]
	if slowest.SpanID != "5a6b7c8d9e0f1b04" || slowest.Self != ms(110) {
		t.Errorf("path goes through %s (%v), want the 110ms child", slowest.SpanID, slowest.Self)
	}
	e := WhySlow(td, nil)
	want := "process_multiple_tasks took 118ms; 110ms (93%) is process_single_task on the critical path"
	if e.Sentence != want {
		t.Errorf("sentence\n got %s\nwant %s", e.Sentence, want)
	}
}

func TestWhySlowNoSingleCause(t *testing.T) {
	c := newCollector(t)
	tr := c.provider("report-service").Tracer("src.reports")
	ctx, root := tr.Start(context.Background(), "build_report", at(0))
	steps := []struct {
		name string
		d    float64
	}{{"load_orders", 30}, {"load_customers", 25}, {"join_rows", 20}, {"render_pdf", 15}, {"upload_report", 10}}
	cur := 0.0
	for _, s := range steps {
		_, sp := tr.Start(ctx, s.name, at(cur))
		cur += s.d
		sp.End(endAt(cur))
	}
	root.End(endAt(cur))
	e := WhySlow(c.all(), nil)
	want := "build_report took 100ms; no single cause: the critical path is spread over " +
		"load_orders 30ms (30%), load_customers 25ms (25%), join_rows 20ms (20%)"
	if e.Sentence != want || e.SingleCause || e.Share != 0.3 {
		t.Errorf("sentence\n got %s\nwant %s", e.Sentence, want)
	}
}

// TestCriticalPathClockSkew sends a call between two services whose clocks
// disagree: notification-service's clock is 50ms behind, so its server span
// seems to start 45ms before the client span that caused it.
func TestCriticalPathClockSkew(t *testing.T) {
	c := newCollector(t)
	api := c.provider(guidetrace.ServiceTaskAPI).Tracer(guidetrace.ScopeHTTPX)
	notif := c.provider(guidetrace.ServiceNotification).Tracer(guidetrace.ScopeFastAPI)

	ctx, root := api.Start(context.Background(), "POST /api/tasks/{id}/notify", at(0), trace.WithSpanKind(trace.SpanKindServer))
	cctx, client := api.Start(ctx, "POST", at(5), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("http.request.method", "POST"), attribute.String("server.address", "notification-service")))
	h := http.Header{}
	propagation.TraceContext{}.Inject(cctx, propagation.HeaderCarrier(h))
	sctx := propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(h))
	// Really 10ms to 70ms; the skewed clock says -40ms to 20ms.
	sctx, srv := notif.Start(sctx, "POST /api/notify", at(-40), trace.WithSpanKind(trace.SpanKindServer))
	_, send := notif.Start(sctx, "send_notification", at(-35))
	send.End(endAt(15))
	srv.End(endAt(20))
	client.End(endAt(75))
	root.End(endAt(80))

	td := c.all()
	p := CriticalPath(td)
	checkSum(t, p)
	if len(p.Adjustments) != 1 {
		t.Fatalf("adjustments: %+v", p.Adjustments)
	}
	a := p.Adjustments[0]
	if a.SpanID != srv.SpanContext().SpanID().String() || a.Shift != ms(50) || !strings.Contains(a.Reason, "clock skew") {
		t.Errorf("adjustment %+v, want the server span moved 50ms later", a)
	}
	want := "POST /api/tasks/{id}/notify=10ms POST=10ms POST /api/notify=10ms send_notification=50ms"
	if got := segmentNames(p); got != want {
		t.Errorf("path\n got %s\nwant %s", got, want)
	}
	for _, s := range p.Segments {
		if s.Name == "send_notification" && !s.Start.Equal(base.Add(ms(15))) {
			t.Errorf("send_notification starts at %v after correction, want 15ms", s.Start.Sub(base))
		}
	}
	e := WhySlow(td, nil)
	if !strings.Contains(e.Sentence, "is send_notification in notification-service on the critical path") {
		t.Errorf("sentence: %s", e.Sentence)
	}
}

// A consumer runs after the producer span that sent its message ended: that
// is how messaging works, not clock skew.
func TestAdjustSkewLeavesMessagingAlone(t *testing.T) {
	c := newCollector(t)
	orders := c.provider("order-service").Tracer("src.orders")
	mailer := c.provider("mail-service").Tracer("src.mailer")
	ctx, root := orders.Start(context.Background(), "place_order", at(0))
	pctx, prod := orders.Start(ctx, "publish orders", at(1), trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "kafka"), attribute.String("messaging.destination.name", "orders")))
	prod.End(endAt(3))
	root.End(endAt(5))
	_, cons := mailer.Start(pctx, "process orders", at(20), trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("messaging.system", "kafka"), attribute.String("messaging.destination.name", "orders")))
	cons.End(endAt(40))
	td := c.all()
	if p := CriticalPath(td); len(p.Adjustments) != 0 || p.Total != ms(5) {
		t.Errorf("path %+v", p)
	}
	if fs := Lint(td, LintConfig{}); len(fs) != 0 {
		t.Errorf("lint: %+v", fs)
	}
}

// A trace with two roots is broken; the longer root is what someone waited for.
func TestCriticalPathSeveralRoots(t *testing.T) {
	c := newCollector(t)
	tr := c.provider("importer").Tracer("src.importer")
	for i, r := range []struct {
		name       string
		start, end float64
	}{{"import_tasks", 0, 10}, {"notify_owner", 1, 30}} {
		ctx := guidetrace.ContextWithIDs(context.Background(), guidetrace.CreateTaskTraceID, trace.SpanID{0xbb, byte(i + 1)})
		_, s := tr.Start(ctx, r.name, at(r.start), trace.WithNewRoot())
		s.End(endAt(r.end))
	}
	p := CriticalPath(c.all())
	if p.Total != ms(29) || len(p.Segments) != 1 || p.Segments[0].Name != "notify_owner" {
		t.Errorf("path %+v", p)
	}
}
