package ingest

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// TruncatedKey is the span attribute that records attribute values cut by the value-length
// limit: one "key=original_length" string per value cut.
const TruncatedKey = "ariadne.truncated"

// Span field numbers (opentelemetry/proto/trace/v1/trace.proto).
const (
	spanAttrs  = 9
	spanEvents = 11
	spanLinks  = 13
	eventAttrs = 3
	linkAttrs  = 4
)

// needsReshape reports whether a span breaks a limit that ingest enforces by cutting data. The
// scan counted what the limits count, so only a span with a message longer than the value limit
// is walked, to look at its values.
func needsReshape(s *otlpwire.Span, c *Limits) bool {
	if exceeds(int(s.Attrs), c.MaxAttributesPerSpan) || exceeds(int(s.Events), c.MaxEventsPerSpan) || exceeds(int(s.Links), c.MaxLinksPerSpan) {
		return true
	}
	return c.MaxAttributeValueBytes > 0 && int(s.Longest) > c.MaxAttributeValueBytes && valueOverLimit(s.Raw, c.MaxAttributeValueBytes)
}

// valueOverLimit reports whether an attribute value of the span, its events or its links is
// longer than limit.
func valueOverLimit(raw []byte, limit int) bool {
	over := false
	walk(raw, func(num protowire.Number, v []byte) {
		switch num {
		case spanAttrs:
			over = over || valueTooLong(v, limit)
		case spanEvents:
			walk(v, func(num protowire.Number, kv []byte) {
				over = over || (num == eventAttrs && valueTooLong(kv, limit))
			})
		case spanLinks:
			walk(v, func(num protowire.Number, kv []byte) {
				over = over || (num == linkAttrs && valueTooLong(kv, limit))
			})
		}
	})
	return over
}

func exceeds(n, limit int) bool { return limit > 0 && n > limit }

// walk calls fn with every length-delimited field of msg.
func walk(msg []byte, fn func(num protowire.Number, v []byte)) {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return
		}
		msg = msg[n:]
		if typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				return
			}
			fn(num, v)
			msg = msg[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, msg)
		if m < 0 {
			return
		}
		msg = msg[m:]
	}
}

// valueTooLong looks into a KeyValue for a string or bytes value over limit; its length alone
// settles most cases.
func valueTooLong(kv []byte, limit int) bool {
	if limit <= 0 || len(kv) <= limit {
		return false
	}
	long := false
	walk(kv, func(num protowire.Number, av []byte) {
		if num != 2 {
			return
		}
		walk(av, func(num protowire.Number, v []byte) {
			long = long || ((num == 1 || num == 7) && len(v) > limit)
		})
	})
	return long
}

// rewrite re-encodes a request without the spans the scan refused and with the reshaping limits
// applied. It decodes the whole request: this is the rare path, taken only by requests that
// break a rule.
func (in *Ingester) rewrite(dst, body []byte, sc scan) ([]byte, error) {
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("rewrite: %w", err)
	}
	counts := map[[16]byte]int{}
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			kept := ss.Spans[:0]
			for _, sp := range ss.Spans {
				ws := otlpwire.Span{TraceID: sp.TraceId, SpanID: sp.SpanId, ParentID: sp.ParentSpanId}
				if ok, _ := ws.Valid(); !ok {
					continue
				}
				if sc.lim.MaxSpansPerTrace > 0 {
					id := [16]byte(sp.TraceId)
					counts[id]++
					if counts[id] > sc.granted[id] {
						continue
					}
				}
				in.applyLimits(sp, sc.lim)
				kept = append(kept, sp)
			}
			ss.Spans = kept
		}
	}
	out, err := proto.MarshalOptions{}.MarshalAppend(dst, &req)
	if err != nil {
		return nil, fmt.Errorf("rewrite: %w", err)
	}
	return out, nil
}

func (in *Ingester) applyLimits(sp *tracepb.Span, c *Limits) {
	var truncated []string
	cut := func(kvs []*commonpb.KeyValue) {
		if c.MaxAttributeValueBytes <= 0 {
			return
		}
		for _, kv := range kvs {
			switch v := kv.GetValue().GetValue().(type) {
			case *commonpb.AnyValue_StringValue:
				if n := len(v.StringValue); n > c.MaxAttributeValueBytes {
					v.StringValue = truncateUTF8(v.StringValue, c.MaxAttributeValueBytes)
					truncated = append(truncated, fmt.Sprintf("%s=%d", kv.Key, n))
				}
			case *commonpb.AnyValue_BytesValue:
				if n := len(v.BytesValue); n > c.MaxAttributeValueBytes {
					v.BytesValue = v.BytesValue[:c.MaxAttributeValueBytes]
					truncated = append(truncated, fmt.Sprintf("%s=%d", kv.Key, n))
				}
			}
		}
	}
	if exceeds(len(sp.Attributes), c.MaxAttributesPerSpan) {
		sp.DroppedAttributesCount += uint32(len(sp.Attributes) - c.MaxAttributesPerSpan)
		sp.Attributes = sp.Attributes[:c.MaxAttributesPerSpan]
		in.m.limited.WithLabelValues("attributes").Inc()
	}
	if exceeds(len(sp.Events), c.MaxEventsPerSpan) {
		sp.DroppedEventsCount += uint32(len(sp.Events) - c.MaxEventsPerSpan)
		sp.Events = sp.Events[:c.MaxEventsPerSpan]
		in.m.limited.WithLabelValues("events").Inc()
	}
	if exceeds(len(sp.Links), c.MaxLinksPerSpan) {
		sp.DroppedLinksCount += uint32(len(sp.Links) - c.MaxLinksPerSpan)
		sp.Links = sp.Links[:c.MaxLinksPerSpan]
		in.m.limited.WithLabelValues("links").Inc()
	}
	cut(sp.Attributes)
	for _, e := range sp.Events {
		cut(e.Attributes)
	}
	for _, l := range sp.Links {
		cut(l.Attributes)
	}
	if len(truncated) > 0 {
		vals := make([]*commonpb.AnyValue, len(truncated))
		for i, t := range truncated {
			vals[i] = &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: t}}
		}
		sp.Attributes = append(sp.Attributes, &commonpb.KeyValue{Key: TruncatedKey,
			Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: vals}}}})
		in.m.limited.WithLabelValues("attribute_value").Inc()
	}
}

// truncateUTF8 cuts s to at most n bytes without splitting a UTF-8 sequence, since protobuf
// strings must stay valid UTF-8.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
