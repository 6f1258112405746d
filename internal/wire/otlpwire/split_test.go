package otlpwire

import (
	"testing"

	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Each part of a split is, as a message, what FilterRequest keeps for that part: two
// resources with schema URLs, scopes with and without spans of a part, spans of three parts
// interleaved; parts come in the order of their first span, and a part is never empty.
func TestSplitRequestMatchesFilter(t *testing.T) {
	scope := func(name string, tids ...byte) *tracepb.ScopeSpans {
		ss := &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: name}, SchemaUrl: "https://s/" + name}
		for i, tid := range tids {
			ss.Spans = append(ss.Spans, span(tid, byte(i+1), nil, name, tracepb.Status_STATUS_CODE_UNSET))
		}
		return ss
	}
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{
		{Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "a")}}, SchemaUrl: "https://r/a",
			ScopeSpans: []*tracepb.ScopeSpans{scope("one", 1, 2, 1, 3), scope("two", 2, 2), scope("empty")}},
		{Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "b")}},
			ScopeSpans: []*tracepb.ScopeSpans{scope("three", 3, 1)}},
	}}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	part := func(id []byte) int { return int(id[0]) % 3 } // trace 1 → 1, 2 → 2, 3 → 0
	parts, err := SplitRequest(b, 3, part)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 3 || parts[0].P != 1 || parts[1].P != 2 || parts[2].P != 0 {
		t.Fatalf("parts %v, want 1, 2, 0 (order of first span)", parts)
	}
	for _, p := range parts {
		want, err := FilterRequest(nil, b, func(s *Span) bool { return part(s.TraceID) == p.P })
		if err != nil {
			t.Fatal(err)
		}
		var got, exp coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(p.Data, &got); err != nil {
			t.Fatalf("part %d does not decode: %v", p.P, err)
		}
		if err := proto.Unmarshal(want, &exp); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&got, &exp) {
			t.Errorf("part %d:\n got %v\nwant %v", p.P, &got, &exp)
		}
	}
	if parts, err := SplitRequest(nil, 3, part); err != nil || len(parts) != 0 {
		t.Fatalf("empty request: %v, %v", parts, err)
	}
	if _, err := SplitRequest(b[:len(b)-3], 3, part); err == nil {
		t.Fatal("a truncated request split without error")
	}
}

func BenchmarkSplitRequest(b *testing.B) {
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "a")}},
		ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "s"}}}}}}
	for i := 0; i < 512; i++ {
		req.ResourceSpans[0].ScopeSpans[0].Spans = append(req.ResourceSpans[0].ScopeSpans[0].Spans,
			span(byte(i/10), byte(i), nil, "op", tracepb.Status_STATUS_CODE_UNSET))
	}
	raw, err := proto.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	part := func(id []byte) int { return int(id[0]) % 16 }
	b.Run("split", func(b *testing.B) {
		for b.Loop() {
			if _, err := SplitRequest(raw, 16, part); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("filter-per-part", func(b *testing.B) {
		for b.Loop() {
			for p := 0; p < 16; p++ {
				if _, err := FilterRequest(nil, raw, func(s *Span) bool { return part(s.TraceID) == p }); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
