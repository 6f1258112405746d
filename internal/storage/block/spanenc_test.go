package block

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// The hand-written span encoder writes exactly proto's deterministic bytes: compaction drops a
// span stored twice by comparing bytes, and readers decode them with proto. Checked on every
// span a block of rich traces reads back as, and on values the reader never builds today
// (zero oneofs, nested arrays and lists, string indexes, empty messages).
func TestSpanEncodingIsProtos(t *testing.T) {
	same := func(what string, s *tracepb.Span) {
		t.Helper()
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		n, err := sizeSpan(s)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		got := appendSpan([]byte("prefix"), s)
		if n != len(want) || !bytes.Equal(got[len("prefix"):], want) {
			t.Fatalf("%s: encoded %d bytes (size said %d), proto %d:\n got %x\nwant %x", what, len(got)-len("prefix"), n, len(want), got[len("prefix"):], want)
		}
		var arena []byte
		raw, err := encodeSpan(&arena, s)
		if err != nil || !bytes.Equal(raw, want) {
			t.Fatalf("%s: encodeSpan: %v", what, err)
		}
	}
	ctx := context.Background()
	store := newStore(t)
	r := rand.New(rand.NewPCG(9, 10))
	var rss []*tracepb.ResourceSpans
	for range 40 {
		rss = append(rss, richTrace(r, traceID(r), 12)...)
	}
	meta, err := Write(ctx, store, toTraces(t, rss), WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	br, err := Open(ctx, store, meta.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	spans := 0
	if err := br.ReadAll(ctx, func(tr Trace) error {
		for _, sp := range tr.Spans {
			var s tracepb.Span
			if err := proto.Unmarshal(sp.Raw, &s); err != nil {
				return err
			}
			same("read back", &s)
			spans++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if spans != int(meta.Spans) {
		t.Fatalf("read %d spans of %d", spans, meta.Spans)
	}
	for _, rs := range rss {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				same("as written", s)
			}
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
