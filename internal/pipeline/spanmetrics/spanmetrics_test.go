package spanmetrics

import (
	"bytes"
	"fmt"
	"math"
	"net/http/httptest"
	"runtime"
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

var _ ingest.Observer = (*Metrics)(nil)

// scrape reads the registry through the HTTP handler Ariadne serves /metrics with and parses the
// text exposition with Prometheus's own parser.
func scrape(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	return mfs
}

// find returns the metric of family name whose labels include want.
func find(mfs map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	mf := mfs[name]
	if mf == nil {
		return nil
	}
outer:
	for _, m := range mf.Metric {
		got := map[string]string{}
		for _, lp := range m.Label {
			got[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue outer
			}
		}
		return m
	}
	return nil
}

func op(service, name, kind, status string) map[string]string {
	return map[string]string{"service": service, "span_name": name, "span_kind": kind, "status_code": status}
}

// TestGuideTraces feeds the metrics with the guide's traces as the OpenTelemetry Go SDK exports
// them over OTLP/gRPC and checks every operation's series.
func TestGuideTraces(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg, Config{Dimensions: []string{"deployment.environment", "http.request.method"}})
	if err != nil {
		t.Fatal(err)
	}
	guidetrace.ObserveAll(t, m.ObserveTraces)

	const (
		api, notif                   = "task-api", "notification-service"
		server, client, internal     = "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT", "SPAN_KIND_INTERNAL"
		unset, ok, failed            = "STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"
		calls, latency, size, bucket = "traces_spanmetrics_calls_total", "traces_spanmetrics_latency", "traces_spanmetrics_size_total", 0
	)
	type want struct {
		labels map[string]string
		method string
		// durations in milliseconds, one per call
		ms []float64
	}
	cases := []want{
		{op(api, "POST /api/tasks", server, unset), "POST", []float64{250}},
		{op(api, "create_task_entity", internal, ok), "", []float64{15}},
		{op(api, "validate_input", internal, unset), "", []float64{5}},
		{op(api, "create_domain_object", internal, unset), "", []float64{10}},
		{op(api, "motor_task_repository.add", internal, unset), "", []float64{200}},
		{op(api, "serialize_task", internal, unset), "", []float64{10}},
		{op(api, "pymongo.insert_one", client, unset), "", []float64{180}},
		{op(api, "publish_domain_events", internal, unset), "", []float64{10}},
		{op(api, "record_metrics", internal, unset), "", []float64{5}},
		{op(api, "DELETE /api/tasks/{id}", server, failed), "DELETE", []float64{12}},
		{op(api, "delete_task", internal, failed), "", []float64{9}},
		{op(api, "check_authorization", internal, failed), "", []float64{3}},
		{op(api, "POST /api/tasks/{id}/notify", server, unset), "POST", []float64{80}},
		{op(api, "notify_external_service", internal, ok), "", []float64{73}},
		{op(api, "POST", client, unset), "POST", []float64{65}},
		{op(notif, "POST /api/notify", server, unset), "POST", []float64{55}},
		{op(notif, "send_notification", internal, ok), "", []float64{45}},
		{op(api, "process_multiple_tasks", internal, failed), "", []float64{118}},
		{op(api, "process_single_task", internal, ok), "", []float64{40, 60, 30}},
		{op(api, "process_single_task", internal, failed), "", []float64{95, 110}},
	}
	mfs := scrape(t, reg)
	total := 0
	for _, c := range cases {
		c.labels["deployment_environment"] = "development"
		c.labels["http_request_method"] = c.method
		name := fmt.Sprint(c.labels)
		cm := find(mfs, calls, c.labels)
		if cm == nil {
			t.Errorf("%s: no %s series", name, calls)
			continue
		}
		if got := cm.GetCounter().GetValue(); got != float64(len(c.ms)) {
			t.Errorf("%s: calls = %v, want %d", name, got, len(c.ms))
		}
		total += len(c.ms)
		h := find(mfs, latency, c.labels).GetHistogram()
		if h.GetSampleCount() != uint64(len(c.ms)) {
			t.Errorf("%s: latency count = %d", name, h.GetSampleCount())
		}
		var sum float64
		for _, ms := range c.ms {
			sum += ms / 1000
		}
		if math.Abs(h.GetSampleSum()-sum) > 1e-9 {
			t.Errorf("%s: latency sum = %v, want %v", name, h.GetSampleSum(), sum)
		}
		// The exposition writes the +Inf bucket, which the parser keeps.
		bounds := append(DefaultBuckets[:len(DefaultBuckets):len(DefaultBuckets)], math.Inf(1))
		if len(h.Bucket) != len(bounds) {
			t.Fatalf("%s: %d buckets", name, len(h.Bucket))
		}
		for i, b := range h.Bucket {
			if b.GetUpperBound() != bounds[i] {
				t.Errorf("%s: bucket %d bound %v", name, i, b.GetUpperBound())
			}
			var n uint64
			for _, ms := range c.ms {
				if ms/1000 <= bounds[i] {
					n++
				}
			}
			if b.GetCumulativeCount() != n {
				t.Errorf("%s: le=%v count %d, want %d", name, b.GetUpperBound(), b.GetCumulativeCount(), n)
			}
		}
		if s := find(mfs, size, c.labels); s == nil || s.GetCounter().GetValue() < float64(40*len(c.ms)) {
			t.Errorf("%s: size series %v", name, s)
		}
	}
	if n := len(mfs[calls].Metric); n != len(cases) {
		t.Errorf("%d call series, want %d", n, len(cases))
	}
	var sum float64
	for _, m := range mfs[calls].Metric {
		sum += m.GetCounter().GetValue()
	}
	if sum != float64(total) || total != 23 {
		t.Errorf("calls sum to %v, cases to %d; the guide emits 23 spans", sum, total)
	}
	if v := mfs["ariadne_spanmetrics_series_overflow_total"].Metric[0].GetCounter().GetValue(); v != 0 {
		t.Errorf("overflow = %v", v)
	}
	if v := mfs["ariadne_spanmetrics_active_series"].Metric[0].GetGauge().GetValue(); v != float64(len(cases)) {
		t.Errorf("active series = %v", v)
	}

	// Query API.
	p50, found := m.Typical(api, "process_single_task")
	// Five calls: 30 and 40 and 60 in (0.032,0.064], 95 and 110 in (0.064,0.128]; rank 2.5
	// of 5 is half-way into the (0.032,0.064] bucket's 2 calls after the 1 below it.
	if wantP50 := time.Duration((0.032 + 0.032*0.75) * 1e9); !found || p50 != wantP50 {
		t.Errorf("Typical = %v %v, want %v", p50, found, wantP50)
	}
	if _, found := m.Typical(api, "no-such-span"); found {
		t.Error("Typical found a span that never came")
	}
	ops := m.Operations(api)
	if len(ops) != 17 {
		t.Fatalf("%d operations for task-api: %+v", len(ops), ops)
	}
	for _, o := range ops {
		if o.SpanName == "process_single_task" {
			if o.Calls != 5 || o.Errors != 2 || o.Total != 335*time.Millisecond || o.SpanKind != internal {
				t.Errorf("process_single_task = %+v", o)
			}
			if o.P95 <= o.P50 || o.P95 > 128*time.Millisecond {
				t.Errorf("p95 %v p50 %v", o.P95, o.P50)
			}
		}
		if o.SpanName == "POST" && (o.SpanKind != client || o.Calls != 1 || o.Errors != 0) {
			t.Errorf("POST = %+v", o)
		}
	}
	if ops := m.Operations(notif); len(ops) != 2 || ops[0].SpanName != "POST /api/notify" {
		t.Errorf("notification-service operations = %+v", ops)
	}
}

