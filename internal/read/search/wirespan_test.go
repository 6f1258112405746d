package search

import (
	"fmt"
	"math/rand/v2"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// protoSpan is how search decoded head spans before the wire decoder: proto.Unmarshal, then
// the same conversion of values.
func protoSpan(t *testing.T, raw []byte) span {
	var sp tracepb.Span
	if err := proto.Unmarshal(raw, &sp); err != nil {
		t.Fatal(err)
	}
	s := span{id: sp.SpanId, parent: -1, hasParent: len(sp.ParentSpanId) > 0, start: int64(sp.StartTimeUnixNano),
		dur: int64(sp.EndTimeUnixNano - sp.StartTimeUnixNano), name: sp.Name, kind: int32(sp.Kind),
		status: int32(sp.GetStatus().GetCode()), statusMsg: sp.GetStatus().GetMessage(), attrs: keyValues(sp.Attributes)}
	for _, e := range sp.Events {
		s.events = append(s.events, event{name: e.Name, since: int64(e.TimeUnixNano) - s.start, attrs: keyValues(e.Attributes)})
	}
	for _, l := range sp.Links {
		s.links = append(s.links, link{traceID: l.TraceId, spanID: l.SpanId, attrs: keyValues(l.Attributes)})
	}
	return s
}

// TestWireDecodeMatchesProto decodes spans of every shape both ways: every value type, maps,
// bytes, nested arrays, events, links, status, and fields repeated in the message (last wins,
// messages merge), which the proto package defines and the wire decoder must follow.
func TestWireDecodeMatchesProto(t *testing.T) {
	r := rand.New(rand.NewPCG(18, 18))
	sv := func(s string) *commonpb.AnyValue {
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
	}
	values := []*commonpb.AnyValue{
		sv("x"), sv(""), nil, {},
		{Value: &commonpb.AnyValue_IntValue{IntValue: -7}},
		{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 0.5}},
		{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}},
		{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{1, 0xab}}},
		{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{{Key: "a", Value: sv("b")}}}}},
		{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{sv("red"), {Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{sv("in")}}}}}}}},
	}
	kvs := func() []*commonpb.KeyValue {
		var out []*commonpb.KeyValue
		for range r.IntN(5) {
			out = append(out, &commonpb.KeyValue{Key: fmt.Sprint("k", r.IntN(4)), Value: values[r.IntN(len(values))]})
		}
		return out
	}
	for i := range 300 {
		sp := &tracepb.Span{TraceId: make([]byte, 16), SpanId: []byte{byte(i), 1, 2, 3, 4, 5, 6, 7}, Name: fmt.Sprint("n", r.IntN(3)),
			Kind: tracepb.Span_SpanKind(r.IntN(6)), StartTimeUnixNano: r.Uint64N(1e18), Attributes: kvs()}
		sp.EndTimeUnixNano = sp.StartTimeUnixNano + r.Uint64N(1e9)
		if r.IntN(2) == 0 {
			sp.ParentSpanId = []byte{9, 9, 9, 9, 9, 9, 9, byte(i)}
		}
		if r.IntN(2) == 0 {
			sp.Status = &tracepb.Status{Code: tracepb.Status_StatusCode(r.IntN(3)), Message: "m"}
		}
		for range r.IntN(3) {
			sp.Events = append(sp.Events, &tracepb.Span_Event{Name: "e", TimeUnixNano: sp.StartTimeUnixNano + r.Uint64N(100), Attributes: kvs()})
		}
		for range r.IntN(2) {
			sp.Links = append(sp.Links, &tracepb.Span_Link{TraceId: []byte{1}, SpanId: []byte{2}, Attributes: kvs()})
		}
		raw, err := proto.Marshal(sp)
		if err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			// Repeated fields: a second name and status (merged), and a KeyValue whose value
			// message comes twice (merged: the later member of the oneof wins).
			raw = protowire.AppendTag(raw, 5, protowire.BytesType)
			raw = protowire.AppendString(raw, "renamed")
			st, _ := proto.Marshal(&tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR})
			raw = protowire.AppendBytes(protowire.AppendTag(raw, 15, protowire.BytesType), st)
			v1, _ := proto.Marshal(values[r.IntN(len(values))])
			v2, _ := proto.Marshal(values[r.IntN(len(values))])
			kv := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "dup")
			kv = protowire.AppendBytes(protowire.AppendTag(kv, 2, protowire.BytesType), v1)
			kv = protowire.AppendBytes(protowire.AppendTag(kv, 2, protowire.BytesType), v2)
			raw = protowire.AppendBytes(protowire.AppendTag(raw, 9, protowire.BytesType), kv)
		}
		want := protoSpan(t, raw)
		var arena []attr
		got, err := decodeWireSpan(raw, allWire(), &arena)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := fmt.Sprintf("%+v", got.s), fmt.Sprintf("%+v", want); g != w {
			t.Fatalf("span %d:\nwire  %s\nproto %s", i, g, w)
		}
	}
}
