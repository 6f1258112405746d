package search_test

import (
	"context"
	"encoding/hex"
	"net"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/tools/guidetrace"
)

// The conformance data set: a few small traces that between them hold every span kind and
// status, every attribute type the SDK sends (string, int, float, bool, string and int arrays),
// events, links, a rootless trace and a child that ends after its root. Each span is exported in
// its own request (the SDK's synchronous processor), so a test can cut the stream anywhere and
// split traces between blocks and the head.

// datasetIDs are the traces' IDs, named as the corpus names them.
var datasetIDs = map[string]string{
	"checkout": "c0000000000000000000000000000001",
	"queue":    "c0000000000000000000000000000002",
	"orphan":   "c0000000000000000000000000000003",
	"flags":    "c0000000000000000000000000000004",
	"slow":     "c0000000000000000000000000000005",
}

// spanDef is one span to emit: times are offsets from the trace's start.
type spanDef struct {
	svc, scope, name string
	kind             trace.SpanKind
	status           codes.Code
	msg              string
	start, dur       time.Duration
	attrs            []attribute.KeyValue
	events           []eventDef
	linkTo           string // a dataset trace whose first span this span links to
	children         []spanDef
}

type eventDef struct {
	name  string
	at    time.Duration
	attrs []attribute.KeyValue
}

// datasetTraces is emitted in this order; queue's consumer ends last of all, after its producer.
var datasetTraces = []struct {
	name string
	// remoteParent makes the top span a child of a span that is never sent.
	remoteParent bool
	root         spanDef
}{
	{name: "checkout", root: spanDef{svc: "frontend", scope: "shop", name: "GET /checkout", kind: trace.SpanKindServer,
		start: 0, dur: 100 * time.Millisecond,
		attrs: []attribute.KeyValue{attribute.String("http.method", "GET"), attribute.Int("http.status_code", 200),
			attribute.String("http.route", "/checkout"), attribute.Float64("ratio", 0.5), attribute.Bool("cached", false),
			attribute.StringSlice("tags", []string{"a", "b"}), attribute.Int64Slice("codes", []int64{1, 2, 3})},
		children: []spanDef{
			{svc: "frontend", scope: "shop", name: "render", kind: trace.SpanKindInternal, start: 5 * time.Millisecond, dur: 10 * time.Millisecond,
				attrs: []attribute.KeyValue{attribute.Bool("cached", true)}},
			{svc: "backend", scope: "payments", name: "POST /pay", kind: trace.SpanKindServer, status: codes.Error, msg: "card declined",
				start: 20 * time.Millisecond, dur: 60 * time.Millisecond,
				attrs: []attribute.KeyValue{attribute.Int("http.status_code", 500)},
				events: []eventDef{{name: "exception", at: 10 * time.Millisecond, attrs: []attribute.KeyValue{
					attribute.String("exception.type", "CardError"), attribute.String("exception.message", "declined")}}},
				children: []spanDef{{svc: "db", scope: "sql", name: "INSERT orders", kind: trace.SpanKindClient,
					start: 30 * time.Millisecond, dur: 20 * time.Millisecond,
					attrs: []attribute.KeyValue{attribute.String("db.system", "postgresql"), attribute.Int("db.rows", 3)}}}},
		}}},
	{name: "orphan", remoteParent: true, root: spanDef{svc: "frontend", scope: "shop", name: "late child", kind: trace.SpanKindServer,
		start: 0, dur: 40 * time.Millisecond,
		children: []spanDef{{svc: "frontend", scope: "shop", name: "orphan leaf", kind: trace.SpanKindInternal, start: 10 * time.Millisecond, dur: 5 * time.Millisecond}}}},
	{name: "flags", root: spanDef{svc: "frontend", scope: "shop", name: "GET /flags", kind: trace.SpanKindServer,
		start: 0, dur: 30 * time.Millisecond,
		attrs: []attribute.KeyValue{attribute.Bool("flag", true), attribute.StringSlice("tags", []string{"x"})},
		children: []spanDef{
			{svc: "frontend", scope: "shop", name: "f-false", kind: trace.SpanKindInternal, start: 1 * time.Millisecond, dur: 5 * time.Millisecond,
				attrs: []attribute.KeyValue{attribute.Bool("flag", false)}},
			{svc: "frontend", scope: "shop", name: "f-none", kind: trace.SpanKindInternal, start: 2 * time.Millisecond, dur: 5 * time.Millisecond},
			{svc: "frontend", scope: "shop", name: "tags-ab", kind: trace.SpanKindInternal, start: 3 * time.Millisecond, dur: 5 * time.Millisecond,
				attrs: []attribute.KeyValue{attribute.StringSlice("tags", []string{"a", "b"})}},
			{svc: "frontend", scope: "shop", name: "tags-none", kind: trace.SpanKindInternal, start: 4 * time.Millisecond, dur: 5 * time.Millisecond},
		}}},
	{name: "slow", root: spanDef{svc: "backend", scope: "payments", name: "GET /slow", kind: trace.SpanKindServer,
		start: 0, dur: 2 * time.Second,
		children: []spanDef{{svc: "backend", scope: "payments", name: "sleep", kind: trace.SpanKindInternal, status: codes.Ok,
			start: 50 * time.Millisecond, dur: 1900 * time.Millisecond}}}},
	{name: "queue", root: spanDef{svc: "backend", scope: "payments", name: "publish", kind: trace.SpanKindProducer,
		start: 0, dur: 10 * time.Millisecond, linkTo: "checkout",
		children: []spanDef{{svc: "worker", scope: "jobs", name: "consume", kind: trace.SpanKindConsumer, status: codes.Ok,
			start: 50 * time.Millisecond, dur: 30 * time.Millisecond}}}},
}

