package api

import (
	"bufio"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/read/query"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpjson"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// Trace-by-ID answers are written span by span from the trace's encoded spans, so a large trace
// costs its encoding once rather than a decoded tree plus a marshalled copy of the whole answer.

// Field numbers of the messages written here: OTLP's TracesData/ResourceSpans/ScopeSpans, and
// Tempo's TraceByIDResponse (trace = 1, status = 3 with PARTIAL = 1, message = 4).
const (
	fTracesResourceSpans = 1
	fRSResource          = 1
	fRSScopeSpans        = 2
	fRSSchemaURL         = 3
	fSSScope             = 1
	fSSSpans             = 2
	fSSSchemaURL         = 3
	fRespTrace           = 1
	fRespStatus          = 3
	fRespMessage         = 4
)

func partialMessage(wt *query.WireTrace, max int64) string {
	return fmt.Sprintf("trace is larger than the most bytes per trace answered (%d); later spans were left out", max)
}

// writeTraceProto writes the trace as OTLP TracesData, wrapped in Tempo's TraceByIDResponse
// when v2.
func writeTraceProto(w io.Writer, wt *query.WireTrace, v2 bool, max int64) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	type sized struct {
		res        []byte
		scopeSizes []int
		size       int
	}
	var rss []sized
	total := 0
	for _, r := range wt.Resources {
		var s sized
		if !hasSpans(r) {
			rss = append(rss, s)
			continue
		}
		if r.Resource != nil {
			s.res, _ = proto.Marshal(r.Resource)
		}
		inner := 0
		if r.Resource != nil {
			inner += protowire.SizeTag(fRSResource) + protowire.SizeBytes(len(s.res))
		}
		for _, sc := range r.Scopes {
			n := 0
			if sc.Scope != nil {
				b, _ := proto.Marshal(sc.Scope)
				n += protowire.SizeTag(fSSScope) + protowire.SizeBytes(len(b))
			}
			for _, sp := range sc.Spans {
				n += protowire.SizeTag(fSSSpans) + protowire.SizeBytes(len(sp))
			}
			if sc.SchemaURL != "" {
				n += protowire.SizeTag(fSSSchemaURL) + protowire.SizeBytes(len(sc.SchemaURL))
			}
			s.scopeSizes = append(s.scopeSizes, n)
			if len(sc.Spans) > 0 {
				inner += protowire.SizeTag(fRSScopeSpans) + protowire.SizeBytes(n)
			}
		}
		if r.SchemaURL != "" {
			inner += protowire.SizeTag(fRSSchemaURL) + protowire.SizeBytes(len(r.SchemaURL))
		}
		s.size = inner
		rss = append(rss, s)
		total += protowire.SizeTag(fTracesResourceSpans) + protowire.SizeBytes(inner)
	}
	var hdr []byte
	if v2 {
		hdr = protowire.AppendTag(hdr, fRespTrace, protowire.BytesType)
		hdr = protowire.AppendVarint(hdr, uint64(total))
	}
	bw.Write(hdr)
	for i, r := range wt.Resources {
		s := rss[i]
		if !hasSpans(r) {
			continue
		}
		b := protowire.AppendTag(nil, fTracesResourceSpans, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(s.size))
		if r.Resource != nil {
			b = protowire.AppendTag(b, fRSResource, protowire.BytesType)
			b = protowire.AppendBytes(b, s.res)
		}
		bw.Write(b)
		for j, sc := range r.Scopes {
			if len(sc.Spans) == 0 {
				continue
			}
			b = protowire.AppendTag(b[:0], fRSScopeSpans, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(s.scopeSizes[j]))
			if sc.Scope != nil {
				sb, _ := proto.Marshal(sc.Scope)
				b = protowire.AppendTag(b, fSSScope, protowire.BytesType)
				b = protowire.AppendBytes(b, sb)
			}
			bw.Write(b)
			for _, sp := range sc.Spans {
				b = protowire.AppendTag(b[:0], fSSSpans, protowire.BytesType)
				b = protowire.AppendVarint(b, uint64(len(sp)))
				bw.Write(b)
				if _, err := bw.Write(sp); err != nil {
					return err
				}
			}
			if sc.SchemaURL != "" {
				b = protowire.AppendTag(b[:0], fSSSchemaURL, protowire.BytesType)
				bw.Write(protowire.AppendString(b, sc.SchemaURL))
			}
		}
		if r.SchemaURL != "" {
			b = protowire.AppendTag(b[:0], fRSSchemaURL, protowire.BytesType)
			bw.Write(protowire.AppendString(b, r.SchemaURL))
		}
	}
	if v2 && wt.Partial {
		b := protowire.AppendTag(nil, fRespStatus, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
		b = protowire.AppendTag(b, fRespMessage, protowire.BytesType)
		bw.Write(protowire.AppendString(b, partialMessage(wt, max)))
	}
	return bw.Flush()
}

// writeTraceJSON writes the trace as OTLP/JSON: {"trace":{"resourceSpans":[…]}} for v2 (Tempo's
// TraceByIDResponse), {"batches":[…]} for v1. A truncated trace carries "status":"PARTIAL" and
// a message.
func writeTraceJSON(w io.Writer, wt *query.WireTrace, v2 bool, max int64) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	if v2 {
		bw.WriteString(`{"trace":{"resourceSpans":[`)
	} else {
		bw.WriteString(`{"batches":[`)
	}
	sp := &tracepb.Span{}
	var buf []byte
	firstRes := true
	for _, r := range wt.Resources {
		if !hasSpans(r) {
			continue
		}
		if !firstRes {
			bw.WriteByte(',')
		}
		firstRes = false
		bw.WriteByte('{')
		if r.Resource != nil {
			b, err := otlpjson.Marshal(r.Resource)
			if err != nil {
				return err
			}
			bw.WriteString(`"resource":`)
			bw.Write(b)
			bw.WriteByte(',')
		}
		if r.SchemaURL != "" {
			bw.WriteString(`"schemaUrl":`)
			bw.Write(appendJSONString(nil, r.SchemaURL))
			bw.WriteByte(',')
		}
		bw.WriteString(`"scopeSpans":[`)
		firstScope := true
		for _, sc := range r.Scopes {
			if len(sc.Spans) == 0 {
				continue
			}
			if !firstScope {
				bw.WriteByte(',')
			}
			firstScope = false
			bw.WriteByte('{')
			if sc.Scope != nil {
				b, err := otlpjson.Marshal(sc.Scope)
				if err != nil {
					return err
				}
				bw.WriteString(`"scope":`)
				bw.Write(b)
				bw.WriteByte(',')
			}
			if sc.SchemaURL != "" {
				bw.WriteString(`"schemaUrl":`)
				bw.Write(appendJSONString(nil, sc.SchemaURL))
				bw.WriteByte(',')
			}
			bw.WriteString(`"spans":[`)
			for i, raw := range sc.Spans {
				sp.Reset()
				if err := otlpwire.Unmarshal(raw, sp); err != nil {
					return fmt.Errorf("decode span: %w", err)
				}
				buf = buf[:0]
				if i > 0 {
					buf = append(buf, ',')
				}
				buf = appendSpanJSON(buf, sp)
				if _, err := bw.Write(buf); err != nil {
					return err
				}
			}
			bw.WriteString(`]}`)
		}
		bw.WriteString(`]}`)
	}
	if v2 {
		bw.WriteString(`]}`)
	} else {
		bw.WriteString(`]`)
	}
	if wt.Partial {
		bw.WriteString(`,"status":"PARTIAL","message":`)
		bw.Write(appendJSONString(nil, partialMessage(wt, max)))
	}
	bw.WriteString("}\n")
	return bw.Flush()
}