func kv(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// request builds an ExportTraceServiceRequest of traces×spansPer spans, each span with two
// attributes; name gives each span's name.
func request(traces, spansPer int, name func(t, s int) string) []byte {
	ss := &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: "bench"}}
	for t := range traces {
		for s := range spansPer {
			sp := &tracepb.Span{
				TraceId: bytes.Repeat([]byte{byte(t + 1)}, 16), SpanId: []byte{byte(t), byte(s), 1, 1, 1, 1, 1, 1},
				Name: name(t, s), Kind: tracepb.Span_SPAN_KIND_SERVER,
				StartTimeUnixNano: 1_000_000_000, EndTimeUnixNano: 1_000_000_000 + uint64(s+1)*3_000_000,
				Attributes: []*commonpb.KeyValue{kv("http.request.method", "GET"), kv("http.route", "/api/items/{id}")},
			}
			if s > 0 {
				sp.ParentSpanId = []byte{byte(t), 0, 1, 1, 1, 1, 1, 1}
				sp.Kind = tracepb.Span_SPAN_KIND_INTERNAL
			}
			if s == spansPer-1 {
				sp.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}
			}
			ss.Spans = append(ss.Spans, sp)
		}
	}
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("service.name", "shop"), kv("deployment.environment", "prod")}},
		ScopeSpans: []*tracepb.ScopeSpans{ss},
	}}}
	b, err := proto.Marshal(req)
	if err != nil {
		panic(err)
	}
	return b
}

