package loadgen

import (
	"fmt"
	"strings"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Profiles are the load shapes the generator can send.
var Profiles = []string{"small", "guide", "wide"}

const templateBase = uint64(1_700_000_000_000_000_000)

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func intAttr(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

func resource(service string) *resourcepb.Resource {
	return &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
		str("service.name", service), str("service.version", "1.4.2"), str("deployment.environment", "production"),
		str("host.name", "node-7"), str("telemetry.sdk.language", "go"), str("telemetry.sdk.name", "opentelemetry"),
	}}
}

// ids hands out distinct placeholder IDs; the template patches them with random ones per send.
type ids struct{ trace, span uint64 }

func (g *ids) traceID() []byte {
	g.trace++
	b := make([]byte, 16)
	for i := range b {
		b[i] = byte(g.trace>>(8*(i%8))) ^ byte(0xa5+i*37)
	}
	b[15] = 0xee // never all zeros, never a timestamp pattern
	return b
}

func (g *ids) spanID() []byte {
	g.span++
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(g.span>>(8*i)) ^ byte(0x3c+i*71)
	}
	b[7] = 0xdd
	return b
}

type spanSpec struct {
	name   string
	parent int // index in the trace, -1 for the root
	kind   tracepb.Span_SpanKind
	offMs  float64
	durMs  float64
	attrs  []*commonpb.KeyValue
	events []*tracepb.Span_Event
	status *tracepb.Status
}

// buildTrace turns specs into spans with placeholder IDs and distinct timestamps.
func buildTrace(g *ids, seq int, specs []spanSpec) []*tracepb.Span {
	tid := g.traceID()
	// Each trace gets its own microsecond-spaced origin so no two timestamps in a template
	// collide with each other's byte pattern by accident.
	origin := templateBase + uint64(seq)*10_000_000_007
	spans := make([]*tracepb.Span, len(specs))
	for i, sp := range specs {
		start := origin + uint64(sp.offMs*1e6) + uint64(i)*13
		end := start + uint64(sp.durMs*1e6) + 7
		s := &tracepb.Span{TraceId: tid, SpanId: g.spanID(), Name: sp.name, Kind: sp.kind,
			StartTimeUnixNano: start, EndTimeUnixNano: end, Attributes: sp.attrs, Status: sp.status}
		if sp.parent >= 0 {
			s.ParentSpanId = spans[sp.parent].SpanId
		}
		for j, ev := range sp.events {
			e := &tracepb.Span_Event{Name: ev.Name, Attributes: ev.Attributes, TimeUnixNano: start + uint64(j+1)*1_000_003}
			s.Events = append(s.Events, e)
		}
		spans[i] = s
	}
	return spans
}

// smallTrace is the comparison load of the performance issue: 10 spans, two short attributes each.
func smallTrace(g *ids, seq int) []*tracepb.Span {
	names := []string{"GET /api/tasks", "authenticate", "load_user", "query_tasks", "serialize_task",
		"cache.get", "cache.set", "render", "publish_event", "record_metrics"}
	specs := make([]spanSpec, 10)
	for i := range specs {
		specs[i] = spanSpec{name: names[i], parent: 0, kind: tracepb.Span_SPAN_KIND_INTERNAL,
			offMs: float64(i) * 2, durMs: float64(3 + (seq+i)%17),
			attrs: []*commonpb.KeyValue{str("http.request.method", "GET"), intAttr("task.count", int64((seq*7+i)%50))}}
	}
	specs[0].parent, specs[0].kind, specs[0].durMs = -1, tracepb.Span_SPAN_KIND_SERVER, 40+float64(seq%30)
	return buildTrace(g, seq, specs)
}

const stack = `Traceback (most recent call last):
  File "/app/src/api/routes/tasks.py", line 88, in delete_task
    await authorization.check(user, task)
  File "/app/src/application/authorization.py", line 41, in check
    raise PermissionError("User lacks admin role")
PermissionError: User lacks admin role`

