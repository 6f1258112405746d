package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
	"github.com/ariadne-tracing/ariadne/internal/tools/guidetrace"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpjson"
)

func testConfig(dir string) config.Config {
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.OTLPGRPCAddr, cfg.OTLPHTTPAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ZipkinAddr = "127.0.0.1:0"
	cfg.Ingest.MaxRequestBytes = 1 << 20
	return cfg
}

func startServer(t *testing.T, cfg config.Config) *server.Server {
	t.Helper()
	s, err := server.Start(cfg, api.BuildInfo{Version: "test"}, nil)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	return s
}

// capture is an OTLP endpoint built from the stock generated service: an independent record of
// exactly what the SDK sent, to compare Ariadne's answers with.
type capture struct {
	coltracepb.UnimplementedTraceServiceServer
	reqs []*coltracepb.ExportTraceServiceRequest
}

func (c *capture) Export(_ context.Context, r *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.reqs = append(c.reqs, proto.Clone(r).(*coltracepb.ExportTraceServiceRequest))
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func startCapture(t *testing.T) (*capture, string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &capture{}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, c)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	return c, l.Addr().String()
}

// exportGuide sends the guide's traces through the real SDK to Ariadne (over protocol) and to a
// capture endpoint, and returns the traces and what the capture received.
func exportGuide(t *testing.T, s *server.Server, protocol string) ([]guidetrace.Trace, []*coltracepb.ExportTraceServiceRequest) {
	t.Helper()
	ctx := context.Background()
	cap, capAddr := startCapture(t)
	provider := func(service string) *sdktrace.TracerProvider {
		var exp sdktrace.SpanExporter
		var err error
		switch protocol {
		case "grpc":
			exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(s.GRPCAddr), otlptracegrpc.WithInsecure())
		case "http":
			exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(s.OTLPHTTPAddr), otlptracehttp.WithInsecure())
		}
		if err != nil {
			t.Fatal(err)
		}
		capExp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(capAddr), otlptracegrpc.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		return guidetrace.NewTracerProvider(service, sdktrace.WithBatcher(exp), sdktrace.WithBatcher(capExp))
	}
	p := guidetrace.Providers{TaskAPI: provider(guidetrace.ServiceTaskAPI), Notification: provider(guidetrace.ServiceNotification)}
	traces, err := guidetrace.EmitAll(ctx, p, time.Now().Add(-time.Minute).Truncate(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range []*sdktrace.TracerProvider{p.TaskAPI, p.Notification} {
		if err := tp.Shutdown(ctx); err != nil {
			t.Fatalf("SDK shutdown (flush to Ariadne): %v", err)
		}
	}
	return traces, cap.reqs
}

// flatSpan is a span with its resource and scope, for comparing traces regardless of how spans
// were batched into requests.
type flatSpan struct {
	resource, scope string // deterministic protobuf, schema URL appended
	span            *tracepb.Span
}

func flatten(rss []*tracepb.ResourceSpans) map[string]flatSpan {
	det := proto.MarshalOptions{Deterministic: true}
	out := map[string]flatSpan{}
	for _, rs := range rss {
		rb, _ := det.Marshal(rs.Resource)
		for _, ss := range rs.ScopeSpans {
			sb, _ := det.Marshal(ss.Scope)
			for _, sp := range ss.Spans {
				out[fmt.Sprintf("%x/%x", sp.TraceId, sp.SpanId)] = flatSpan{string(rb) + rs.SchemaUrl, string(sb) + ss.SchemaUrl, sp}
			}
		}
	}
	return out
}

func sentForTrace(reqs []*coltracepb.ExportTraceServiceRequest, traceID []byte) map[string]flatSpan {
	var rss []*tracepb.ResourceSpans
	for _, r := range reqs {
		rss = append(rss, r.ResourceSpans...)
	}
	all := flatten(rss)
	for k, v := range all {
		if !bytes.Equal(v.span.TraceId, traceID) {
			delete(all, k)
		}
	}
	return all
}

func assertSameSpans(t *testing.T, what string, got, want map[string]flatSpan) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d spans, want %d", what, len(got), len(want))
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Fatalf("%s: span %s (%s) missing", what, k, w.span.Name)
		}
		if g.resource != w.resource {
			t.Errorf("%s: span %s: resource differs", what, w.span.Name)
		}
		if g.scope != w.scope {
			t.Errorf("%s: span %s: scope differs", what, w.span.Name)
		}
		if !proto.Equal(g.span, w.span) {
			t.Errorf("%s: span %s differs:\n got %v\nwant %v", what, w.span.Name, g.span, w.span)
		}
	}
}

