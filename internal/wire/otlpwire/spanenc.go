package otlpwire

import (
	"errors"
	"math"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
)

// The span encoder below writes the bytes proto.MarshalOptions{Deterministic: true} writes for
// a span built from decoded OTLP (the block reader's) (fields in number order, proto3 zero values left out, a set
// oneof written even when zero), without reflection: rewriting a block (compaction, ReadAll)
// re-encodes every span, and proto's generic marshaller, Size and MarshalAppend, was a third of
// reading a block back. TestSpanEncodingIsProtos holds it to proto's bytes. A value it does not
// know (a oneof case added to OTLP later) makes SpanSize answer ErrUnknownValue, and the caller falls
// back to proto.

// ErrUnknownValue is SpanSize's answer for a span holding a value of a type it does not know.
var ErrUnknownValue = errors.New("span encoding: value of an unknown type")

func sizeBytesField(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendStringField(b []byte, num protowire.Number, v string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendLen(b []byte, num protowire.Number, n int) []byte {
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.BytesType), uint64(n))
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
}

func appendFixed64Field(b []byte, num protowire.Number, v uint64) []byte {
	return protowire.AppendFixed64(protowire.AppendTag(b, num, protowire.Fixed64Type), v)
}

func appendFixed32Field(b []byte, num protowire.Number, v uint32) []byte {
	return protowire.AppendFixed32(protowire.AppendTag(b, num, protowire.Fixed32Type), v)
}

// All field numbers below are under 16, so every tag is one byte, except Span.flags (16).

func sizeAnyValue(v *commonpb.AnyValue) (int, error) {
	switch x := v.Value.(type) {
	case nil:
		return 0, nil
	case *commonpb.AnyValue_StringValue:
		return sizeBytesField(len(x.StringValue)), nil
	case *commonpb.AnyValue_BoolValue:
		return 2, nil
	case *commonpb.AnyValue_IntValue:
		return 1 + protowire.SizeVarint(uint64(x.IntValue)), nil
	case *commonpb.AnyValue_DoubleValue:
		return 9, nil
	case *commonpb.AnyValue_BytesValue:
		return sizeBytesField(len(x.BytesValue)), nil
	case *commonpb.AnyValue_StringValueStrindex:
		return 1 + protowire.SizeVarint(uint64(x.StringValueStrindex)), nil
	case *commonpb.AnyValue_ArrayValue:
		n := 0
		if x.ArrayValue != nil {
			for _, e := range x.ArrayValue.Values {
				s, err := sizeAnyValue(e)
				if err != nil {
					return 0, err
				}
				n += sizeBytesField(s)
			}
		}
		return sizeBytesField(n), nil
	case *commonpb.AnyValue_KvlistValue:
		n := 0
		if x.KvlistValue != nil {
			s, err := sizeKeyValues(x.KvlistValue.Values)
			if err != nil {
				return 0, err
			}
			n = s
		}
		return sizeBytesField(n), nil
	default:
		return 0, ErrUnknownValue
	}
}

func appendAnyValue(b []byte, v *commonpb.AnyValue) []byte {
	switch x := v.Value.(type) {
	case *commonpb.AnyValue_StringValue:
		b = appendStringField(b, 1, x.StringValue)
	case *commonpb.AnyValue_BoolValue:
		w := uint64(0)
		if x.BoolValue {
			w = 1
		}
		b = appendVarintField(b, 2, w)
	case *commonpb.AnyValue_IntValue:
		b = appendVarintField(b, 3, uint64(x.IntValue))
	case *commonpb.AnyValue_DoubleValue:
		b = appendFixed64Field(b, 4, math.Float64bits(x.DoubleValue))
	case *commonpb.AnyValue_ArrayValue:
		n := 0
		if x.ArrayValue != nil {
			for _, e := range x.ArrayValue.Values {
				s, _ := sizeAnyValue(e)
				n += sizeBytesField(s)
			}
		}
		b = appendLen(b, 5, n)
		if x.ArrayValue != nil {
			for _, e := range x.ArrayValue.Values {
				s, _ := sizeAnyValue(e)
				b = appendAnyValue(appendLen(b, 1, s), e)
			}
		}
	case *commonpb.AnyValue_KvlistValue:
		n := 0
		var kvs []*commonpb.KeyValue
		if x.KvlistValue != nil {
			kvs = x.KvlistValue.Values
			n, _ = sizeKeyValues(kvs)
		}
		b = appendKeyValues(appendLen(b, 6, n), 1, kvs)
	case *commonpb.AnyValue_BytesValue:
		b = appendBytesField(b, 7, x.BytesValue)
	case *commonpb.AnyValue_StringValueStrindex:
		b = appendVarintField(b, 8, uint64(x.StringValueStrindex))
	}
	return b
}