// guideTrace follows the guide's shapes: mostly create-task trees, some permission errors, with
// the code and request context that auto-instrumentation adds to every span (about 500 bytes per
// span on the wire, as the performance issue specifies).
func guideTrace(g *ids, seq int) []*tracepb.Span {
	spans := guideSpans(g, seq)
	for i, sp := range spans {
		sp.Attributes = append(sp.Attributes,
			str("code.function", "handle_async"),
			str("code.filepath", fmt.Sprintf("/app/src/application/commands/%s.py", strings.ReplaceAll(sp.Name, " ", "_"))),
			intAttr("code.lineno", int64(40+i*7)),
			str("thread.name", "asyncio-worker-3"),
			str("request.id", fmt.Sprintf("req-%08x-%04x", seq, i)),
			str("user.id", "user-5678"),
			str("tenant.id", "acme-corp"),
			str("http.user_agent.browser", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15"),
		)
	}
	return spans
}

func guideSpans(g *ids, seq int) []*tracepb.Span {
	taskID := fmt.Sprintf("6f1c%04x-5b2e-4c1a-9d3f-%012x", seq%65536, seq)
	if seq%10 == 9 {
		return buildTrace(g, seq, []spanSpec{
			{name: "DELETE /api/tasks/{id}", parent: -1, kind: tracepb.Span_SPAN_KIND_SERVER, durMs: 12,
				attrs: []*commonpb.KeyValue{str("http.request.method", "DELETE"), str("url.path", "/api/tasks/"+taskID),
					str("http.route", "/api/tasks/{id}"), intAttr("http.response.status_code", 403), str("user.id", "user-5678")},
				status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "Permission denied"}},
			{name: "check_authorization", parent: 0, offMs: 1, durMs: 3,
				attrs: []*commonpb.KeyValue{str("task.id", taskID), str("user.role", "member")},
				events: []*tracepb.Span_Event{{Name: "exception", Attributes: []*commonpb.KeyValue{
					str("exception.type", "PermissionError"), str("exception.message", "User lacks admin role"), str("exception.stacktrace", stack)}}},
				status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "User lacks admin role"}},
		})
	}
	db := []*commonpb.KeyValue{str("db.system", "mongodb"), str("db.collection.name", "tasks"), str("db.operation.name", "insert"),
		str("db.namespace", "taskdb"), str("server.address", "mongo-0.mongo.svc.cluster.local"), intAttr("server.port", 27017)}
	return buildTrace(g, seq, []spanSpec{
		{name: "POST /api/tasks", parent: -1, kind: tracepb.Span_SPAN_KIND_SERVER, durMs: 250,
			attrs: []*commonpb.KeyValue{str("http.request.method", "POST"), str("url.path", "/api/tasks"), str("http.route", "/api/tasks"),
				str("url.scheme", "https"), intAttr("http.response.status_code", 201), str("user_agent.original", "task-web/2.3.1 (Macintosh; Intel Mac OS X 14_2)"),
				str("client.address", "10.42.7.19")}},
		{name: "create_task_entity", parent: 0, offMs: 1, durMs: 15,
			attrs: []*commonpb.KeyValue{str("task.title", "Implement feature X"), str("task.priority", []string{"high", "medium", "low"}[seq%3]),
				str("task.assignee_id", "user-5678"), str("task.id", taskID), str("task.created_at", "2024-01-15T10:30:00Z")},
			events: []*tracepb.Span_Event{{Name: "creating_task_entity"}, {Name: "task_entity_created", Attributes: []*commonpb.KeyValue{str("task.id", taskID)}}},
			status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_OK}},
		{name: "validate_input", parent: 1, offMs: 1, durMs: 5, attrs: []*commonpb.KeyValue{intAttr("validation.rules", 12)}},
		{name: "create_domain_object", parent: 1, offMs: 6, durMs: 10, attrs: []*commonpb.KeyValue{str("task.id", taskID)}},
		{name: "motor_task_repository.add", parent: 0, offMs: 17, durMs: 200, kind: tracepb.Span_SPAN_KIND_INTERNAL,
			attrs: []*commonpb.KeyValue{str("task.id", taskID), str("repository", "motor_task_repository")}},
		{name: "serialize_task", parent: 4, offMs: 18, durMs: 10, attrs: []*commonpb.KeyValue{intAttr("document.bytes", int64(900+seq%300))}},
		{name: "pymongo.insert_one", parent: 4, offMs: 29, durMs: 180, kind: tracepb.Span_SPAN_KIND_CLIENT, attrs: db},
		{name: "publish_domain_events", parent: 4, offMs: 210, durMs: 10, kind: tracepb.Span_SPAN_KIND_PRODUCER,
			attrs: []*commonpb.KeyValue{str("messaging.system", "rabbitmq"), str("messaging.destination.name", "task-events"), intAttr("events.count", 1)}},
		{name: "record_metrics", parent: 0, offMs: 240, durMs: 5, attrs: []*commonpb.KeyValue{str("metrics.backend", "prometheus")}},
	})
}

// wideTrace carries large attribute payloads: many attributes, long values, one 4 KiB blob.
func wideTrace(g *ids, seq int) []*tracepb.Span {
	specs := make([]spanSpec, 10)
	long := strings.Repeat("lorem ipsum dolor sit amet ", 10)
	for i := range specs {
		attrs := make([]*commonpb.KeyValue, 0, 32)
		for a := 0; a < 30; a++ {
			attrs = append(attrs, str(fmt.Sprintf("app.field_%02d", a), fmt.Sprintf("%s%d", long[:40+a*5], seq)))
		}
		if i == 0 {
			attrs = append(attrs, str("http.request.body", strings.Repeat("x", 4096)))
		}
		specs[i] = spanSpec{name: fmt.Sprintf("wide_op_%d", i), parent: 0, offMs: float64(i), durMs: float64(5 + i)}
		specs[i].attrs = attrs
	}
	specs[0].parent = -1
	return buildTrace(g, seq, specs)
}

// buildProfile makes a request template of about batch spans of the named profile.
func buildProfile(profile string, batch int) (*template, error) {
	var gen func(*ids, int) []*tracepb.Span
	switch profile {
	case "small":
		gen = smallTrace
	case "guide":
		gen = guideTrace
	case "wide":
		gen = wideTrace
	default:
		return nil, fmt.Errorf("loadgen: unknown profile %q (have %s)", profile, strings.Join(Profiles, ", "))
	}
	if batch <= 0 {
		batch = 512
	}
	g := &ids{}
	ss := &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: "ariadne/loadgen", Version: "1"}}
	for seq := 0; len(ss.Spans) < batch; seq++ {
		ss.Spans = append(ss.Spans, gen(g, seq)...)
	}
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: resource("loadgen-" + profile), ScopeSpans: []*tracepb.ScopeSpans{ss},
		SchemaUrl: "https://opentelemetry.io/schemas/1.26.0",
	}}}
	return newTemplate(req)
}
