package server_test

import (
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/pipeline/sampling"
	"github.com/ariadne-tracing/ariadne/internal/read/query"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
)

func grpcClient(t testing.TB, s *server.Server) coltracepb.TraceServiceClient {
	conn, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return coltracepb.NewTraceServiceClient(conn)
}

// scrape reads /metrics with Prometheus' own parser.
func scrape(t *testing.T, s *server.Server) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + s.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// metricValue sums the samples of a counter or gauge whose labels include want.
func metricValue(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	total := 0.0
	for _, m := range f.Metric {
		ok := true
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			ok = ok && found
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		}
	}
	return total
}

type genTrace struct {
	id   [16]byte
	kind string // normal, error, slow
}

func genRequest(rng *rand.Rand, traces []genTrace, now time.Time) *coltracepb.ExportTraceServiceRequest {
	ss := &tracepb.ScopeSpans{}
	for _, g := range traces {
		dur := 50 * time.Millisecond
		if g.kind == "slow" {
			dur = 800 * time.Millisecond
		}
		root := make([]byte, 8)
		for i := range root {
			root[i] = byte(rng.IntN(255) + 1)
		}
		start := uint64(now.UnixNano())
		ss.Spans = append(ss.Spans, &tracepb.Span{TraceId: g.id[:], SpanId: root, Name: "GET /api/tasks", Kind: tracepb.Span_SPAN_KIND_SERVER,
			StartTimeUnixNano: start, EndTimeUnixNano: start + uint64(dur), Flags: 0x101})
		for c := 0; c < 2; c++ {
			sid := make([]byte, 8)
			for i := range sid {
				sid[i] = byte(rng.IntN(255) + 1)
			}
			sp := &tracepb.Span{TraceId: g.id[:], SpanId: sid, ParentSpanId: root, Name: "db.query", Kind: tracepb.Span_SPAN_KIND_CLIENT,
				StartTimeUnixNano: start + 1e6, EndTimeUnixNano: start + 2e6, Flags: 0x101}
			if g.kind == "error" && c == 1 {
				sp.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "boom"}
			}
			ss.Spans = append(ss.Spans, sp)
		}
	}
	return request(ss.Spans...)
}

func lateSpan(id [16]byte, now time.Time) *tracepb.Span {
	return &tracepb.Span{TraceId: id[:], SpanId: []byte{9, 9, 9, 9, 9, 9, 9, 9}, ParentSpanId: []byte{1, 1, 1, 1, 1, 1, 1, 1}, Name: "late",
		StartTimeUnixNano: uint64(now.UnixNano()), EndTimeUnixNano: uint64(now.UnixNano()) + 1e6, Flags: 0x101}
}

