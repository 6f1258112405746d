package otlpjson

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

func decodeRequest(t *testing.T, body string) *coltracepb.ExportTraceServiceRequest {
	t.Helper()
	wire, err := RequestToProto([]byte(body))
	if err != nil {
		t.Fatalf("RequestToProto: %v", err)
	}
	req := &coltracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(wire, req); err != nil {
		t.Fatalf("output is not a valid ExportTraceServiceRequest: %v", err)
	}
	return req
}

func onlySpan(t *testing.T, req *coltracepb.ExportTraceServiceRequest) *tracepb.Span {
	t.Helper()
	if len(req.ResourceSpans) != 1 || len(req.ResourceSpans[0].ScopeSpans) != 1 || len(req.ResourceSpans[0].ScopeSpans[0].Spans) != 1 {
		t.Fatalf("want exactly one span, got %v", req)
	}
	return req.ResourceSpans[0].ScopeSpans[0].Spans[0]
}

func mustHex(s string) []byte {
	b := make([]byte, len(s)/2)
	for i := range b {
		b[i] = fromHex(s[2*i])<<4 | fromHex(s[2*i+1])
	}
	return b
}

func fromHex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	panic("bad hex in test")
}

// specExample has the shape of the example trace in the OTLP repository.
const specExample = `{
  "resourceSpans": [
    {
      "resource": {
        "attributes": [
          {"key": "service.name", "value": {"stringValue": "my.service"}}
        ]
      },
      "scopeSpans": [
        {
          "scope": {
            "name": "my.library",
            "version": "1.0.0",
            "attributes": [
              {"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}
            ]
          },
          "spans": [
            {
              "traceId": "5B8EFFF798038103D269B633813FC60C",
              "spanId": "EEE19B7EC3C1B174",
              "parentSpanId": "EEE19B7EC3C1B173",
              "name": "I'm a server span",
              "startTimeUnixNano": "1544712660000000000",
              "endTimeUnixNano": "1544712661000000000",
              "kind": 2,
              "attributes": [
                {"key": "my.span.attr", "value": {"stringValue": "some value"}},
                {"key": "as.string", "value": {"intValue": "42"}},
                {"key": "as.number", "value": {"intValue": 43}}
              ]
            }
          ]
        }
      ]
    }
  ]
}`

func TestSpecExample(t *testing.T) {
	req := decodeRequest(t, specExample)
	want := &coltracepb.ExportTraceServiceRequest{
		ResourceSpans: []*tracepb.ResourceSpans{{
			Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{strAttr("service.name", "my.service")}},
			ScopeSpans: []*tracepb.ScopeSpans{{
				Scope: &commonpb.InstrumentationScope{
					Name:       "my.library",
					Version:    "1.0.0",
					Attributes: []*commonpb.KeyValue{strAttr("my.scope.attribute", "some scope attribute")},
				},
				Spans: []*tracepb.Span{{
					TraceId:           mustHex("5b8efff798038103d269b633813fc60c"),
					SpanId:            mustHex("eee19b7ec3c1b174"),
					ParentSpanId:      mustHex("eee19b7ec3c1b173"),
					Name:              "I'm a server span",
					StartTimeUnixNano: 1544712660000000000,
					EndTimeUnixNano:   1544712661000000000,
					Kind:              tracepb.Span_SPAN_KIND_SERVER,
					Attributes: []*commonpb.KeyValue{
						strAttr("my.span.attr", "some value"),
						intAttr("as.string", 42),
						intAttr("as.number", 43),
					},
				}},
			}},
		}},
	}
	if diff := cmpDiff(want, req); diff != "" {
		t.Fatalf("decoded request differs (-want +got):\n%s", diff)
	}
}

