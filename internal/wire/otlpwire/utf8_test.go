package otlpwire

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

func strv(s string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
}

func kv(k, v string) *commonpb.KeyValue { return &commonpb.KeyValue{Key: k, Value: strv(v)} }

// placeholder is valid text of the same length as the invalid bytes that replace it after
// marshalling (the Go runtime refuses to marshal invalid UTF-8, as a careless sender would not).
const placeholder = "@@BAD@@"

var invalid = "ok\xff\xfe\xc3xy" // 7 bytes: a lone 0xff, 0xfe, and a truncated 2-byte sequence

// utf8Cases put the placeholder in each string field of the OTLP schema in turn; inherited says
// whether every span of the request is touched (resource or scope level) or only the first.
func utf8Cases() []struct {
	name      string
	inherited bool
	edit      func(r *coltracepb.ExportTraceServiceRequest)
} {
	rs := func(r *coltracepb.ExportTraceServiceRequest) *tracepb.ResourceSpans { return r.ResourceSpans[0] }
	sp := func(r *coltracepb.ExportTraceServiceRequest) *tracepb.Span {
		return r.ResourceSpans[0].ScopeSpans[0].Spans[0]
	}
	return []struct {
		name      string
		inherited bool
		edit      func(r *coltracepb.ExportTraceServiceRequest)
	}{
		{"service name", true, func(r *coltracepb.ExportTraceServiceRequest) { rs(r).Resource.Attributes[0].Value = strv(placeholder) }},
		{"resource attribute key", true, func(r *coltracepb.ExportTraceServiceRequest) { rs(r).Resource.Attributes[1].Key = placeholder }},
		{"resource array value", true, func(r *coltracepb.ExportTraceServiceRequest) {
			rs(r).Resource.Attributes[1].Value = &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{
				Values: []*commonpb.AnyValue{strv("a"), strv(placeholder)}}}}
		}},
		{"resource schema url", true, func(r *coltracepb.ExportTraceServiceRequest) { rs(r).SchemaUrl = placeholder }},
		{"scope name", true, func(r *coltracepb.ExportTraceServiceRequest) { rs(r).ScopeSpans[0].Scope.Name = placeholder }},
		{"scope version", true, func(r *coltracepb.ExportTraceServiceRequest) { rs(r).ScopeSpans[0].Scope.Version = placeholder }},
		{"scope attribute", true, func(r *coltracepb.ExportTraceServiceRequest) {
			rs(r).ScopeSpans[0].Scope.Attributes = []*commonpb.KeyValue{kv("lib", placeholder)}
		}},
		{"scope schema url", true, func(r *coltracepb.ExportTraceServiceRequest) { rs(r).ScopeSpans[0].SchemaUrl = placeholder }},
		{"span name", false, func(r *coltracepb.ExportTraceServiceRequest) { sp(r).Name = placeholder }},
		{"trace state", false, func(r *coltracepb.ExportTraceServiceRequest) { sp(r).TraceState = placeholder }},
		{"span attribute key", false, func(r *coltracepb.ExportTraceServiceRequest) { sp(r).Attributes[0].Key = placeholder }},
		{"span attribute value", false, func(r *coltracepb.ExportTraceServiceRequest) { sp(r).Attributes[0].Value = strv(placeholder) }},
		{"kvlist value", false, func(r *coltracepb.ExportTraceServiceRequest) {
			sp(r).Attributes[0].Value = &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{
				Values: []*commonpb.KeyValue{kv("inner", placeholder)}}}}
		}},
		{"event name", false, func(r *coltracepb.ExportTraceServiceRequest) { sp(r).Events[0].Name = placeholder }},
		{"event attribute", false, func(r *coltracepb.ExportTraceServiceRequest) {
			sp(r).Events[0].Attributes = []*commonpb.KeyValue{kv("exception.message", placeholder)}
		}},
		{"link trace state", false, func(r *coltracepb.ExportTraceServiceRequest) { sp(r).Links[0].TraceState = placeholder }},
		{"link attribute", false, func(r *coltracepb.ExportTraceServiceRequest) {
			sp(r).Links[0].Attributes = []*commonpb.KeyValue{kv("l", placeholder)}
		}},
		{"status message", false, func(r *coltracepb.ExportTraceServiceRequest) { sp(r).Status.Message = placeholder }},
	}
}