// TestGuideSamplingStrategy runs the guide's production strategy (every error, every slow request,
// 15% of the rest) over a mix of traces sent through OTLP/gRPC.
func TestGuideSamplingStrategy(t *testing.T) {
	cfg := testConfig(t.TempDir())
	ratio := 0.15
	cfg.TailSampling = sampling.Config{KeepErrors: true, KeepSlowerThan: 500 * time.Millisecond, KeepRatio: &ratio,
		DecisionWait: 200 * time.Millisecond}
	s := startServer(t, cfg)
	client := grpcClient(t, s)
	rng := rand.New(rand.NewPCG(3, 4))
	var all []genTrace
	now := time.Now()
	for r := 0; r < 40; r++ {
		var batch []genTrace
		for i := 0; i < 50; i++ {
			var g genTrace
			for j := range g.id {
				g.id[j] = byte(rng.IntN(256))
			}
			switch x := rng.IntN(10); {
			case x == 0:
				g.kind = "error"
			case x == 1:
				g.kind = "slow"
			default:
				g.kind = "normal"
			}
			batch = append(batch, g)
		}
		if _, err := client.Export(context.Background(), genRequest(rng, batch, now)); err != nil {
			t.Fatal(err)
		}
		all = append(all, batch...)
	}
	if err := s.Store.Flush(); err != nil {
		t.Fatal(err)
	}
	q := query.New(s.Store)
	present := func(id [16]byte) int {
		td, err := q.FindTrace(context.Background(), id, query.TimeRange{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, rs := range td.GetResourceSpans() {
			for _, ss := range rs.ScopeSpans {
				n += len(ss.Spans)
			}
		}
		return n
	}
	sdk := sdktrace.TraceIDRatioBased(ratio)
	normal, keptNormal := 0, 0
	var keptID, droppedID [16]byte
	for _, g := range all {
		n := present(g.id)
		switch g.kind {
		case "error", "slow":
			if n != 3 {
				t.Fatalf("%s trace %x: %d spans stored, want all 3", g.kind, g.id, n)
			}
		case "normal":
			normal++
			sdkKeeps := sdk.ShouldSample(sdktrace.SamplingParameters{ParentContext: context.Background(), TraceID: trace.TraceID(g.id)}).Decision == sdktrace.RecordAndSample
			if (n == 3) != sdkKeeps {
				t.Fatalf("normal trace %x: stored=%v, the SDK's TraceIdRatioBased(%.2f) says %v", g.id, n == 3, ratio, sdkKeeps)
			}
			if n == 3 {
				keptNormal++
				keptID = g.id
			} else {
				droppedID = g.id
			}
		}
	}
	// Binomial bounds: 4 standard deviations either side of the expected count.
	mean := float64(normal) * ratio
	sd := math.Sqrt(float64(normal) * ratio * (1 - ratio))
	if f := float64(keptNormal); f < mean-4*sd || f > mean+4*sd {
		t.Fatalf("kept %d of %d normal traces, expected %.0f±%.0f", keptNormal, normal, mean, 4*sd)
	}
	t.Logf("kept %d of %d normal traces (%.1f%%)", keptNormal, normal, 100*float64(keptNormal)/float64(normal))

	// The kept trace's sampling ratio is stored with it.
	var ratios = map[float64]int{}
	for _, b := range s.Store.Blocks() {
		b.Traces(context.Background(), func(ts *block.TraceSummary) bool { ratios[ts.SampleRatio]++; return true })
	}
	if ratios[ratio] != keptNormal || ratios[1] != len(all)-normal {
		t.Fatalf("stored sample ratios %v", ratios)
	}

	// Late spans follow their trace's decision.
	if _, err := client.Export(context.Background(), request(lateSpan(keptID, now), lateSpan(droppedID, now))); err != nil {
		t.Fatal(err)
	}
	if err := s.Store.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := present(keptID); n != 4 {
		t.Fatalf("late span of a kept trace: trace has %d spans, want 4", n)
	}
	if n := present(droppedID); n != 0 {
		t.Fatalf("late span of a dropped trace was stored (%d spans)", n)
	}
	fams := scrape(t, s)
	if v := metricValue(fams, "ariadne_sampling_decisions_total", map[string]string{"policy": "keep-errors", "decision": "kept"}); v == 0 {
		t.Error("no decisions counted for keep-errors")
	}
	if v := metricValue(fams, "ariadne_sampling_late_traces_total", nil); v != 2 {
		t.Errorf("late traces counted %v, want 2", v)
	}
}

func TestLimits(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Ingest.MaxSpansPerTrace = 5
	cfg.Ingest.MaxAttributeValueBytes = 100
	cfg.Ingest.MaxAttributesPerSpan = 3
	cfg.Ingest.MaxEventsPerSpan = 2
	cfg.Ingest.MaxLinksPerSpan = 1
	// A 1000-span burst refilled at one span a second: the second request below is over the
	// rate however long a busy machine takes between the two.
	cfg.Ingest.RateLimitSpans = 1
	cfg.Ingest.RateBurstSpans = 1000
	s := startServer(t, cfg)
	client := grpcClient(t, s)
	ctx := context.Background()
	q := query.New(s.Store)

	// Spans per trace: 8 spans of one trace; 3 refused, trace marked truncated.
	var spans []*tracepb.Span
	for i := byte(1); i <= 8; i++ {
		spans = append(spans, validSpan(1, i))
	}
	resp, err := client.Export(ctx, request(spans...))
	if err != nil || resp.PartialSuccess.GetRejectedSpans() != 3 || !strings.Contains(resp.PartialSuccess.GetErrorMessage(), "5 spans per trace") {
		t.Fatalf("spans per trace: %v %v", resp, err)
	}
	// Attribute value length, attributes, events and links per span.
	big := validSpan(2, 1)
	big.Attributes = []*commonpb.KeyValue{
		{Key: "long", Value: sv(strings.Repeat("é", 100))}, {Key: "b", Value: sv("x")}, {Key: "c", Value: sv("y")}, {Key: "d", Value: sv("z")}}
	big.Events = []*tracepb.Span_Event{{Name: "e1"}, {Name: "e2"}, {Name: "e3"}}
	big.Links = []*tracepb.Span_Link{{TraceId: big.TraceId, SpanId: []byte{5, 5, 5, 5, 5, 5, 5, 5}}, {TraceId: big.TraceId, SpanId: []byte{6, 6, 6, 6, 6, 6, 6, 6}}}
	if resp, err := client.Export(ctx, request(big)); err != nil || resp.PartialSuccess != nil {
		t.Fatalf("reshaped span: %v %v", resp, err)
	}
	td, err := q.FindTrace(ctx, [16]byte(big.TraceId), query.TimeRange{})
	if err != nil || td == nil {
		t.Fatal(err)
	}
	got := td.ResourceSpans[0].ScopeSpans[0].Spans[0]
	if len(got.Events) != 2 || got.DroppedEventsCount != 1 || len(got.Links) != 1 || got.DroppedLinksCount != 1 {
		t.Fatalf("events/links not capped: %d events (%d dropped), %d links (%d dropped)", len(got.Events), got.DroppedEventsCount, len(got.Links), got.DroppedLinksCount)
	}
	if got.DroppedAttributesCount != 1 || len(got.Attributes) != 4 || got.Attributes[3].Key != "ariadne.truncated" {
		t.Fatalf("attributes not capped and recorded: %v", got.Attributes)
	}
	if v := got.Attributes[0].Value.GetStringValue(); len(v) > 100 || !strings.HasPrefix(strings.Repeat("é", 100), v) {
		t.Fatalf("long value not cut at a character boundary within 100 bytes: %d bytes", len(v))
	}
	if rec := got.Attributes[3].Value.GetArrayValue().Values[0].GetStringValue(); rec != "long=200" {
		t.Fatalf("original length recorded as %q", rec)
	}

	// Per-tenant rate: a 1000-span burst. Tenant a spends it; tenant b is separate.
	mk := func(trace byte, n int) *coltracepb.ExportTraceServiceRequest {
		var sp []*tracepb.Span
		for i := 0; i < n; i++ {
			// Five spans per trace, within the spans-per-trace limit.
			x := validSpan(trace, byte(i%5+1))
			x.TraceId[1], x.TraceId[2] = byte(i/5), byte(i/5>>8)
			sp = append(sp, x)
		}
		return request(sp...)
	}
	tenant := func(name string) context.Context { return metadata.AppendToOutgoingContext(ctx, "x-scope-orgid", name) }
	if _, err := client.Export(tenant("a"), mk(10, 900)); err != nil {
		t.Fatalf("first request within the burst: %v", err)
	}
	_, err = client.Export(tenant("a"), mk(11, 900))
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("over the rate: %v, want ResourceExhausted", err)
	}
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri
		}
	}
	if retry == nil || retry.RetryDelay.AsDuration() <= 0 {
		t.Fatalf("no retry information with the refusal: %v", st.Details())
	}
	// Multi-tenancy is off: there is one tenant, so naming another dodges nothing.
	if _, err := client.Export(tenant("b"), mk(12, 900)); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("another tenant name with multi-tenancy off: %v, want ResourceExhausted", err)
	}
	// Over HTTP the same refusal is a 429 with Retry-After.
	body, _ := proto.Marshal(mk(13, 900))
	hr, _ := post(t, "http://"+s.OTLPHTTPAddr+"/v1/traces", "application/x-protobuf", body, "X-Scope-OrgID", "a")
	if hr.StatusCode != 429 || hr.Header.Get("Retry-After") == "" {
		t.Fatalf("HTTP over the rate: %d, Retry-After %q", hr.StatusCode, hr.Header.Get("Retry-After"))
	}

	fams := scrape(t, s)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"ariadne_ingest_spans_refused_total", map[string]string{"reason": "max_spans_per_trace"}, 3},
		{"ariadne_ingest_spans_refused_total", map[string]string{"reason": "rate_limited"}, 2700},
		{"ariadne_ingest_spans_limited_total", map[string]string{"limit": "attribute_value"}, 1},
		{"ariadne_ingest_spans_limited_total", map[string]string{"limit": "events"}, 1},
		{"ariadne_ingest_spans_limited_total", map[string]string{"limit": "links"}, 1},
		{"ariadne_ingest_spans_limited_total", map[string]string{"limit": "attributes"}, 1},
		{"ariadne_ingest_spans_accepted_total", nil, 5 + 1 + 900},
	} {
		if got := metricValue(fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// Nothing within the limits was lost, and the truncated trace is marked in its block.
	if err := s.Store.Flush(); err != nil {
		t.Fatal(err)
	}
	td, _ = q.FindTrace(ctx, [16]byte(validSpan(1, 1).TraceId), query.TimeRange{})
	if n := len(td.ResourceSpans[0].ScopeSpans[0].Spans); n != 5 {
		t.Fatalf("truncated trace has %d spans, want 5", n)
	}
	truncated := 0
	for _, b := range s.Store.Blocks() {
		b.Traces(ctx, func(ts *block.TraceSummary) bool {
			if ts.Truncated {
				truncated++
			}
			return true
		})
	}
	if truncated != 1 {
		t.Fatalf("%d traces marked truncated, want 1", truncated)
	}
}
