package servicegraph

import (
	"fmt"
	"math"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/pipeline/ingest"
	"github.com/ariadne-tracing/ariadne/internal/tools/guidetrace"
)

var _ ingest.Observer = (*Graph)(nil)

func scrape(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, req)
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	return mfs
}

func find(mfs map[string]*dto.MetricFamily, name, client, server, conn string) *dto.Metric {
	mf := mfs[name]
	if mf == nil {
		return nil
	}
	for _, m := range mf.Metric {
		got := map[string]string{}
		for _, lp := range m.Label {
			got[lp.GetName()] = lp.GetValue()
		}
		if got["client"] == client && got["server"] == server && got["connection_type"] == conn {
			return m
		}
	}
	return nil
}

func seriesCount(mfs map[string]*dto.MetricFamily, name string) int {
	if mf := mfs[name]; mf != nil {
		return len(mf.Metric)
	}
	return 0
}

// TestGuideTraces builds the graph from the guide's traces as the OpenTelemetry Go SDK exports
// them over OTLP/gRPC, the two services exporting separately.
func TestGuideTraces(t *testing.T) {
	reg := prometheus.NewRegistry()
	g, err := New(reg, Config{})
	if err != nil {
		t.Fatal(err)
	}
	guidetrace.ObserveAll(t, g.ObserveTraces)
	g.Expire(time.Now().Add(time.Minute))

	mfs := scrape(t, reg)
	type want struct {
		client, server, conn string
		requests, failed     uint64
		clientMs, serverMs   []float64
	}
	wants := []want{
		{"task-api", "notification-service", "", 1, 0, []float64{65}, []float64{55}},
		{"task-api", "mongodb", "database", 1, 0, []float64{180}, nil},
		{"user", "task-api", "virtual_node", 3, 1, nil, []float64{250, 12, 80}},
	}
	for _, w := range wants {
		name := w.client + "->" + w.server
		r := find(mfs, "traces_service_graph_request_total", w.client, w.server, w.conn)
		f := find(mfs, "traces_service_graph_request_failed_total", w.client, w.server, w.conn)
		if r == nil || f == nil {
			t.Errorf("%s: no request series", name)
			continue
		}
		if r.GetCounter().GetValue() != float64(w.requests) || f.GetCounter().GetValue() != float64(w.failed) {
			t.Errorf("%s: requests %v failed %v, want %d %d", name, r.GetCounter().GetValue(), f.GetCounter().GetValue(), w.requests, w.failed)
		}
		checkHist(t, name+" client", find(mfs, "traces_service_graph_request_client_seconds", w.client, w.server, w.conn), w.clientMs)
		checkHist(t, name+" server", find(mfs, "traces_service_graph_request_server_seconds", w.client, w.server, w.conn), w.serverMs)
	}
	if n := seriesCount(mfs, "traces_service_graph_request_total"); n != len(wants) {
		t.Errorf("%d edges, want %d", n, len(wants))
	}
	for _, name := range []string{"traces_service_graph_unpaired_spans_total", "traces_service_graph_dropped_spans_total"} {
		if n := seriesCount(mfs, name); n != 0 {
			t.Errorf("%s has %d series", name, n)
		}
	}

	edges := g.Edges()
	if len(edges) != 3 {
		t.Fatalf("Edges = %+v", edges)
	}
	e := edges[0] // sorted by client, then server
	if e.Client != "task-api" || e.Server != "mongodb" || e.ConnectionType != "database" || e.Requests != 1 || e.ServerP95 != 0 {
		t.Errorf("db edge = %+v", e)
	}
	// 180ms in the (0.1, 0.2] bucket alone: p95 interpolates to 0.1 + 0.95*0.1.
	if want := time.Duration(0.195 * 1e9); e.ClientP95 != want {
		t.Errorf("db edge client p95 = %v, want %v", e.ClientP95, want)
	}
	if e := edges[1]; e.Server != "notification-service" || e.Requests != 1 || e.ClientP95 == 0 || e.ServerP95 == 0 {
		t.Errorf("notify edge = %+v", e)
	}
	if e := edges[2]; e.Client != "user" || e.Requests != 3 || e.Failed != 1 {
		t.Errorf("user edge = %+v", e)
	}
}