// UTF8TestRequest is a request of two spans with placeholder put in by edit, marshalled, and the
// placeholder then replaced by invalid UTF-8.
func utf8Request(t testing.TB, edit func(*coltracepb.ExportTraceServiceRequest)) []byte {
	span := func(id byte) *tracepb.Span {
		return &tracepb.Span{TraceId: bytes.Repeat([]byte{1}, 16), SpanId: bytes.Repeat([]byte{id}, 8), Name: "span",
			StartTimeUnixNano: 1e18, EndTimeUnixNano: 1e18 + 1e6, Attributes: []*commonpb.KeyValue{kv("k", "v")},
			Events: []*tracepb.Span_Event{{Name: "e", TimeUnixNano: 1e18}},
			Links:  []*tracepb.Span_Link{{TraceId: bytes.Repeat([]byte{2}, 16), SpanId: bytes.Repeat([]byte{2}, 8)}},
			Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "m"}}
	}
	r := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("service.name", "svc"), kv("host", "h")}},
		ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "lib"},
			Spans: []*tracepb.Span{span(1), span(2)}}},
	}}}
	edit(r)
	b, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(b, []byte(placeholder)) != 1 {
		t.Fatalf("placeholder appears %d times", bytes.Count(b, []byte(placeholder)))
	}
	return bytes.Replace(b, []byte(placeholder), []byte(invalid), 1)
}

func TestSanitizeUTF8EveryStringField(t *testing.T) {
	for _, tc := range utf8Cases() {
		t.Run(tc.name, func(t *testing.T) {
			body := utf8Request(t, tc.edit)
			if proto.Unmarshal(body, &coltracepb.ExportTraceServiceRequest{}) == nil {
				t.Fatal("the Go runtime decoded invalid UTF-8: the test does not test anything")
			}
			if ValidUTF8(body) {
				t.Fatal("ValidUTF8 missed it")
			}
			var b Batch
			if err := b.Scan(body); err != nil || b.ValidUTF8 {
				t.Fatalf("Batch.Scan missed it (%v)", err)
			}
			out, flagged, err := SanitizeUTF8(nil, body)
			if err != nil {
				t.Fatal(err)
			}
			want := 1
			if tc.inherited {
				want = 2
			}
			if flagged != want {
				t.Fatalf("flagged %d spans, want %d", flagged, want)
			}
			var r coltracepb.ExportTraceServiceRequest
			if err := proto.Unmarshal(out, &r); err != nil {
				t.Fatalf("sanitized request does not decode: %v", err)
			}
			if !ValidUTF8(out) {
				t.Fatal("still invalid after sanitizing")
			}
			text := r.String()
			if !strings.Contains(text, "ok\uFFFDxy") {
				t.Fatalf("replacement not found in %s", text)
			}
			for i, sp := range r.ResourceSpans[0].ScopeSpans[0].Spans {
				has := false
				for _, a := range sp.Attributes {
					if a.Key == InvalidUTF8Key && a.Value.GetBoolValue() {
						has = true
					}
				}
				if has != (i < want) {
					t.Fatalf("span %d flagged=%v", i, has)
				}
			}
			// The read-side decoder gets the same result from the invalid bytes of one span.
			var sp tracepb.Span
			var scanned [][]byte
			ScanRequest(body, func(_ *Group, s *Span) error { scanned = append(scanned, bytes.Clone(s.Raw)); return nil })
			if err := Unmarshal(scanned[0], &sp); err != nil {
				t.Fatalf("tolerant Unmarshal: %v", err)
			}
			if !utf8.ValidString(sp.String()) {
				t.Fatal("tolerant Unmarshal left invalid UTF-8")
			}
		})
	}
}