func sizeKeyValue(kv *commonpb.KeyValue) (int, error) {
	n := 0
	if kv.Key != "" {
		n += sizeBytesField(len(kv.Key))
	}
	if kv.Value != nil {
		s, err := sizeAnyValue(kv.Value)
		if err != nil {
			return 0, err
		}
		n += sizeBytesField(s)
	}
	if kv.KeyStrindex != 0 {
		n += 1 + protowire.SizeVarint(uint64(kv.KeyStrindex))
	}
	return n, nil
}

// sizeKeyValues is the size of kvs as a repeated field (each element with its tag and length).
func sizeKeyValues(kvs []*commonpb.KeyValue) (int, error) {
	n := 0
	for _, kv := range kvs {
		s, err := sizeKeyValue(kv)
		if err != nil {
			return 0, err
		}
		n += sizeBytesField(s)
	}
	return n, nil
}

func appendKeyValues(b []byte, num protowire.Number, kvs []*commonpb.KeyValue) []byte {
	for _, kv := range kvs {
		s, _ := sizeKeyValue(kv)
		b = appendLen(b, num, s)
		if kv.Key != "" {
			b = appendStringField(b, 1, kv.Key)
		}
		if kv.Value != nil {
			vs, _ := sizeAnyValue(kv.Value)
			b = appendAnyValue(appendLen(b, 2, vs), kv.Value)
		}
		if kv.KeyStrindex != 0 {
			b = appendVarintField(b, 3, uint64(kv.KeyStrindex))
		}
	}
	return b
}

func sizeEvent(e *tracepb.Span_Event) (int, error) {
	n := 0
	if e.TimeUnixNano != 0 {
		n += 9
	}
	if e.Name != "" {
		n += sizeBytesField(len(e.Name))
	}
	s, err := sizeKeyValues(e.Attributes)
	if err != nil {
		return 0, err
	}
	n += s
	if e.DroppedAttributesCount != 0 {
		n += 1 + protowire.SizeVarint(uint64(e.DroppedAttributesCount))
	}
	return n, nil
}

func sizeLink(l *tracepb.Span_Link) (int, error) {
	n := 0
	if len(l.TraceId) > 0 {
		n += sizeBytesField(len(l.TraceId))
	}
	if len(l.SpanId) > 0 {
		n += sizeBytesField(len(l.SpanId))
	}
	if l.TraceState != "" {
		n += sizeBytesField(len(l.TraceState))
	}
	s, err := sizeKeyValues(l.Attributes)
	if err != nil {
		return 0, err
	}
	n += s
	if l.DroppedAttributesCount != 0 {
		n += 1 + protowire.SizeVarint(uint64(l.DroppedAttributesCount))
	}
	if l.Flags != 0 {
		n += 5
	}
	return n, nil
}

func sizeStatus(st *tracepb.Status) int {
	n := 0
	if st.Message != "" {
		n += sizeBytesField(len(st.Message))
	}
	if st.Code != 0 {
		n += 1 + protowire.SizeVarint(uint64(st.Code))
	}
	return n
}