func checkHist(t *testing.T, name string, m *dto.Metric, ms []float64) {
	t.Helper()
	if len(ms) == 0 {
		if m != nil {
			t.Errorf("%s: unexpected histogram %v", name, m)
		}
		return
	}
	h := m.GetHistogram()
	if h.GetSampleCount() != uint64(len(ms)) {
		t.Errorf("%s: count %d, want %d", name, h.GetSampleCount(), len(ms))
		return
	}
	var sum float64
	for _, v := range ms {
		sum += v / 1000
	}
	if math.Abs(h.GetSampleSum()-sum) > 1e-9 {
		t.Errorf("%s: sum %v, want %v", name, h.GetSampleSum(), sum)
	}
	for _, b := range h.Bucket {
		var n uint64
		for _, v := range ms {
			if v/1000 <= b.GetUpperBound() {
				n++
			}
		}
		if b.GetCumulativeCount() != n {
			t.Errorf("%s: le=%v %d, want %d", name, b.GetUpperBound(), b.GetCumulativeCount(), n)
		}
	}
}

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

type spanSpec struct {
	service      string
	trace        byte
	id, parent   byte
	kind         tracepb.Span_SpanKind
	ms           uint64
	failed       bool
	attrs        []*commonpb.KeyValue
	traceIDBytes []byte
}

// req builds one ExportTraceServiceRequest holding the spans, one resource per service.
func req(spans ...spanSpec) []byte {
	byService := map[string]*tracepb.ScopeSpans{}
	r := &coltracepb.ExportTraceServiceRequest{}
	for _, s := range spans {
		ss := byService[s.service]
		if ss == nil {
			ss = &tracepb.ScopeSpans{}
			byService[s.service] = ss
			r.ResourceSpans = append(r.ResourceSpans, &tracepb.ResourceSpans{
				Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", s.service)}},
				ScopeSpans: []*tracepb.ScopeSpans{ss},
			})
		}
		tid := s.traceIDBytes
		if tid == nil {
			tid = []byte{s.trace, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
		}
		sp := &tracepb.Span{
			TraceId: tid, SpanId: []byte{s.id, 1, 1, 1, 1, 1, 1, 1}, Name: "op", Kind: s.kind,
			StartTimeUnixNano: 1e9, EndTimeUnixNano: 1e9 + s.ms*1e6, Attributes: s.attrs,
		}
		if s.parent != 0 {
			sp.ParentSpanId = []byte{s.parent, 1, 1, 1, 1, 1, 1, 1}
		}
		if s.failed {
			sp.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}
		}
		ss.Spans = append(ss.Spans, sp)
	}
	b, err := proto.Marshal(r)
	if err != nil {
		panic(err)
	}
	return b
}

const (
	server   = tracepb.Span_SPAN_KIND_SERVER
	client   = tracepb.Span_SPAN_KIND_CLIENT
	producer = tracepb.Span_SPAN_KIND_PRODUCER
	consumer = tracepb.Span_SPAN_KIND_CONSUMER
	internal = tracepb.Span_SPAN_KIND_INTERNAL
)

