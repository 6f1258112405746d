package zipkin

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/pipeline/servicegraph"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// request is what a Zipkin-instrumented frontend and backend would send: the frontend's server
// span, its client call, the backend's server span for that call (failing), and a span shared
// with the client in the B3 style.
const request = `[
  {
    "traceId": "463ac35c9f6413ad",
    "id": "a2fb4a1d1a96d312",
    "name": "get /",
    "kind": "SERVER",
    "timestamp": 1705314600000000,
    "duration": 250000,
    "localEndpoint": {"serviceName": "frontend", "ipv4": "10.0.0.1", "port": 8080},
    "remoteEndpoint": {"ipv6": "2001:db8::1", "port": 51234},
    "tags": {"http.method": "GET", "http.path": "/", "otel.library.name": "zipkin-go", "otel.library.version": "0.4"}
  },
  {
    "traceId": "463ac35c9f6413ad",
    "parentId": "a2fb4a1d1a96d312",
    "id": "b3fb4a1d1a96d313",
    "name": "get /api",
    "kind": "CLIENT",
    "timestamp": 1705314600010000,
    "duration": 200000,
    "localEndpoint": {"serviceName": "frontend"},
    "remoteEndpoint": {"serviceName": "backend", "ipv4": "10.0.0.2", "port": 9000},
    "annotations": [{"timestamp": 1705314600010500, "value": "wire send"}, {"timestamp": 1705314600209000, "value": "wire recv"}],
    "tags": {"http.method": "GET", "http.status_code": 500, "otel.library.name": "zipkin-go", "otel.library.version": "0.4"}
  },
  {
    "traceId": "463AC35C9F6413AD",
    "parentId": "b3fb4a1d1a96d313",
    "id": "c4fb4a1d1a96d314",
    "name": "get /api",
    "kind": "SERVER",
    "timestamp": 1705314600020000,
    "duration": 150000,
    "localEndpoint": {"serviceName": "backend", "ipv4": "10.0.0.2", "port": 9000},
    "tags": {"error": "database unavailable", "db.rows": "0"}
  },
  {
    "traceId": "0000000000000000463ac35c9f6413ad",
    "parentId": "a2fb4a1d1a96d312",
    "id": "b3fb4a1d1a96d313",
    "name": "get /api",
    "kind": "SERVER",
    "timestamp": 1705314600012000,
    "duration": 190000,
    "shared": true,
    "localEndpoint": {"serviceName": "backend"},
    "tags": {"otel.status_code": "ERROR", "otel.status_description": "upstream failed", "error": "true"}
  }
]`

func sattr(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func iattr(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

func hexID(t *testing.T, s string) []byte {
	t.Helper()
	b, err := parseID(s, len(s)/2)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestToOTLP(t *testing.T) {
	out, err := ToOTLP([]byte(request))
	if err != nil {
		t.Fatal(err)
	}
	got := &coltracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(out, got); err != nil {
		t.Fatal(err)
	}

	tid := hexID(t, "0000000000000000463ac35c9f6413ad")
	root, cli, srv := hexID(t, "a2fb4a1d1a96d312"), hexID(t, "b3fb4a1d1a96d313"), hexID(t, "c4fb4a1d1a96d314")
	const base = uint64(1705314600000000000)
	ms := func(n uint64) uint64 { return base + n*1_000_000 }
	scope := &commonpb.InstrumentationScope{Name: "zipkin-go", Version: "0.4"}
	want := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{
		{
			Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{sattr("service.name", "frontend")}},
			ScopeSpans: []*tracepb.ScopeSpans{{Scope: scope, Spans: []*tracepb.Span{
				{
					TraceId: tid, SpanId: root, Name: "get /", Kind: tracepb.Span_SPAN_KIND_SERVER,
					StartTimeUnixNano: ms(0), EndTimeUnixNano: ms(250),
					Attributes: []*commonpb.KeyValue{
						sattr(AttrLocalAddress, "10.0.0.1"), iattr(AttrLocalPort, 8080),
						sattr(AttrPeerAddress, "2001:db8::1"), iattr(AttrPeerPort, 51234),
						sattr("http.method", "GET"), sattr("http.path", "/"),
					},
				},
				{
					TraceId: tid, SpanId: cli, ParentSpanId: root, Name: "get /api", Kind: tracepb.Span_SPAN_KIND_CLIENT,
					StartTimeUnixNano: ms(10), EndTimeUnixNano: ms(210),
					Attributes: []*commonpb.KeyValue{
						sattr(AttrPeerService, "backend"), sattr(AttrPeerAddress, "10.0.0.2"), iattr(AttrPeerPort, 9000),
						sattr("http.method", "GET"), sattr("http.status_code", "500"),
					},
					Events: []*tracepb.Span_Event{
						{TimeUnixNano: base + 10_500_000, Name: "wire send"},
						{TimeUnixNano: ms(209), Name: "wire recv"},
					},
				},
			}}},
		},
		{
			Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{sattr("service.name", "backend")}},
			ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{
				{
					TraceId: tid, SpanId: srv, ParentSpanId: cli, Name: "get /api", Kind: tracepb.Span_SPAN_KIND_SERVER,
					StartTimeUnixNano: ms(20), EndTimeUnixNano: ms(170),
					Attributes: []*commonpb.KeyValue{
						sattr(AttrLocalAddress, "10.0.0.2"), iattr(AttrLocalPort, 9000), sattr("db.rows", "0"),
					},
					Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "database unavailable"},
				},
				{
					TraceId: tid, SpanId: cli, ParentSpanId: root, Name: "get /api", Kind: tracepb.Span_SPAN_KIND_SERVER,
					StartTimeUnixNano: ms(12), EndTimeUnixNano: ms(202),
					Attributes: []*commonpb.KeyValue{
						{Key: AttrShared, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}},
					},
					Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "upstream failed"},
				},
			}}},
		},
	}}
	if !proto.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", prototext.Format(got), prototext.Format(want))
	}

	// Ingest scans what ToOTLP writes.
	var n int
	err = otlpwire.ScanRequest(out, func(g *otlpwire.Group, s *otlpwire.Span) error {
		if ok, why := s.Valid(); !ok {
			t.Errorf("span %x: %s", s.SpanID, why)
		}
		n++
		return nil
	})
	if err != nil || n != 4 {
		t.Errorf("ScanRequest: %d spans, %v", n, err)
	}
}