// SpanSize is the encoded size of s, or ErrUnknownValue.
func SpanSize(s *tracepb.Span) (int, error) {
	n := 0
	if len(s.TraceId) > 0 {
		n += sizeBytesField(len(s.TraceId))
	}
	if len(s.SpanId) > 0 {
		n += sizeBytesField(len(s.SpanId))
	}
	if s.TraceState != "" {
		n += sizeBytesField(len(s.TraceState))
	}
	if len(s.ParentSpanId) > 0 {
		n += sizeBytesField(len(s.ParentSpanId))
	}
	if s.Name != "" {
		n += sizeBytesField(len(s.Name))
	}
	if s.Kind != 0 {
		n += 1 + protowire.SizeVarint(uint64(s.Kind))
	}
	if s.StartTimeUnixNano != 0 {
		n += 9
	}
	if s.EndTimeUnixNano != 0 {
		n += 9
	}
	a, err := sizeKeyValues(s.Attributes)
	if err != nil {
		return 0, err
	}
	n += a
	if s.DroppedAttributesCount != 0 {
		n += 1 + protowire.SizeVarint(uint64(s.DroppedAttributesCount))
	}
	for _, e := range s.Events {
		es, err := sizeEvent(e)
		if err != nil {
			return 0, err
		}
		n += sizeBytesField(es)
	}
	if s.DroppedEventsCount != 0 {
		n += 1 + protowire.SizeVarint(uint64(s.DroppedEventsCount))
	}
	for _, l := range s.Links {
		ls, err := sizeLink(l)
		if err != nil {
			return 0, err
		}
		n += sizeBytesField(ls)
	}
	if s.DroppedLinksCount != 0 {
		n += 1 + protowire.SizeVarint(uint64(s.DroppedLinksCount))
	}
	if s.Status != nil {
		n += sizeBytesField(sizeStatus(s.Status))
	}
	if s.Flags != 0 {
		n += 2 + 4 // field 16: a two-byte tag
	}
	return n, nil
}

// AppendSpan appends s's encoding; SpanSize(s) must have succeeded.
func AppendSpan(b []byte, s *tracepb.Span) []byte {
	if len(s.TraceId) > 0 {
		b = appendBytesField(b, 1, s.TraceId)
	}
	if len(s.SpanId) > 0 {
		b = appendBytesField(b, 2, s.SpanId)
	}
	if s.TraceState != "" {
		b = appendStringField(b, 3, s.TraceState)
	}
	if len(s.ParentSpanId) > 0 {
		b = appendBytesField(b, 4, s.ParentSpanId)
	}
	if s.Name != "" {
		b = appendStringField(b, 5, s.Name)
	}
	if s.Kind != 0 {
		b = appendVarintField(b, 6, uint64(s.Kind))
	}
	if s.StartTimeUnixNano != 0 {
		b = appendFixed64Field(b, 7, s.StartTimeUnixNano)
	}
	if s.EndTimeUnixNano != 0 {
		b = appendFixed64Field(b, 8, s.EndTimeUnixNano)
	}
	b = appendKeyValues(b, 9, s.Attributes)
	if s.DroppedAttributesCount != 0 {
		b = appendVarintField(b, 10, uint64(s.DroppedAttributesCount))
	}
	for _, e := range s.Events {
		es, _ := sizeEvent(e)
		b = appendLen(b, 11, es)
		if e.TimeUnixNano != 0 {
			b = appendFixed64Field(b, 1, e.TimeUnixNano)
		}
		if e.Name != "" {
			b = appendStringField(b, 2, e.Name)
		}
		b = appendKeyValues(b, 3, e.Attributes)
		if e.DroppedAttributesCount != 0 {
			b = appendVarintField(b, 4, uint64(e.DroppedAttributesCount))
		}
	}
	if s.DroppedEventsCount != 0 {
		b = appendVarintField(b, 12, uint64(s.DroppedEventsCount))
	}
	for _, l := range s.Links {
		ls, _ := sizeLink(l)
		b = appendLen(b, 13, ls)
		if len(l.TraceId) > 0 {
			b = appendBytesField(b, 1, l.TraceId)
		}
		if len(l.SpanId) > 0 {
			b = appendBytesField(b, 2, l.SpanId)
		}
		if l.TraceState != "" {
			b = appendStringField(b, 3, l.TraceState)
		}
		b = appendKeyValues(b, 4, l.Attributes)
		if l.DroppedAttributesCount != 0 {
			b = appendVarintField(b, 5, uint64(l.DroppedAttributesCount))
		}
		if l.Flags != 0 {
			b = appendFixed32Field(b, 6, l.Flags)
		}
	}
	if s.DroppedLinksCount != 0 {
		b = appendVarintField(b, 14, uint64(s.DroppedLinksCount))
	}
	if st := s.Status; st != nil {
		b = appendLen(b, 15, sizeStatus(st))
		if st.Message != "" {
			b = appendStringField(b, 2, st.Message)
		}
		if st.Code != 0 {
			b = appendVarintField(b, 3, uint64(st.Code))
		}
	}
	if s.Flags != 0 {
		b = appendFixed32Field(b, 16, s.Flags)
	}
	return b
}
