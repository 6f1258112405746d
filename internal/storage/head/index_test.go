package head

import (
	"os"
	"slices"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/tools/loadgen"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

func kvStr(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func kvInt(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

// appendReq sends spans through the wire scanner into the head, as ingest does.
func appendReq(t *testing.T, h *Head, spans ...*tracepb.Span) {
	t.Helper()
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kvStr("service.name", "api")}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}},
	}}}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	a := h.Appender(1)
	if err := otlpwire.ScanRequest(b, func(g *otlpwire.Group, s *otlpwire.Span) error {
		a.Append(g, s)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	a.Commit()
}

func span(trace byte, id byte, name string, attrs ...*commonpb.KeyValue) *tracepb.Span {
	tid := make([]byte, 16)
	tid[0], tid[15] = trace, trace
	return &tracepb.Span{TraceId: tid, SpanId: []byte{id, 1, 2, 3, 4, 5, 6, 7}, Name: name,
		StartTimeUnixNano: 100, EndTimeUnixNano: 200, Attributes: attrs}
}

func traceOf(h *Head, trace byte) *Trace {
	var id [16]byte
	id[0], id[15] = trace, trace
	parts := h.Get(id)
	if len(parts) == 0 {
		return nil
	}
	return parts[0]
}

func TestSignatureHasWhatTheTraceHolds(t *testing.T) {
	h := New()
	arr := &commonpb.KeyValue{Key: "tags", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{
		Values: []*commonpb.AnyValue{{Value: &commonpb.AnyValue_StringValue{StringValue: "red"}}, {Value: &commonpb.AnyValue_IntValue{IntValue: 3}}}}}}}
	dbl := &commonpb.KeyValue{Key: "ratio", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 0.5}}}
	flag := &commonpb.KeyValue{Key: "flag", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}}
	raw := &commonpb.KeyValue{Key: "raw", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{0xab, 0x01}}}}
	appendReq(t, h, span(1, 1, "GET /", kvStr("method", "GET"), kvInt("count", 7), arr, dbl, flag, raw), span(1, 2, "render", kvInt("count", 9)))
	appendReq(t, h, span(2, 3, "other", kvStr("method", "PUT")))

	tr := traceOf(h, 1)
	sig := tr.Signature()
	has := func(build func(*Signature)) bool {
		var q Signature
		build(&q)
		return sig.Has(q)
	}
	for name, build := range map[string]func(*Signature){
		"name":              func(q *Signature) { q.AddName("render") },
		"string":            func(q *Signature) { q.AddString("method", "GET") },
		"int as float":      func(q *Signature) { q.AddNumber("count", 7) },
		"second span's int": func(q *Signature) { q.AddNumber("count", 9) },
		"two at once":       func(q *Signature) { q.AddName("GET /"); q.AddNumber("count", 9) },
		"array element":     func(q *Signature) { q.AddString("tags", "red"); q.AddNumber("tags", 3) },
		"double":            func(q *Signature) { q.AddNumber("ratio", 0.5) },
		"bool":              func(q *Signature) { q.AddBool("flag", true) },
		"bytes as hex":      func(q *Signature) { q.AddString("raw", "ab01") },
	} {
		if !has(build) {
			t.Errorf("%s: signature lacks what the trace holds", name)
		}
	}
	// Bloom filters may let absent items through, but not these many at once.
	misses := 0
	for i := range 100 {
		if !has(func(q *Signature) { q.AddNumber("count", float64(1000+i)) }) {
			misses++
		}
	}
	if misses < 80 {
		t.Errorf("only %d of 100 absent values ruled out", misses)
	}
	if other := traceOf(h, 2).Signature(); other.Has(sig) {
		t.Error("an unrelated trace's signature holds everything of trace 1")
	}
}

