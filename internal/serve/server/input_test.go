package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// handWrittenJSON is an OTLP/JSON request written by hand per the specification: hex IDs, enums
// as integers, 64-bit integers as strings and as numbers, every attribute value type.
const handWrittenJSON = `{
  "resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "task-api"}}], "droppedAttributesCount": 1},
    "schemaUrl": "https://opentelemetry.io/schemas/1.26.0",
    "scopeSpans": [{
      "scope": {"name": "src.application.commands", "version": "1.2.3", "attributes": [{"key": "lib", "value": {"boolValue": true}}]},
      "schemaUrl": "https://opentelemetry.io/schemas/1.25.0",
      "spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "parentSpanId": "eee19b7ec3c1b173",
        "traceState": "ariadne=t1",
        "flags": 257,
        "name": "pymongo.insert_one",
        "kind": 3,
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": 1544712661000000000,
        "attributes": [
          {"key": "db.system", "value": {"stringValue": "mongodb"}},
          {"key": "db.rows", "value": {"intValue": "9007199254740993"}},
          {"key": "db.small", "value": {"intValue": 42}},
          {"key": "ratio", "value": {"doubleValue": 0.25}},
          {"key": "ok", "value": {"boolValue": false}},
          {"key": "blob", "value": {"bytesValue": "AAEC/w=="}},
          {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "2"}]}}},
          {"key": "nested", "value": {"kvlistValue": {"values": [{"key": "inner", "value": {"doubleValue": 1.5}}]}}}
        ],
        "droppedAttributesCount": 2,
        "events": [{"timeUnixNano": "1544712660300000000", "name": "exception",
          "attributes": [{"key": "exception.type", "value": {"stringValue": "PermissionError"}}], "droppedAttributesCount": 3}],
        "droppedEventsCount": 4,
        "links": [{"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "7d2ea792e2df6a01", "traceState": "x=y",
          "attributes": [{"key": "link.kind", "value": {"stringValue": "follows"}}], "droppedAttributesCount": 5, "flags": 1}],
        "droppedLinksCount": 6,
        "status": {"code": 2, "message": "Permission denied"},
        "unknownFieldFromTheFuture": {"ignored": true}
      }]
    }]
  }]
}`

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func sv(s string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
}

func TestHandWrittenJSONRoundTrip(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	resp, err := http.Post("http://"+s.OTLPHTTPAddr+"/v1/traces", "application/json", strings.NewReader(handWrittenJSON))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	want := &tracepb.ResourceSpans{
		Resource:  &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: sv("task-api")}}, DroppedAttributesCount: 1},
		SchemaUrl: "https://opentelemetry.io/schemas/1.26.0",
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: "src.application.commands", Version: "1.2.3",
				Attributes: []*commonpb.KeyValue{{Key: "lib", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}}}},
			SchemaUrl: "https://opentelemetry.io/schemas/1.25.0",
			Spans: []*tracepb.Span{{
				TraceId: mustHex("5b8efff798038103d269b633813fc60c"), SpanId: mustHex("eee19b7ec3c1b174"),
				ParentSpanId: mustHex("eee19b7ec3c1b173"), TraceState: "ariadne=t1", Flags: 257,
				Name: "pymongo.insert_one", Kind: tracepb.Span_SPAN_KIND_CLIENT,
				StartTimeUnixNano: 1544712660000000000, EndTimeUnixNano: 1544712661000000000,
				Attributes: []*commonpb.KeyValue{
					{Key: "db.system", Value: sv("mongodb")},
					{Key: "db.rows", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 9007199254740993}}},
					{Key: "db.small", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 42}}},
					{Key: "ratio", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 0.25}}},
					{Key: "ok", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: false}}},
					{Key: "blob", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{0, 1, 2, 255}}}},
					{Key: "tags", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{
						sv("a"), {Value: &commonpb.AnyValue_IntValue{IntValue: 2}}}}}}},
					{Key: "nested", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{
						{Key: "inner", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 1.5}}}}}}}},
				},
				DroppedAttributesCount: 2,
				Events: []*tracepb.Span_Event{{TimeUnixNano: 1544712660300000000, Name: "exception",
					Attributes: []*commonpb.KeyValue{{Key: "exception.type", Value: sv("PermissionError")}}, DroppedAttributesCount: 3}},
				DroppedEventsCount: 4,
				Links: []*tracepb.Span_Link{{TraceId: mustHex("4bf92f3577b34da6a3ce929d0e0e4736"), SpanId: mustHex("7d2ea792e2df6a01"),
					TraceState: "x=y", Attributes: []*commonpb.KeyValue{{Key: "link.kind", Value: sv("follows")}}, DroppedAttributesCount: 5, Flags: 1}},
				DroppedLinksCount: 6,
				Status:            &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "Permission denied"},
			}},
		}},
	}
	wantFlat := flatten([]*tracepb.ResourceSpans{want})
	assertSameSpans(t, "head", fetchTrace(t, s, mustHex("5b8efff798038103d269b633813fc60c")), wantFlat)
	if err := s.Store.Flush(); err != nil {
		t.Fatal(err)
	}
	assertSameSpans(t, "block", fetchTrace(t, s, mustHex("5b8efff798038103d269b633813fc60c")), wantFlat)
}

func validSpan(trace, id byte) *tracepb.Span {
	return &tracepb.Span{TraceId: bytes.Repeat([]byte{trace}, 16), SpanId: bytes.Repeat([]byte{id}, 8), Name: fmt.Sprintf("s%d", id),
		StartTimeUnixNano: 1_000_000_000, EndTimeUnixNano: 2_000_000_000}
}