func TestPairing(t *testing.T) {
	reg := prometheus.NewRegistry()
	g, err := New(reg, Config{})
	if err != nil {
		t.Fatal(err)
	}
	// Server half first, client half in a later request, failure on the server side.
	g.ObserveTraces(req(spanSpec{service: "b", trace: 1, id: 2, parent: 1, kind: server, ms: 30, failed: true}))
	g.ObserveTraces(req(spanSpec{service: "a", trace: 1, id: 1, parent: 9, kind: client, ms: 40}))
	// The same span IDs in another trace do not pair with the first.
	g.ObserveTraces(req(spanSpec{service: "c", trace: 2, id: 2, parent: 1, kind: server, ms: 1}))
	// Messaging: producer and consumer pair.
	g.ObserveTraces(req(
		spanSpec{service: "a", trace: 3, id: 1, parent: 9, kind: producer, ms: 2, attrs: []*commonpb.KeyValue{str("messaging.system", "kafka")}},
		spanSpec{service: "worker", trace: 3, id: 2, parent: 1, kind: consumer, ms: 300},
	))
	// A producer nobody consumed, a client naming its peer, a client naming nothing, a database
	// with a namespace, an internal span.
	g.ObserveTraces(req(
		spanSpec{service: "a", trace: 4, id: 1, parent: 9, kind: producer, ms: 2, attrs: []*commonpb.KeyValue{str("messaging.system", "kafka"), str("messaging.destination.name", "orders")}},
		spanSpec{service: "a", trace: 4, id: 2, parent: 9, kind: client, ms: 500, failed: true, attrs: []*commonpb.KeyValue{str("peer.service", "payments")}},
		spanSpec{service: "a", trace: 4, id: 3, parent: 9, kind: client, ms: 5},
		spanSpec{service: "a", trace: 4, id: 4, parent: 9, kind: client, ms: 5, attrs: []*commonpb.KeyValue{str("db.system", "postgresql"), str("db.namespace", "orders_db")}},
		spanSpec{service: "a", trace: 4, id: 5, parent: 9, kind: internal, ms: 5},
	))
	if n := g.store.size.Load(); n != 4 {
		t.Errorf("%d halves waiting, want 4", n)
	}
	// Not yet due: nothing changes.
	g.Expire(time.Now())
	if n := g.store.size.Load(); n != 4 {
		t.Errorf("%d halves waiting after an early expiry, want 4", n)
	}
	g.Expire(time.Now().Add(DefaultWait + time.Second))
	if n := g.store.size.Load(); n != 0 {
		t.Errorf("%d halves waiting after expiry", n)
	}

	got := map[string]Edge{}
	for _, e := range g.Edges() {
		got[e.Client+">"+e.Server+">"+e.ConnectionType] = e
	}
	for k, w := range map[string][2]uint64{
		"a>b>":                      {1, 1},
		"a>worker>messaging_system": {1, 0},
		"a>orders>virtual_node":     {1, 0},
		"a>payments>virtual_node":   {1, 1},
		"a>orders_db>database":      {1, 0},
	} {
		if e, ok := got[k]; !ok || e.Requests != w[0] || e.Failed != w[1] {
			t.Errorf("edge %s = %+v, want requests %d failed %d", k, e, w[0], w[1])
		}
		delete(got, k)
	}
	if len(got) != 0 {
		t.Errorf("unexpected edges %+v", got)
	}
	mfs := scrape(t, reg)
	if m := find(mfs, "traces_service_graph_unpaired_spans_total", "", "c", ""); m.GetCounter().GetValue() != 1 {
		t.Errorf("unpaired server half = %v", m)
	}
	if m := find(mfs, "traces_service_graph_unpaired_spans_total", "a", "", ""); m.GetCounter().GetValue() != 1 {
		t.Errorf("unpaired client half = %v", m)
	}
	if n := seriesCount(mfs, "traces_service_graph_unpaired_spans_total"); n != 2 {
		t.Errorf("%d unpaired series", n)
	}
}

func TestStoreBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	const limit = 50
	g, err := New(reg, Config{MaxItems: limit, Wait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				g.ObserveTraces(req(spanSpec{service: "svc", traceIDBytes: []byte{byte(w), byte(i), 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, id: 2, parent: 1, kind: server, ms: 1}))
			}
		})
	}
	wg.Wait()
	if n := g.store.size.Load(); n != limit {
		t.Errorf("store holds %d, limit %d", n, limit)
	}
	mfs := scrape(t, reg)
	if m := find(mfs, "traces_service_graph_dropped_spans_total", "", "svc", ""); m.GetCounter().GetValue() != 200-limit {
		t.Errorf("dropped = %v", m)
	}
	if v := mfs["ariadne_servicegraph_pending_spans"].Metric[0].GetGauge().GetValue(); v != limit {
		t.Errorf("pending gauge = %v", v)
	}
	g.Expire(time.Now().Add(2 * time.Hour))
	mfs = scrape(t, reg)
	if m := find(mfs, "traces_service_graph_unpaired_spans_total", "", "svc", ""); m.GetCounter().GetValue() != limit {
		t.Errorf("unpaired = %v", m)
	}
	// The slots are free again.
	g.ObserveTraces(req(spanSpec{service: "svc", trace: 9, id: 2, parent: 1, kind: server, ms: 1}))
	if n := g.store.size.Load(); n != 1 {
		t.Errorf("store holds %d after expiry and one more span", n)
	}
}