func TestSnakeCaseAndEnumNames(t *testing.T) {
	req := decodeRequest(t, `{"resource_spans":[{"schema_url":"https://s/1","scope_spans":[{"spans":[{
		"trace_id":"0102030405060708090a0b0c0d0e0f10","span_id":"0102030405060708","parent_span_id":"",
		"start_time_unix_nano":1544712660000000000,"end_time_unix_nano":"1544712661000000000",
		"kind":"SPAN_KIND_CLIENT","dropped_attributes_count":3,
		"status":{"code":"STATUS_CODE_ERROR","message":"boom"},
		"links":[{"trace_id":"1102030405060708090a0b0c0d0e0f10","span_id":"1102030405060708","trace_state":"a=b"}]
	}]}]}]}`)
	if got := req.ResourceSpans[0].SchemaUrl; got != "https://s/1" {
		t.Errorf("schema_url = %q", got)
	}
	sp := onlySpan(t, req)
	if !bytes.Equal(sp.TraceId, mustHex("0102030405060708090a0b0c0d0e0f10")) || !bytes.Equal(sp.SpanId, mustHex("0102030405060708")) {
		t.Errorf("ids = %x %x", sp.TraceId, sp.SpanId)
	}
	if len(sp.ParentSpanId) != 0 {
		t.Errorf("empty parent id decoded to %x", sp.ParentSpanId)
	}
	if sp.Kind != tracepb.Span_SPAN_KIND_CLIENT || sp.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("enums: kind %v status %v", sp.Kind, sp.Status.GetCode())
	}
	if sp.StartTimeUnixNano != 1544712660000000000 || sp.EndTimeUnixNano != 1544712661000000000 {
		t.Errorf("times: %d %d", sp.StartTimeUnixNano, sp.EndTimeUnixNano)
	}
	if sp.DroppedAttributesCount != 3 {
		t.Errorf("dropped attributes = %d", sp.DroppedAttributesCount)
	}
	if len(sp.Links) != 1 || !bytes.Equal(sp.Links[0].TraceId, mustHex("1102030405060708090a0b0c0d0e0f10")) ||
		!bytes.Equal(sp.Links[0].SpanId, mustHex("1102030405060708")) || sp.Links[0].TraceState != "a=b" {
		t.Errorf("link = %v", sp.Links)
	}
}

func TestUnknownFieldsIgnored(t *testing.T) {
	req := decodeRequest(t, `{"futureTopLevel":{"x":[1,2,{"traceId":5}]},"resourceSpans":[{
		"resource":{"attributes":[],"newThing":true},
		"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708",
			"name":"s","kind":2,"someNewField":{"nested":["a"]},"anotherOne":null,
			"status":{"code":99,"newStatusField":1}}],"extra":1}]}]}`)
	sp := onlySpan(t, req)
	if sp.Name != "s" || sp.Kind != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("span = %v", sp)
	}
	// Unknown enum numbers are kept as numbers, as proto3 requires.
	if sp.Status.GetCode() != 99 {
		t.Errorf("status code = %v", sp.Status.GetCode())
	}
}

func TestUnknownEnumNameIgnored(t *testing.T) {
	sp := onlySpan(t, decodeRequest(t, `{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"s","kind":"SPAN_KIND_FROM_THE_FUTURE"}]}]}]}`))
	if sp.Name != "s" || sp.Kind != tracepb.Span_SPAN_KIND_UNSPECIFIED {
		t.Errorf("span = %v", sp)
	}
}

func TestInvalidIDsPassThrough(t *testing.T) {
	req := decodeRequest(t, `{"resourceSpans":[{"scopeSpans":[{"spans":[
		{"name":"short","traceId":"0102","spanId":"0102030405060708"},
		{"name":"long","traceId":"0102030405060708090a0b0c0d0e0f1011","spanId":"010203040506070809"},
		{"name":"nothex","traceId":"zz02030405060708090a0b0c0d0e0f10","spanId":"AQIDBAUGBwg=","parentSpanId":"xyz"},
		{"name":"odd","traceId":"0102030405060708090a0b0c0d0e0f1","spanId":7},
		{"name":"upper","traceId":"0102030405060708090A0B0C0D0E0F10","spanId":"ABCDEF0102030405",
		 "links":[{"traceId":"nothex","spanId":"01"}]},
		{"name":"empty","traceId":"","spanId":""}
	]}]}]}`)
	spans := req.ResourceSpans[0].ScopeSpans[0].Spans
	if len(spans) != 6 {
		t.Fatalf("got %d spans, want all 6 kept for per-span validation", len(spans))
	}
	check := func(name string, got, want []byte) {
		t.Helper()
		if !bytes.Equal(got, want) {
			t.Errorf("%s: got %x, want %x", name, got, want)
		}
	}
	check("short trace", spans[0].TraceId, []byte{1, 2})
	check("long trace", spans[1].TraceId, mustHex("0102030405060708090a0b0c0d0e0f1011"))
	check("long span", spans[1].SpanId, mustHex("010203040506070809"))
	check("non-hex trace", spans[2].TraceId, invalidID)
	check("base64 span", spans[2].SpanId, invalidID)
	check("non-hex parent", spans[2].ParentSpanId, invalidID)
	check("odd-length trace", spans[3].TraceId, invalidID)
	check("numeric span", spans[3].SpanId, invalidID)
	check("upper-case trace", spans[4].TraceId, mustHex("0102030405060708090a0b0c0d0e0f10"))
	check("upper-case span", spans[4].SpanId, mustHex("abcdef0102030405"))
	check("non-hex link trace", spans[4].Links[0].TraceId, invalidID)
	check("short link span", spans[4].Links[0].SpanId, []byte{1})
	check("empty trace", spans[5].TraceId, nil)
	check("empty span", spans[5].SpanId, nil)
}