func hasSpans(r *query.WireResource) bool {
	for _, s := range r.Scopes {
		if len(s.Spans) > 0 {
			return true
		}
	}
	return false
}

// The OTLP/JSON of a span, written directly: protojson plus otlpjson's hex rewrite costs tens of
// microseconds a span, which for a 200,000-span trace is seconds. The shape is the OTLP/JSON
// mapping otlpjson produces: lowerCamelCase names, 64-bit integers as strings, enums as numbers,
// IDs in hex, zero values left out.

func appendSpanJSON(b []byte, s *tracepb.Span) []byte {
	b = append(b, '{')
	b = appendHexField(b, "traceId", s.TraceId, true)
	b = appendHexField(b, "spanId", s.SpanId, false)
	if s.TraceState != "" {
		b = appendStrField(b, "traceState", s.TraceState)
	}
	if len(s.ParentSpanId) > 0 {
		b = appendHexField(b, "parentSpanId", s.ParentSpanId, false)
	}
	if s.Flags != 0 {
		b = append(b, `,"flags":`...)
		b = strconv.AppendUint(b, uint64(s.Flags), 10)
	}
	if s.Name != "" {
		b = appendStrField(b, "name", s.Name)
	}
	if s.Kind != 0 {
		b = append(b, `,"kind":`...)
		b = strconv.AppendInt(b, int64(s.Kind), 10)
	}
	b = appendU64Field(b, "startTimeUnixNano", s.StartTimeUnixNano)
	b = appendU64Field(b, "endTimeUnixNano", s.EndTimeUnixNano)
	b = appendAttrs(b, s.Attributes, s.DroppedAttributesCount)
	if len(s.Events) > 0 {
		b = append(b, `,"events":[`...)
		for i, e := range s.Events {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			b = append(b, `"timeUnixNano":"`...)
			b = strconv.AppendUint(b, e.TimeUnixNano, 10)
			b = append(b, '"')
			if e.Name != "" {
				b = appendStrField(b, "name", e.Name)
			}
			b = appendAttrs(b, e.Attributes, e.DroppedAttributesCount)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if s.DroppedEventsCount != 0 {
		b = appendU32Field(b, "droppedEventsCount", s.DroppedEventsCount)
	}
	if len(s.Links) > 0 {
		b = append(b, `,"links":[`...)
		for i, l := range s.Links {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			b = appendHexField(b, "traceId", l.TraceId, true)
			b = appendHexField(b, "spanId", l.SpanId, false)
			if l.TraceState != "" {
				b = appendStrField(b, "traceState", l.TraceState)
			}
			b = appendAttrs(b, l.Attributes, l.DroppedAttributesCount)
			if l.Flags != 0 {
				b = append(b, `,"flags":`...)
				b = strconv.AppendUint(b, uint64(l.Flags), 10)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if s.DroppedLinksCount != 0 {
		b = appendU32Field(b, "droppedLinksCount", s.DroppedLinksCount)
	}
	if st := s.Status; st != nil {
		b = append(b, `,"status":{`...)
		sep := ""
		if st.Message != "" {
			b = append(b, `"message":`...)
			b = appendJSONString(b, st.Message)
			sep = ","
		}
		if st.Code != 0 {
			b = append(b, sep...)
			b = append(b, `"code":`...)
			b = strconv.AppendInt(b, int64(st.Code), 10)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendHexField writes "name":"hex"; first leaves out the leading comma.
func appendHexField(b []byte, name string, id []byte, first bool) []byte {
	if !first {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, name...)
	b = append(b, `":"`...)
	b = hex.AppendEncode(b, id)
	return append(b, '"')
}

func appendStrField(b []byte, name, v string) []byte {
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":`...)
	return appendJSONString(b, v)
}

func appendU64Field(b []byte, name string, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":"`...)
	b = strconv.AppendUint(b, v, 10)
	return append(b, '"')
}

func appendU32Field(b []byte, name string, v uint32) []byte {
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":`...)
	return strconv.AppendUint(b, uint64(v), 10)
}

func appendAttrs(b []byte, kvs []*commonpb.KeyValue, dropped uint32) []byte {
	if len(kvs) > 0 {
		b = append(b, `,"attributes":`...)
		b = appendKVList(b, kvs)
	}
	if dropped != 0 {
		b = appendU32Field(b, "droppedAttributesCount", dropped)
	}
	return b
}

func appendKVList(b []byte, kvs []*commonpb.KeyValue) []byte {
	b = append(b, '[')
	for i, kv := range kvs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"key":`...)
		b = appendJSONString(b, kv.Key)
		if kv.Value != nil {
			b = append(b, `,"value":`...)
			b = appendAnyValue(b, kv.Value)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

func appendAnyValue(b []byte, v *commonpb.AnyValue) []byte {
	switch x := v.Value.(type) {
	case *commonpb.AnyValue_StringValue:
		b = append(b, `{"stringValue":`...)
		b = appendJSONString(b, x.StringValue)
	case *commonpb.AnyValue_BoolValue:
		b = append(b, `{"boolValue":`...)
		b = strconv.AppendBool(b, x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		b = append(b, `{"intValue":"`...)
		b = strconv.AppendInt(b, x.IntValue, 10)
		b = append(b, '"')
	case *commonpb.AnyValue_DoubleValue:
		b = append(b, `{"doubleValue":`...)
		switch f := x.DoubleValue; {
		case math.IsNaN(f):
			b = append(b, `"NaN"`...)
		case math.IsInf(f, 1):
			b = append(b, `"Infinity"`...)
		case math.IsInf(f, -1):
			b = append(b, `"-Infinity"`...)
		default:
			b = strconv.AppendFloat(b, f, 'g', -1, 64)
		}
	case *commonpb.AnyValue_ArrayValue:
		b = append(b, `{"arrayValue":{`...)
		if x.ArrayValue != nil && len(x.ArrayValue.Values) > 0 {
			b = append(b, `"values":[`...)
			for i, e := range x.ArrayValue.Values {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendAnyValue(b, e)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	case *commonpb.AnyValue_KvlistValue:
		b = append(b, `{"kvlistValue":{`...)
		if x.KvlistValue != nil && len(x.KvlistValue.Values) > 0 {
			b = append(b, `"values":`...)
			b = appendKVList(b, x.KvlistValue.Values)
		}
		b = append(b, '}')
	case *commonpb.AnyValue_BytesValue:
		b = append(b, `{"bytesValue":"`...)
		b = base64.StdEncoding.AppendEncode(b, x.BytesValue)
		b = append(b, '"')
	default:
		return append(b, `{}`...)
	}
	return append(b, '}')
}

// appendJSONString writes s as a JSON string; invalid UTF-8 becomes U+FFFD, as encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