func TestStatusTags(t *testing.T) {
	for _, c := range []struct {
		tags      string
		code      tracepb.Status_StatusCode
		msg       string
		leftAttrs []string
	}{
		{`{"error": ""}`, tracepb.Status_STATUS_CODE_ERROR, "", nil},
		{`{"error": "true"}`, tracepb.Status_STATUS_CODE_ERROR, "", nil},
		{`{"error": "boom", "otel.status_description": "ignored"}`, tracepb.Status_STATUS_CODE_ERROR, "boom", nil},
		{`{"otel.status_code": "OK", "error": "x"}`, tracepb.Status_STATUS_CODE_OK, "", []string{"error"}},
		{`{"otel.status_code": "UNSET"}`, tracepb.Status_STATUS_CODE_UNSET, "", nil},
		{`{"otel.status_description": "alone"}`, tracepb.Status_STATUS_CODE_UNSET, "", []string{"otel.status_description"}},
		{`{"otel.scope.name": "s", "otel.library.name": "old"}`, tracepb.Status_STATUS_CODE_UNSET, "", nil},
	} {
		body := `[{"traceId":"1","id":"2","name":"n","timestamp":1,"tags":` + c.tags + `}]`
		out, err := ToOTLP([]byte(body))
		if err != nil {
			t.Errorf("%s: %v", c.tags, err)
			continue
		}
		r := &coltracepb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(out, r); err != nil {
			t.Fatal(err)
		}
		ss := r.ResourceSpans[0].ScopeSpans[0]
		sp := ss.Spans[0]
		if sp.GetStatus().GetCode() != c.code || sp.GetStatus().GetMessage() != c.msg {
			t.Errorf("%s: status %v", c.tags, sp.GetStatus())
		}
		var keys []string
		for _, a := range sp.Attributes {
			keys = append(keys, a.Key)
		}
		if strings.Join(keys, ",") != strings.Join(c.leftAttrs, ",") {
			t.Errorf("%s: attributes %v, want %v", c.tags, keys, c.leftAttrs)
		}
		if strings.Contains(c.tags, "otel.scope.name") && ss.Scope.GetName() != "s" {
			t.Errorf("scope = %v", ss.Scope)
		}
		if sp.Kind != tracepb.Span_SPAN_KIND_INTERNAL || r.ResourceSpans[0].Resource.Attributes[0].Value.GetStringValue() != UnknownService {
			t.Errorf("kindless, serviceless span = %v in %v", sp.Kind, r.ResourceSpans[0].Resource)
		}
		if want := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}; !bytes.Equal(sp.TraceId, want) {
			t.Errorf("short trace ID padded to %x", sp.TraceId)
		}
	}
}