func TestEdgeLimit(t *testing.T) {
	reg := prometheus.NewRegistry()
	g, err := New(reg, Config{MaxEdges: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		g.ObserveTraces(req(spanSpec{service: "a", trace: byte(i), id: 1, parent: 9, kind: client, ms: 1,
			attrs: []*commonpb.KeyValue{str("db.system", fmt.Sprint("db", i))}}))
	}
	edges := g.Edges()
	if len(edges) != 4 {
		t.Fatalf("edges = %+v", edges)
	}
	var over uint64
	for _, e := range edges {
		if e.Client == OverflowValue {
			over = e.Requests
		}
	}
	if over != 7 {
		t.Errorf("overflow edge counted %d", over)
	}
	if v := scrape(t, reg)["ariadne_servicegraph_edges_overflow_total"].Metric[0].GetCounter().GetValue(); v != 7 {
		t.Errorf("overflow counter = %v", v)
	}
}

func TestStartStop(t *testing.T) {
	g, err := New(nil, Config{Wait: time.Millisecond, ExpireEvery: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	g.Start()
	g.Start()
	g.ObserveTraces(req(spanSpec{service: "a", trace: 1, id: 1, parent: 9, kind: client, ms: 1, attrs: []*commonpb.KeyValue{str("peer.service", "ext")}}))
	deadline := time.Now().Add(5 * time.Second)
	for len(g.Edges()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	g.Stop()
	g.Stop()
	if e := g.Edges(); len(e) != 1 || e[0].Server != "ext" {
		t.Errorf("edges after the ticker expired the client half: %+v", e)
	}
}

// benchRequest is 100 traces of 10 spans with 2 attributes each: a root server span in "shop",
// a client call to "inventory" answered by its server span, a database call, internal spans.
func benchRequest() []byte {
	var spans []spanSpec
	attrs := []*commonpb.KeyValue{str("http.request.method", "GET"), str("http.route", "/api/items/{id}")}
	dbAttrs := []*commonpb.KeyValue{str("db.system", "postgresql"), str("db.namespace", "shop")}
	for t := range 100 {
		tid := []byte{byte(t), byte(t >> 8), 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7}
		add := func(s spanSpec) {
			s.traceIDBytes = tid
			if s.attrs == nil {
				s.attrs = attrs
			}
			spans = append(spans, s)
		}
		add(spanSpec{service: "shop", id: 1, kind: server, ms: 50})
		add(spanSpec{service: "shop", id: 2, parent: 1, kind: client, ms: 20})
		add(spanSpec{service: "inventory", id: 3, parent: 2, kind: server, ms: 15})
		add(spanSpec{service: "shop", id: 4, parent: 1, kind: client, ms: 5, attrs: dbAttrs})
		for i := range 6 {
			add(spanSpec{service: "shop", id: byte(5 + i), parent: 1, kind: internal, ms: 1})
		}
	}
	return req(spans...)
}

func BenchmarkObserveTraces(b *testing.B) {
	g, err := New(nil, Config{})
	if err != nil {
		b.Fatal(err)
	}
	payload := benchRequest()
	g.ObserveTraces(payload)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		g.ObserveTraces(payload)
	}
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "spans/s")
	if e := g.Edges(); len(e) != 3 {
		b.Fatalf("edges = %+v", e)
	}
}