func httpGet(t *testing.T, url, accept string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// fetchTrace reads a trace back through every shape of the trace-by-ID API and checks that they
// agree, returning the spans.
func fetchTrace(t *testing.T, s *server.Server, id []byte) map[string]flatSpan {
	t.Helper()
	base := fmt.Sprintf("http://%s", s.HTTPAddr)
	// v2 protobuf: Tempo's TraceByIDResponse, field 1 is the trace.
	code, body := httpGet(t, fmt.Sprintf("%s/api/v2/traces/%x", base, id), "application/protobuf")
	if code != 200 {
		t.Fatalf("v2 protobuf: %d %s", code, body)
	}
	num, typ, n := protowire.ConsumeTag(body)
	if num != 1 || typ != protowire.BytesType {
		t.Fatalf("v2 protobuf: first field %d/%d", num, typ)
	}
	inner, _ := protowire.ConsumeBytes(body[n:])
	td := &tracepb.TracesData{}
	if err := proto.Unmarshal(inner, td); err != nil {
		t.Fatal(err)
	}
	got := flatten(td.ResourceSpans)

	// v2 JSON: {"trace":{"resourceSpans":[...]}} with hex IDs.
	code, body = httpGet(t, fmt.Sprintf("%s/api/v2/traces/%x", base, id), "")
	if code != 200 {
		t.Fatalf("v2 json: %d %s", code, body)
	}
	var v2 map[string]json.RawMessage
	if err := json.Unmarshal(body, &v2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(body, []byte(fmt.Sprintf(`"traceId":"%x"`, id))) {
		t.Fatalf("v2 json does not carry the trace ID in hex: %.300s", body)
	}
	assertSameSpans(t, "v2 json", decodeJSONTrace(t, v2["trace"]), got)

	// v1 JSON: {"batches":[...]}.
	code, body = httpGet(t, fmt.Sprintf("%s/api/traces/%x", base, id), "application/json")
	if code != 200 {
		t.Fatalf("v1 json: %d %s", code, body)
	}
	var v1 map[string]json.RawMessage
	if err := json.Unmarshal(body, &v1); err != nil {
		t.Fatal(err)
	}
	assertSameSpans(t, "v1 json", decodeJSONTrace(t, []byte(`{"resourceSpans":`+string(v1["batches"])+`}`)), got)
	return got
}

func decodeJSONTrace(t *testing.T, b []byte) map[string]flatSpan {
	t.Helper()
	pb, err := otlpjson.RequestToProto(b)
	if err != nil {
		t.Fatalf("decode OTLP/JSON answer: %v", err)
	}
	td := &tracepb.TracesData{}
	if err := proto.Unmarshal(pb, td); err != nil {
		t.Fatal(err)
	}
	return flatten(td.ResourceSpans)
}

func TestGuideTracesRoundTrip(t *testing.T) {
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) {
			cfg := testConfig(t.TempDir())
			s := startServer(t, cfg)
			traces, sent := exportGuide(t, s, protocol)
			if len(traces) != 4 {
				t.Fatalf("%d guide traces", len(traces))
			}
			check := func(stage string) {
				for _, tr := range traces {
					want := sentForTrace(sent, tr.TraceID[:])
					if len(want) != tr.SpanCount {
						t.Fatalf("capture saw %d spans of %s, guide says %d", len(want), tr.Name, tr.SpanCount)
					}
					assertSameSpans(t, stage+" "+tr.Name, fetchTrace(t, s, tr.TraceID[:]), want)
				}
			}
			check("head")
			if err := s.Store.Flush(); err != nil {
				t.Fatal(err)
			}
			if len(s.Store.Blocks()) == 0 {
				t.Fatal("flush wrote no block")
			}
			if st := s.Store.Head().Stats(); st.Spans != 0 {
				t.Fatalf("head still holds %d spans after flush", st.Spans)
			}
			check("block")
			if err := s.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			s = startServer(t, cfg)
			check("after restart")
		})
	}
}

func TestTraceByIDErrors(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	base := "http://" + s.HTTPAddr
	for _, c := range []struct {
		path string
		code int
	}{
		{"/api/traces/4bf92f3577b34da6a3ce929d0e0e4736", 404},
		{"/api/v2/traces/4bf92f3577b34da6a3ce929d0e0e4736", 404},
		{"/api/v2/traces/not-hex", 400},
		{"/api/v2/traces/" + strings.Repeat("a", 33), 400},
		{"/api/v2/traces/4bf92f3577b34da6a3ce929d0e0e4736?start=abc", 400},
		{"/api/v2/traces/4bf92f3577b34da6a3ce929d0e0e4736?start=200&end=100", 400},
		{"/ready", 200},
		{"/api/echo", 200},
		{"/api/status/buildinfo", 200},
	} {
		code, body := httpGet(t, base+c.path, "")
		if code != c.code {
			t.Errorf("%s: %d %s, want %d", c.path, code, body, c.code)
		}
	}
}