func request(spans ...*tracepb.Span) *coltracepb.ExportTraceServiceRequest {
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: sv("svc")}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}},
	}}}
}

func post(t *testing.T, url, contentType string, body []byte, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

func TestBadInput(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	url := "http://" + s.OTLPHTTPAddr + "/v1/traces"

	// Something stored before the bad input, which must stay intact.
	before, _ := proto.Marshal(request(validSpan(1, 1)))
	if resp, b := post(t, url, "application/x-protobuf", before); resp.StatusCode != 200 {
		t.Fatalf("valid request: %d %s", resp.StatusCode, b)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte{0}, 2<<20)) // 2 MiB of zeros: small compressed, over the 1 MiB limit once inflated
	zw.Close()
	garbage := []byte{0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01}

	for _, c := range []struct {
		name        string
		contentType string
		body        []byte
		hdr         []string
		code        int
		msg         string
	}{
		{"garbage protobuf", "application/x-protobuf", garbage, nil, 400, ""},
		{"broken JSON", "application/json", []byte(`{"resourceSpans": [`), nil, 400, ""},
		{"wrong content type", "text/plain", []byte("hello"), nil, 415, ""},
		{"oversized body", "application/x-protobuf", bytes.Repeat([]byte{0}, 2<<20), nil, 413, ""},
		{"oversized after gunzip", "application/x-protobuf", gz.Bytes(), []string{"Content-Encoding", "gzip"}, 413, ""},
		{"empty protobuf request", "application/x-protobuf", nil, nil, 200, ""},
		{"empty JSON request", "application/json", []byte(`{}`), nil, 200, ""},
	} {
		resp, b := post(t, url, c.contentType, c.body, c.hdr...)
		if resp.StatusCode != c.code {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, b, c.code)
		}
		if c.code >= 400 && len(b) == 0 {
			t.Errorf("%s: no error message in the body", c.name)
		}
	}

	// Wrong-length IDs: partial success over HTTP, valid spans of the same request stored.
	bad := validSpan(3, 3)
	bad.TraceId = bad.TraceId[:8]
	badSpanID := validSpan(4, 4)
	badSpanID.SpanId = []byte{1, 2, 3}
	mixed, _ := proto.Marshal(request(validSpan(2, 2), bad, badSpanID))
	resp, b := post(t, url, "application/x-protobuf", mixed)
	if resp.StatusCode != 200 {
		t.Fatalf("partial: %d %s", resp.StatusCode, b)
	}
	var pr coltracepb.ExportTraceServiceResponse
	if err := proto.Unmarshal(b, &pr); err != nil {
		t.Fatal(err)
	}
	if pr.PartialSuccess.GetRejectedSpans() != 2 || !strings.Contains(pr.PartialSuccess.GetErrorMessage(), "trace ID must be 16 bytes") {
		t.Fatalf("partial success = %v", pr.PartialSuccess)
	}
	// The same over JSON, where IDs are hex.
	jsonBody := `{"resourceSpans":[{"scopeSpans":[{"spans":[
	  {"traceId":"0505050505050505","spanId":"0505050505050505","name":"short trace id"},
	  {"traceId":"06060606060606060606060606060606","spanId":"0606060606060606","name":"ok"}]}]}]}`
	resp, b = post(t, url, "application/json", []byte(jsonBody))
	var jr map[string]map[string]any
	json.Unmarshal(b, &jr)
	if resp.StatusCode != 200 || fmt.Sprint(jr["partialSuccess"]["rejectedSpans"]) != "1" {
		t.Fatalf("JSON partial success: %d %s", resp.StatusCode, b)
	}

	// Over gRPC: partial success in the response, InvalidArgument for an undecodable request.
	conn, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := coltracepb.NewTraceServiceClient(conn)
	gbad := validSpan(7, 7)
	gbad.SpanId = gbad.SpanId[:4]
	gr, err := client.Export(context.Background(), request(validSpan(8, 8), gbad))
	if err != nil || gr.PartialSuccess.GetRejectedSpans() != 1 {
		t.Fatalf("gRPC partial: %v %v", gr, err)
	}
	err = conn.Invoke(context.Background(), "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
		garbage, &coltracepb.ExportTraceServiceResponse{}, grpc.ForceCodec(rawCodec{}))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("gRPC garbage: %v, want InvalidArgument", err)
	}

	// What was valid is stored; what was invalid is not; the server still serves.
	for _, id := range []byte{1, 2, 6, 8} {
		if code, b := httpGet(t, fmt.Sprintf("http://%s/api/v2/traces/%x", s.HTTPAddr, bytes.Repeat([]byte{id}, 16)), ""); code != 200 {
			t.Errorf("trace %d: %d %s", id, code, b)
		}
	}
	for _, id := range []byte{4, 7} {
		if code, _ := httpGet(t, fmt.Sprintf("http://%s/api/v2/traces/%x", s.HTTPAddr, bytes.Repeat([]byte{id}, 16)), ""); code != 404 {
			t.Errorf("invalid span of trace %d was stored: %d", id, code)
		}
	}
	if code, _ := httpGet(t, "http://"+s.HTTPAddr+"/ready", ""); code != 200 {
		t.Fatal("not ready after bad input")
	}
}

// rawCodec sends pre-encoded bytes as a request, to put invalid protobuf on the wire.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		return b, nil
	}
	return proto.Marshal(v.(proto.Message))
}
func (rawCodec) Unmarshal(data []byte, v any) error { return proto.Unmarshal(data, v.(proto.Message)) }
