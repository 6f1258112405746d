package otlpwire

import (
	"bytes"
	"math"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// AppendSpan writes exactly proto's deterministic bytes, and SpanSize their length, on values a
// block reader never builds today (zero oneofs, nested arrays and lists, string indexes, empty
// messages); the block package checks every span a block reads back as.
func TestAppendSpanIsProtos(t *testing.T) {
	same := func(what string, s *tracepb.Span) {
		t.Helper()
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		n, err := SpanSize(s)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		got := AppendSpan([]byte("prefix"), s)
		if n != len(want) || !bytes.Equal(got[len("prefix"):], want) {
			t.Fatalf("%s: encoded %d bytes (size said %d), proto %d:\n got %x\nwant %x", what, len(got)-len("prefix"), n, len(want), got[len("prefix"):], want)
		}
	}
	av := func(v any) *commonpb.AnyValue {
		switch x := v.(type) {
		case string:
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: x}}
		case bool:
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: x}}
		case int64:
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: x}}
		case float64:
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: x}}
		case []byte:
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: x}}
		case int32:
			return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValueStrindex{StringValueStrindex: x}}
		}
		return &commonpb.AnyValue{}
	}
	long := string(bytes.Repeat([]byte("x"), 300))
	attrs := []*commonpb.KeyValue{
		{Key: "zero-string", Value: av("")}, {Key: "false", Value: av(false)}, {Key: "true", Value: av(true)},
		{Key: "zero-int", Value: av(int64(0))}, {Key: "neg", Value: av(int64(-5))}, {Key: "max", Value: av(int64(math.MaxInt64))},
		{Key: "zero-double", Value: av(0.0)}, {Key: "nan", Value: av(math.NaN())}, {Key: "empty-bytes", Value: av([]byte{})},
		{Key: "strindex", Value: av(int32(-2))}, {Key: "no value"}, {Key: "unset oneof", Value: &commonpb.AnyValue{}},
		{Value: av("no key")}, {Key: "k", KeyStrindex: 7}, {Key: long, Value: av(long)},
		{Key: "nil array", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{}}},
		{Key: "empty array", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{}}}},
		{Key: "array", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{
			Values: []*commonpb.AnyValue{av("a"), av(int64(1)), {}, av(long),
				{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{av(true)}}}}}}}}},
		{Key: "nil kvlist", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{}}},
		{Key: "kvlist", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{
			Values: []*commonpb.KeyValue{{Key: "in", Value: av(2.5)}, {}, {Key: "deeper", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{
				KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{{Key: long, Value: av(long)}}}}}}}}}}},
	}
	same("empty", &tracepb.Span{})
	same("every field", &tracepb.Span{TraceId: make([]byte, 16), SpanId: []byte{1}, TraceState: "t", ParentSpanId: []byte{2},
		Flags: math.MaxUint32, Name: long, Kind: -1, StartTimeUnixNano: 1, EndTimeUnixNano: math.MaxUint64, Attributes: attrs,
		DroppedAttributesCount: math.MaxUint32, Events: []*tracepb.Span_Event{{}, {TimeUnixNano: 3, Name: "e", Attributes: attrs, DroppedAttributesCount: 1}},
		DroppedEventsCount: 300, Links: []*tracepb.Span_Link{{}, {TraceId: []byte{3}, SpanId: []byte{4}, TraceState: "s", Attributes: attrs, DroppedAttributesCount: 2, Flags: 1}},
		DroppedLinksCount: 1, Status: &tracepb.Status{Message: long, Code: 2}})
	same("empty status", &tracepb.Span{Status: &tracepb.Status{}, Flags: 1})
}