func TestBrokenJSON(t *testing.T) {
	for name, body := range map[string]string{
		"empty":         ``,
		"truncated":     `{"resourceSpans":[{"scopeSpans":[`,
		"trailing":      `{} {}`,
		"garbage":       `{"resourceSpans": nope}`,
		"not an object": `[1,2,3]`,
		"null":          `null`,
		"wrong type":    `{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":5}]}]}]}`,
		"bad int":       `{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"soon"}]}]}]}`,
		"bad base64":    `{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"k","value":{"bytesValue":"!!"}}]}]}]}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			out, err := RequestToProto([]byte(body))
			if err == nil {
				t.Fatalf("want error, got %x", out)
			}
			if !strings.HasPrefix(err.Error(), "otlpjson: ") {
				t.Errorf("error lacks context: %v", err)
			}
		})
	}
}

func TestEmptyRequest(t *testing.T) {
	for _, body := range []string{`{}`, `{"resourceSpans":[]}`, " \n{ }\n"} {
		out, err := RequestToProto([]byte(body))
		if err != nil || len(out) != 0 {
			t.Errorf("%q: got %x, %v; want empty wire bytes", body, out, err)
		}
	}
}

func richRequest() *coltracepb.ExportTraceServiceRequest {
	tid := mustHex("0af7651916cd43dd8448eb211c80319c")
	return &coltracepb.ExportTraceServiceRequest{
		ResourceSpans: []*tracepb.ResourceSpans{{
			Resource: &resourcepb.Resource{
				Attributes:             []*commonpb.KeyValue{strAttr("service.name", "checkout <&> \u2028 ünï")},
				DroppedAttributesCount: 2,
			},
			SchemaUrl: "https://opentelemetry.io/schemas/1.21.0",
			ScopeSpans: []*tracepb.ScopeSpans{{
				Scope: &commonpb.InstrumentationScope{
					Name: "lib", Version: "v1.2.3",
					Attributes:             []*commonpb.KeyValue{intAttr("scope.n", 1)},
					DroppedAttributesCount: 1,
				},
				SchemaUrl: "https://opentelemetry.io/schemas/1.20.0",
				Spans: []*tracepb.Span{
					{
						TraceId:                tid,
						SpanId:                 mustHex("b7ad6b7169203331"),
						ParentSpanId:           mustHex("00f067aa0ba902b7"),
						TraceState:             "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
						Flags:                  0x301,
						Name:                   "GET /cart",
						Kind:                   tracepb.Span_SPAN_KIND_CONSUMER,
						StartTimeUnixNano:      math.MaxUint64,
						EndTimeUnixNano:        1,
						DroppedAttributesCount: 7,
						DroppedEventsCount:     8,
						DroppedLinksCount:      9,
						Attributes: []*commonpb.KeyValue{
							strAttr("s", ""),
							intAttr("max", math.MaxInt64),
							intAttr("min", math.MinInt64),
							{Key: "d", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: -1.5e-300}}},
							{Key: "inf", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: math.Inf(-1)}}},
							{Key: "t", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}},
							{Key: "f", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: false}}},
							{Key: "b", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{0, 1, 0xfe, 0xff}}}},
							{Key: "arr", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{
								{Value: &commonpb.AnyValue_StringValue{StringValue: "x"}},
								{Value: &commonpb.AnyValue_IntValue{IntValue: -3}},
								{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{}}},
								{},
							}}}}},
							{Key: "kv", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{
								strAttr("traceId", "not an id"),
								{Key: "nested", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{
									Values: []*commonpb.KeyValue{intAttr("deep", 0)},
								}}}},
							}}}}},
						},
						Events: []*tracepb.Span_Event{
							{TimeUnixNano: 1544712660500000000, Name: "exception", Attributes: []*commonpb.KeyValue{strAttr("exception.message", "oops")}, DroppedAttributesCount: 4},
							{Name: "bare"},
						},
						Links: []*tracepb.Span_Link{
							{TraceId: mustHex("ffffffffffffffffffffffffffffffff"), SpanId: mustHex("0000000000000001"), TraceState: "k=v",
								Attributes: []*commonpb.KeyValue{strAttr("link", "yes")}, DroppedAttributesCount: 5, Flags: 0x100},
							{TraceId: tid, SpanId: mustHex("1111111111111111")},
						},
						Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "bad \"quote\""},
					},
					{
						TraceId: tid,
						SpanId:  mustHex("2222222222222222"),
						Name:    "root-ish",
						Kind:    tracepb.Span_SPAN_KIND_INTERNAL,
						Status:  &tracepb.Status{Code: tracepb.Status_STATUS_CODE_OK},
					},
				},
			}},
		}, {
			Resource:   &resourcepb.Resource{},
			ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{TraceId: tid, SpanId: mustHex("3333333333333333")}}}},
		}},
	}
}

func TestRoundTrip(t *testing.T) {
	req := richRequest()
	js, err := Marshal(req)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	wire, err := RequestToProto(js)
	if err != nil {
		t.Fatalf("RequestToProto: %v\n%s", err, js)
	}
	got := &coltracepb.ExportTraceServiceRequest{}
	if err := proto.Unmarshal(wire, got); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if !proto.Equal(req, got) {
		t.Fatalf("round trip differs (-want +got):\n%s\njson: %s", cmpDiff(req, got), js)
	}
}

func TestMarshalHexIDs(t *testing.T) {
	js, err := Marshal(richRequest())
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		ResourceSpans []struct {
			ScopeSpans []struct {
				Spans []struct {
					TraceID      string `json:"traceId"`
					SpanID       string `json:"spanId"`
					ParentSpanID string `json:"parentSpanId"`
					Kind         json.RawMessage
					Links        []struct {
						TraceID string `json:"traceId"`
						SpanID  string `json:"spanId"`
					}
				}
			}
		}
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	sp := doc.ResourceSpans[0].ScopeSpans[0].Spans[0]
	if sp.TraceID != "0af7651916cd43dd8448eb211c80319c" || sp.SpanID != "b7ad6b7169203331" || sp.ParentSpanID != "00f067aa0ba902b7" {
		t.Errorf("span ids: %q %q %q", sp.TraceID, sp.SpanID, sp.ParentSpanID)
	}
	if string(sp.Kind) != "5" {
		t.Errorf("kind = %s, want the enum number", sp.Kind)
	}
	if l := sp.Links[0]; l.TraceID != "ffffffffffffffffffffffffffffffff" || l.SpanID != "0000000000000001" {
		t.Errorf("link ids: %q %q", l.TraceID, l.SpanID)
	}
	for _, frag := range []string{`"startTimeUnixNano":"18446744073709551615"`, `"intValue":"-9223372036854775808"`, `"bytesValue":"AAH+/w=="`, `"key":"traceId","value":{"stringValue":"not an id"}`} {
		if !bytes.Contains(js, []byte(frag)) {
			t.Errorf("output lacks %s:\n%s", frag, js)
		}
	}
}

// TestMarshalNestedMessage covers a wrapper message around the trace types,
// which is how the query API uses Marshal.
func TestMarshalNestedMessage(t *testing.T) {
	td := &tracepb.TracesData{ResourceSpans: richRequest().ResourceSpans}
	js, err := Marshal(td)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(js, []byte(`"traceId":"0af7651916cd43dd8448eb211c80319c"`)) {
		t.Errorf("no hex trace id in %s", js)
	}
	// TracesData and ExportTraceServiceRequest share their JSON shape.
	got := decodeRequest(t, string(js))
	if !proto.Equal(got.ResourceSpans[0], td.ResourceSpans[0]) {
		t.Errorf("TracesData round trip differs:\n%s", cmpDiff(td.ResourceSpans[0], got.ResourceSpans[0]))
	}
	// A message with no IDs anywhere is passed through protojson untouched.
	if js, err := Marshal(&commonpb.KeyValue{Key: "spanId", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{1}}}}); err != nil ||
		!bytes.Contains(js, []byte(`"AQ=="`)) {
		t.Errorf("KeyValue: %s, %v", js, err)
	}
}

func strAttr(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func intAttr(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

// cmpDiff shows both messages as text when they differ; go-cmp is not a
// dependency of this module.
func cmpDiff(want, got proto.Message) string {
	if proto.Equal(want, got) {
		return ""
	}
	opts := prototext.MarshalOptions{Multiline: true}
	return "want:\n" + opts.Format(want) + "\ngot:\n" + opts.Format(got)
}