func TestInvalid(t *testing.T) {
	for name, body := range map[string]string{
		"not json":        `{{`,
		"object":          `{"traceId":"1","id":"2"}`,
		"null":            `null`,
		"trailing":        `[] []`,
		"long trace id":   `[{"traceId":"00000000000000000000463ac35c9f6413ad","id":"2"}]`,
		"bad hex":         `[{"traceId":"zz","id":"2"}]`,
		"no id":           `[{"traceId":"1"}]`,
		"no trace id":     `[{"id":"1"}]`,
		"zero id":         `[{"traceId":"1","id":"0000000000000000"}]`,
		"bad parent":      `[{"traceId":"1","id":"2","parentId":"x"}]`,
		"unknown kind":    `[{"traceId":"1","id":"2","kind":"SIDEWAYS"}]`,
		"string duration": `[{"traceId":"1","id":"2","duration":"5"}]`,
		"negative time":   `[{"traceId":"1","id":"2","timestamp":-5}]`,
	} {
		if _, err := ToOTLP([]byte(body)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if out, err := ToOTLP([]byte(" [] ")); err != nil || len(out) != 0 {
		t.Errorf("empty list: %x %v", out, err)
	}
}

// overloadErr mimics ingest's overload error through the methods the handler looks for.
type overloadErr struct{ limited bool }

func (o overloadErr) Error() string             { return "overloaded" }
func (o overloadErr) RetryAfter() time.Duration { return 1500 * time.Millisecond }
func (o overloadErr) RateLimited() bool         { return o.limited }

func TestHandler(t *testing.T) {
	var got [][]byte
	var consumeErr error
	h := Handler(func(ctx context.Context, otlp []byte) (int64, error) {
		got = append(got, otlp)
		return 1, consumeErr
	})
	gz := func(s string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(s))
		zw.Close()
		return b.Bytes()
	}
	valid := request
	for _, c := range []struct {
		name, method, ct, enc string
		body                  []byte
		err                   error
		status                int
		consumed              bool
	}{
		{"json", "POST", "application/json", "", []byte(valid), nil, 202, true},
		{"json with charset", "POST", "application/json; charset=utf-8", "", []byte(valid), nil, 202, true},
		{"no content type", "POST", "", "", []byte(valid), nil, 202, true},
		{"gzip", "POST", "application/json", "gzip", gz(valid), nil, 202, true},
		{"bad gzip", "POST", "application/json", "gzip", []byte(valid), nil, 400, false},
		{"protobuf", "POST", "application/x-protobuf", "", []byte{1, 2}, nil, 415, false},
		{"thrift", "POST", "application/x-thrift", "", []byte{1, 2}, nil, 415, false},
		{"brotli", "POST", "application/json", "br", []byte(valid), nil, 415, false},
		{"bad json", "POST", "application/json", "", []byte(`[{"traceId":`), nil, 400, false},
		{"get", "GET", "", "", nil, nil, 405, false},
		{"overloaded", "POST", "", "", []byte(valid), fmt.Errorf("consume: %w", overloadErr{}), 503, true},
		{"rate limited", "POST", "", "", []byte(valid), fmt.Errorf("consume: %w", overloadErr{limited: true}), 429, true},
		{"consumer failed", "POST", "", "", []byte(valid), errors.New("disk full"), 500, true},
	} {
		got, consumeErr = nil, c.err
		r := httptest.NewRequest(c.method, "/api/v2/spans", bytes.NewReader(c.body))
		if c.ct != "" {
			r.Header.Set("Content-Type", c.ct)
		}
		if c.enc != "" {
			r.Header.Set("Content-Encoding", c.enc)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != c.status {
			t.Errorf("%s: status %d, want %d (%s)", c.name, w.Code, c.status, w.Body)
		}
		if (len(got) == 1) != c.consumed {
			t.Errorf("%s: consumed %d requests", c.name, len(got))
		}
		if c.status == http.StatusAccepted {
			want, _ := ToOTLP([]byte(valid))
			if !bytes.Equal(got[0], want) || w.Header().Get("X-Rejected-Spans") != "1" {
				t.Errorf("%s: consumed a different request or lost the rejected count", c.name)
			}
		}
		if c.status == 503 || c.status == 429 {
			if ra := w.Header().Get("Retry-After"); ra != "2" {
				t.Errorf("%s: Retry-After %q", c.name, ra)
			}
		}
	}
}

// TestServiceGraphFromZipkin checks that translated spans pair up in the service graph like OTLP
// ones: the frontend's client span and the backend's child server span make one failed edge.
func TestServiceGraphFromZipkin(t *testing.T) {
	g, err := servicegraph.New(nil, servicegraph.Config{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := ToOTLP([]byte(request))
	if err != nil {
		t.Fatal(err)
	}
	g.ObserveTraces(out)
	g.Expire(time.Now().Add(time.Hour))
	var found bool
	for _, e := range g.Edges() {
		if e.Client == "frontend" && e.Server == "backend" && e.ConnectionType == "" {
			found = e.Requests == 1 && e.Failed == 1
		}
	}
	if !found {
		t.Errorf("edges = %+v", g.Edges())
	}
}