func TestValidRequestsAreLeftAlone(t *testing.T) {
	body := utf8Request(t, func(r *coltracepb.ExportTraceServiceRequest) { r.ResourceSpans[0].SchemaUrl = placeholder })
	good := bytes.Replace(body, []byte(invalid), []byte("naïve!"), 1)
	var b Batch
	if !utf8.Valid([]byte("naïve!")) || !ValidUTF8(good) || b.Scan(good) != nil || !b.ValidUTF8 {
		t.Fatal("valid request reported invalid")
	}
}

// A string that ends in a lead byte right before a two-byte tag (Span.flags, field 16) makes
// the bytes around it valid UTF-8 while the string itself is not: the check must look at the
// string, not at the message holding the span as a whole.
func TestInvalidUTF8BeforeTwoByteTag(t *testing.T) {
	r := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{
			TraceId: bytes.Repeat([]byte{'t'}, 16), SpanId: bytes.Repeat([]byte{'s'}, 8), Name: "n",
			Status: &tracepb.Status{Message: placeholder}, Flags: 1, // status.message, then flags' tag
		}}}},
	}}}
	b, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	// 0xc2 then the tag 0x85 0x01 reads as U+0085 when the request is checked as a whole.
	body := bytes.Replace(b, []byte(placeholder), []byte("abcdef\xc2"), 1)
	if !utf8.Valid(body) {
		t.Fatal("the request as a whole should be valid UTF-8 for this test to test anything")
	}
	var batch Batch
	if ValidUTF8(body) || batch.Scan(body) != nil || batch.ValidUTF8 {
		t.Fatal("invalid status message passed as valid")
	}
}

// BenchmarkValidUTF8 checks the same request BenchmarkScanRequest scans: the check runs on
// every request, so its cost is to be read next to the scan's.
func BenchmarkValidUTF8(b *testing.B) {
	req := smallRequest(100, 10)
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for b.Loop() {
		if !ValidUTF8(req) {
			b.Fatal("invalid")
		}
	}
	b.ReportMetric(float64(1000*b.N)/b.Elapsed().Seconds(), "spans/s")
}

// Whatever SanitizeUTF8 accepts, its output is valid UTF-8 everywhere, scans to the same spans
// (same IDs, in order) and decodes with the stock types when the input's only fault was UTF-8.
func FuzzSanitizeUTF8(f *testing.F) {
	for _, tc := range utf8Cases() {
		f.Add(utf8Request(f, tc.edit))
	}
	f.Add(smallRequest(2, 3))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var batch Batch
		if batch.Scan(b) == nil && batch.ValidUTF8 != ValidUTF8(b) {
			t.Fatalf("Batch.Scan says valid=%v, ValidUTF8 %v", batch.ValidUTF8, ValidUTF8(b))
		}
		out, _, err := SanitizeUTF8(nil, b)
		if err != nil {
			return
		}
		if !ValidUTF8(out) {
			t.Fatal("sanitized output still invalid")
		}
		var before, after []string
		errB := ScanRequest(b, func(_ *Group, s *Span) error { before = append(before, string(s.SpanID)); return nil })
		errA := ScanRequest(out, func(_ *Group, s *Span) error { after = append(after, string(s.SpanID)); return nil })
		if (errB == nil) != (errA == nil) || strings.Join(before, ",") != strings.Join(after, ",") {
			t.Fatalf("spans changed: %q (%v) -> %q (%v)", before, errB, after, errA)
		}
		if errB == nil && proto.Unmarshal(b, &coltracepb.ExportTraceServiceRequest{}) == nil {
			if proto.Unmarshal(out, &coltracepb.ExportTraceServiceRequest{}) != nil {
				t.Fatal("a request that decoded no longer decodes")
			}
		}
	})
}