// datasetResources are the services' resources; only the frontend has a deployment.environment.
func datasetResource(svc string) *sdkresource.Resource {
	attrs := []attribute.KeyValue{attribute.String("service.name", svc)}
	if svc == "frontend" {
		attrs = append(attrs, attribute.String("deployment.environment", "prod"))
	}
	return sdkresource.NewSchemaless(attrs...)
}

// dataset emits the data set through the real SDK and its OTLP/gRPC exporter to a capture server
// and returns the export requests' wire bytes in the order they were sent. Trace i starts at
// base + i seconds.
func dataset(t testing.TB, base time.Time) [][]byte {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	capture := &captureServer{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, capture)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	providers := map[string]*sdktrace.TracerProvider{}
	ids := &guidetrace.IDGenerator{}
	provider := func(svc string) *sdktrace.TracerProvider {
		if tp := providers[svc]; tp != nil {
			return tp
		}
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(lis.Addr().String()), otlptracegrpc.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		// The synchronous processor exports each span as it ends: one request per span.
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithResource(datasetResource(svc)),
			sdktrace.WithIDGenerator(ids), sdktrace.WithSampler(sdktrace.AlwaysSample()))
		providers[svc] = tp
		return tp
	}
	firstSpan := map[string]trace.SpanContext{}
	var emit func(ctx context.Context, traceID trace.TraceID, start time.Time, d spanDef)
	emit = func(ctx context.Context, traceID trace.TraceID, start time.Time, d spanDef) {
		opts := []trace.SpanStartOption{trace.WithTimestamp(start.Add(d.start)), trace.WithSpanKind(d.kind), trace.WithAttributes(d.attrs...)}
		if d.linkTo != "" {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: firstSpan[d.linkTo], Attributes: []attribute.KeyValue{attribute.String("link.reason", "paid")}}))
		}
		ctx = guidetrace.ContextWithIDs(ctx, traceID, trace.SpanID{})
		ctx, sp := provider(d.svc).Tracer(d.scope, trace.WithInstrumentationVersion("1.0")).Start(ctx, d.name, opts...)
		for _, ev := range d.events {
			sp.AddEvent(ev.name, trace.WithTimestamp(start.Add(d.start+ev.at)), trace.WithAttributes(ev.attrs...))
		}
		if d.status != codes.Unset {
			sp.SetStatus(d.status, d.msg)
		}
		children := d.children
		// Children that end after this span are sent after it, as an SDK sends them.
		var late []spanDef
		for _, c := range children {
			if c.start+c.dur > d.start+d.dur {
				late = append(late, c)
				continue
			}
			emit(ctx, traceID, start, c)
		}
		sp.End(trace.WithTimestamp(start.Add(d.start + d.dur)))
		for _, c := range late {
			emit(ctx, traceID, start, c)
		}
		if _, ok := firstSpan[traceName(traceID)]; !ok {
			firstSpan[traceName(traceID)] = sp.SpanContext()
		}
	}
	for i, tr := range datasetTraces {
		var tid trace.TraceID
		b, _ := hex.DecodeString(datasetIDs[tr.name])
		copy(tid[:], b)
		ctx := ctx
		if tr.remoteParent {
			ctx = trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: tid, SpanID: trace.SpanID{0xde, 0xad, 0, 0, 0, 0, 0, 1}, TraceFlags: trace.FlagsSampled, Remote: true}))
		}
		emit(ctx, tid, base.Add(time.Duration(i)*time.Second), tr.root)
	}
	for _, tp := range providers {
		if err := tp.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return capture.requests()
}

func traceName(id trace.TraceID) string {
	h := hex.EncodeToString(id[:])
	for n, x := range datasetIDs {
		if x == h {
			return n
		}
	}
	return h
}

// captureServer keeps each OTLP/gRPC export's wire bytes, the way ingest receives them.
type captureServer struct {
	coltracepb.UnimplementedTraceServiceServer
	mu   sync.Mutex
	reqs [][]byte
}

func (c *captureServer) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	b, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.reqs = append(c.reqs, b)
	c.mu.Unlock()
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (c *captureServer) requests() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reqs
}