// TestSeriesLimit floods the metrics with distinct span names from several goroutines: the
// series stay at the limit, the rest lands in one overflow series, and nothing is lost.
func TestSeriesLimit(t *testing.T) {
	reg := prometheus.NewRegistry()
	const limit = 100
	m, err := New(reg, Config{MaxSeries: limit, Dimensions: []string{"http.route"}})
	if err != nil {
		t.Fatal(err)
	}
	const workers, rounds, spans = 4, 25, 200
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				m.ObserveTraces(request(1, spans, func(_, s int) string { return fmt.Sprintf("op-%d-%d-%d", w, r, s) }))
			}
		})
	}
	wg.Wait()
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	// 20000 distinct names; unbounded series would cost megabytes.
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 2<<20 {
		t.Errorf("heap grew by %d bytes for %d series", grown, limit)
	}

	mfs := scrape(t, reg)
	total := workers * rounds * spans
	if n := len(mfs["traces_spanmetrics_calls_total"].Metric); n != limit+1 {
		t.Errorf("%d series, want %d and the overflow series", n, limit)
	}
	over := map[string]string{"service": OverflowValue, "span_name": OverflowValue, "span_kind": OverflowValue, "status_code": OverflowValue, "http_route": OverflowValue}
	om := find(mfs, "traces_spanmetrics_calls_total", over)
	if om == nil {
		t.Fatal("no overflow series")
	}
	if got, want := om.GetCounter().GetValue(), float64(total-limit); got != want {
		t.Errorf("overflow series counted %v, want %v", got, want)
	}
	if got := mfs["ariadne_spanmetrics_series_overflow_total"].Metric[0].GetCounter().GetValue(); got != float64(total-limit) {
		t.Errorf("overflow counter = %v", got)
	}
	if h := find(mfs, "traces_spanmetrics_latency", over).GetHistogram(); h.GetSampleCount() != uint64(total-limit) {
		t.Errorf("overflow histogram count = %d", h.GetSampleCount())
	}

	// Pruning makes room again.
	if n := m.Prune(time.Now().Add(time.Hour)); n != limit {
		t.Errorf("pruned %d", n)
	}
	m.ObserveTraces(request(1, 1, func(_, _ int) string { return "fresh" }))
	if _, ok := m.Typical("shop", "fresh"); !ok {
		t.Error("a new series after pruning went to overflow")
	}
}

func TestConfig(t *testing.T) {
	if _, err := New(nil, Config{Dimensions: []string{"service"}}); err == nil {
		t.Error("a dimension clashing with an intrinsic label was accepted")
	}
	if _, err := New(nil, Config{Dimensions: []string{"a.b", "a_b"}}); err == nil {
		t.Error("two dimensions with one label name were accepted")
	}
	if _, err := New(nil, Config{Buckets: []float64{2, 1}}); err == nil {
		t.Error("descending buckets were accepted")
	}
	for key, want := range map[string]string{"http.route": "http_route", "k8s.pod-name": "k8s_pod_name", "1x": "_x"} {
		if got := LabelName(key); got != want {
			t.Errorf("LabelName(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestResourceDimensionAndMissing(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg, Config{Dimensions: []string{"deployment.environment", "absent", "http.route"}})
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveTraces(request(2, 3, func(_, s int) string { return fmt.Sprint("op", s) }))
	mfs := scrape(t, reg)
	l := op("shop", "op0", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET")
	l["deployment_environment"], l["absent"], l["http_route"] = "prod", "", "/api/items/{id}"
	if c := find(mfs, "traces_spanmetrics_calls_total", l); c == nil || c.GetCounter().GetValue() != 2 {
		t.Errorf("op0 series = %v", c)
	}
}

func TestQuantile(t *testing.T) {
	b := []float64{1, 2, 4}
	for _, c := range []struct {
		q      float64
		counts []uint64
		want   float64
	}{
		{0.5, []uint64{0, 0, 0, 0}, 0},
		{0.5, []uint64{2, 0, 0, 0}, 0.5},
		{0.5, []uint64{0, 4, 0, 0}, 1.5},
		{0.95, []uint64{0, 0, 0, 3}, 4},
		{1, []uint64{1, 1, 0, 0}, 2},
	} {
		if got := Quantile(c.q, b, c.counts); got != c.want {
			t.Errorf("Quantile(%v, %v) = %v, want %v", c.q, c.counts, got, c.want)
		}
	}
}

// BenchmarkObserveTraces measures a 1000-span request (100 traces of 10 spans, 2 attributes
// each) once its series exist, with and without attribute dimensions.
func BenchmarkObserveTraces(b *testing.B) {
	req := request(100, 10, func(_, s int) string { return fmt.Sprint("op", s) })
	for _, dims := range [][]string{nil, {"http.route", "deployment.environment"}} {
		b.Run(fmt.Sprintf("dims=%d", len(dims)), func(b *testing.B) {
			m, err := New(nil, Config{Dimensions: dims})
			if err != nil {
				b.Fatal(err)
			}
			m.ObserveTraces(req)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				m.ObserveTraces(req)
			}
			b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "spans/s")
		})
	}
}