func TestAttributeValuesAndSweep(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	h := New()
	h.now = c.now
	appendReq(t, h, span(1, 1, "a", kvStr("method", "GET"), kvInt("count", 7)))
	c.t = c.t.Add(time.Minute)
	appendReq(t, h, span(2, 2, "b", kvStr("method", "PUT")))

	got := h.SpanAttributeValues("method")
	slices.Sort(got.Values)
	if !got.Complete || !slices.Equal(got.Values, []string{StringKey("GET"), StringKey("PUT")}) {
		t.Fatalf("method values %q complete=%v", got.Values, got.Complete)
	}
	if !h.HasSpanAttributeValue("count", IntKey(7)) || h.HasSpanAttributeValue("count", IntKey(4242), DoubleKey(4242)) {
		t.Fatal("HasSpanAttributeValue wrong for count")
	}
	keys, _, _ := h.AttributeKeys()
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"count", "method"}) {
		t.Fatalf("keys %q", keys)
	}
	names, complete := h.SpanNames()
	slices.Sort(names)
	if !complete || !slices.Equal(names, []string{"a", "b"}) {
		t.Fatalf("names %q", names)
	}

	// Trace 1 leaves the head: its values go at the next sweep, trace 2's stay.
	cut := h.Cut(CutPolicy{Idle: 30 * time.Second})
	if len(cut) != 1 {
		t.Fatalf("cut %d traces", len(cut))
	}
	c.t = c.t.Add(time.Minute)
	h.Release(cut)
	got = h.SpanAttributeValues("method")
	if !slices.Equal(got.Values, []string{StringKey("PUT")}) {
		t.Fatalf("after release: method values %q", got.Values)
	}
	if h.HasSpanAttributeValue("count", IntKey(7)) {
		t.Fatal("a released trace's value is still indexed")
	}
}

func TestTooManyValuesMarksKeyIncomplete(t *testing.T) {
	h := New()
	// One trace, so one shard, with more distinct values than a shard keeps.
	var spans []*tracepb.Span
	for i := range maxIndexedValues + 10 {
		spans = append(spans, span(1, byte(i), "s", kvInt("request", int64(i))))
	}
	appendReq(t, h, spans...)
	got := h.SpanAttributeValues("request")
	if got.Complete || len(got.Values) != maxIndexedValues {
		t.Fatalf("%d values, complete=%v", len(got.Values), got.Complete)
	}
	// Any value may be in the unlisted rest.
	if !h.HasSpanAttributeValue("request", IntKey(1<<40)) {
		t.Fatal("an incomplete key ruled a value out")
	}
}

// BenchmarkAppend appends the load generator's requests (512 spans, new traces in each) and
// reports the cost per span, index upkeep included; with HEAD_BENCH_NOINDEX=1 the index is not
// kept, for comparison.
func BenchmarkAppend(b *testing.B) {
	for _, profile := range []string{"small", "guide"} {
		b.Run(profile, func(b *testing.B) {
			next, _, err := loadgen.Requests(profile, 512, 1)
			if err != nil {
				b.Fatal(err)
			}
			reqs := make([][]byte, 64)
			for i := range reqs {
				reqs[i] = next(nil)
			}
			noIndex = os.Getenv("HEAD_BENCH_NOINDEX") != ""
			defer func() { noIndex = false }()
			b.ReportAllocs()
			h, n := New(), 0
			for i := 0; b.Loop(); i++ {
				// The head is emptied every 64 requests, as the flush loop would, to keep memory
				// flat; its index keeps what it learnt, as in a running server.
				if i%len(reqs) == 0 {
					h.Release(h.Cut(CutPolicy{All: true}))
				}
				a := h.Appender(1)
				if err := otlpwire.ScanRequest(reqs[i%len(reqs)], func(g *otlpwire.Group, s *otlpwire.Span) error {
					a.Append(g, s)
					n++
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				a.Commit()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/span")
		})
	}
}

// BenchmarkCut is the flush loop's tick on a head of 52,000 live traces: none due (the common
// case), and over the memory budget, which both used to walk every trace under each shard's
// lock.
func BenchmarkCut(b *testing.B) {
	next, _, err := loadgen.Requests("small", 512, 1)
	if err != nil {
		b.Fatal(err)
	}
	h := New()
	for range 1000 {
		a := h.Appender(1)
		if err := otlpwire.ScanRequest(next(nil), func(g *otlpwire.Group, s *otlpwire.Span) error {
			a.Append(g, s)
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		a.Commit()
	}
	b.Run("none-due", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if cut := h.Cut(CutPolicy{Idle: time.Hour, MaxAge: time.Hour}); len(cut) != 0 {
				b.Fatal("cut traces")
			}
		}
	})
	// Over the memory budget by 64 KiB each tick (about 50 traces to cut), as under sustained
	// load; run it a fixed number of times (-benchtime 200x) so the head stays about as large.
	b.Run("over-budget", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if len(h.Cut(CutPolicy{Idle: time.Hour, MaxBytes: h.liveBytes() - 64<<10})) == 0 {
				b.Fatal("nothing cut")
			}
		}
	})
}
