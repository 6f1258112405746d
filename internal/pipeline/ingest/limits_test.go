package ingest

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// needsReshape decides from the scan's counts, and walks a span only when one of its messages
// is longer than the value limit; each limit must still be found wherever it is broken.
func TestNeedsReshape(t *testing.T) {
	kv := func(v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: "k", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	long := strings.Repeat("x", 101)
	lim := &Limits{MaxAttributeValueBytes: 100, MaxAttributesPerSpan: 3, MaxEventsPerSpan: 2, MaxLinksPerSpan: 1}
	link := &tracepb.Span_Link{TraceId: make([]byte, 16), SpanId: make([]byte, 8)}
	for _, tc := range []struct {
		name string
		sp   *tracepb.Span
		want bool
	}{
		{"within every limit", &tracepb.Span{Attributes: []*commonpb.KeyValue{kv(long[:100]), kv("a")},
			Events: []*tracepb.Span_Event{{Name: long}}, Links: []*tracepb.Span_Link{link}}, false},
		{"long span attribute", &tracepb.Span{Attributes: []*commonpb.KeyValue{kv(long)}}, true},
		{"long event attribute", &tracepb.Span{Events: []*tracepb.Span_Event{{Attributes: []*commonpb.KeyValue{kv(long)}}}}, true},
		{"long link attribute", &tracepb.Span{Links: []*tracepb.Span_Link{{Attributes: []*commonpb.KeyValue{kv(long)}}}}, true},
		{"too many attributes", &tracepb.Span{Attributes: []*commonpb.KeyValue{kv("a"), kv("b"), kv("c"), kv("d")}}, true},
		{"too many events", &tracepb.Span{Events: []*tracepb.Span_Event{{}, {}, {}}}, true},
		{"too many links", &tracepb.Span{Links: []*tracepb.Span_Link{link, link}}, true},
	} {
		raw, err := proto.Marshal(tc.sp)
		if err != nil {
			t.Fatal(err)
		}
		var s otlpwire.Span
		if err := otlpwire.ScanSpan(raw, &s); err != nil {
			t.Fatal(err)
		}
		if got := needsReshape(&s, lim); got != tc.want {
			t.Errorf("%s: needsReshape = %v, want %v", tc.name, got, tc.want)
		}
	}
}
