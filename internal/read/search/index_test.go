package search

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// indexBase is the data set's time origin: now, so that the head's and blocks' traces are in
// the searches' windows.
var indexBase = uint64(time.Now().Add(-10 * time.Minute).UnixNano())

// indexTraces makes n traces of mixed shapes: 1 to 14 spans, a few names, attributes of every
// scalar type and arrays, spread over ten minutes.
func indexTraces(r *rand.Rand, n int) []*tracepb.ResourceSpans {
	names := []string{"GET /api/tasks", "render", "load_user", "query", "cache.get"}
	var out []*tracepb.ResourceSpans
	for ti := range n {
		tid := make([]byte, 16)
		for i := range tid {
			tid[i] = byte(r.Uint32())
		}
		start := indexBase + uint64(ti)*uint64(600e9)/uint64(n) + r.Uint64N(1e9)
		var spans []*tracepb.Span
		var rootID []byte
		for si := range 1 + r.IntN(14) {
			sid := make([]byte, 8)
			for i := range sid {
				sid[i] = byte(r.Uint32())
			}
			s := &tracepb.Span{TraceId: tid, SpanId: sid, Name: names[r.IntN(len(names))],
				StartTimeUnixNano: start + uint64(si)*1e6, EndTimeUnixNano: start + uint64(si)*1e6 + r.Uint64N(50e6)}
			if si == 0 {
				rootID = sid
			} else {
				s.ParentSpanId = rootID
			}
			s.Attributes = append(s.Attributes, &commonpb.KeyValue{Key: "task.count", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: int64(r.IntN(20))}}})
			if r.IntN(3) == 0 {
				s.Attributes = append(s.Attributes, strKV("http.method", []string{"GET", "PUT", "DELETE"}[r.IntN(3)]))
			}
			if r.IntN(4) == 0 {
				s.Attributes = append(s.Attributes, &commonpb.KeyValue{Key: "ratio", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: float64(r.IntN(4)) / 2}}})
			}
			if r.IntN(5) == 0 {
				s.Attributes = append(s.Attributes, &commonpb.KeyValue{Key: "cached", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: r.IntN(2) == 0}}})
			}
			if r.IntN(6) == 0 {
				s.Attributes = append(s.Attributes, &commonpb.KeyValue{Key: "tags", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{
					Values: []*commonpb.AnyValue{{Value: &commonpb.AnyValue_StringValue{StringValue: []string{"red", "blue"}[r.IntN(2)]}}, {Value: &commonpb.AnyValue_IntValue{IntValue: int64(r.IntN(3))}}}}}}})
			}
			if r.IntN(10) == 0 {
				s.Events = append(s.Events, &tracepb.Span_Event{Name: "exception", TimeUnixNano: s.StartTimeUnixNano + 1,
					Attributes: []*commonpb.KeyValue{strKV("exception.type", "ValueError")}})
			}
			spans = append(spans, s)
		}
		svc := []string{"api", "worker"}[r.IntN(2)]
		out = append(out, &tracepb.ResourceSpans{
			Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{strKV("service.name", svc)}},
			ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "test"}, Spans: spans}},
		})
	}
	return out
}

// appendHead sends resource spans through the wire scanner into the head, as ingest does.
func appendHead(t *testing.T, h *head.Head, rss []*tracepb.ResourceSpans) {
	t.Helper()
	b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rss})
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

// writeBlock stores resource spans as one block, as the flush loop would.
func writeBlock(t *testing.T, store objstore.Store, rss []*tracepb.ResourceSpans) *block.Reader {
	t.Helper()
	h := head.New()
	appendHead(t, h, rss)
	var traces []block.Trace
	for _, ht := range h.Cut(head.CutPolicy{All: true}) {
		bt := block.Trace{ID: ht.ID}
		ht.Spans(func(g *otlpwire.Group, raw []byte) { bt.Spans = append(bt.Spans, block.Span{Group: g, Raw: raw}) })
		traces = append(traces, bt)
	}
	meta, err := block.Write(context.Background(), store, traces, block.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rd, err := block.Open(context.Background(), store, meta.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	return rd
}

// indexQueries are the queries whose answers must not change with the indexes: conditions the
// indexes prune on (names, every value type, arrays, count()), ones they cannot, and no-matches.
var indexQueries = []string{
	`{ }`,
	`{ resource.service.name = "api" }`,
	`{ span.task.count = 7 && name = "render" }`,
	`{ span.task.count = 7.0 }`,
	`{ span.task.count = 4242 }`,
	`{ span.task.count > 15 }`,
	`{ span.http.method = "DELETE" }`,
	`{ span.http.method = "PATCH" }`,
	`{ span.ratio = 0.5 }`,
	`{ span.ratio = 1 }`,
	`{ span.cached = true }`,
	`{ span.tags = "blue" }`,
	`{ span.tags = 2 }`,
	`{ name = "nope" }`,
	`{ .http.method = "GET" }`,
	`{ name = "GET /api/tasks" } >> { name = "render" && span.task.count = 7 }`,
	`{ name = "render" } && { span.http.method = "PUT" }`,
	`{ name = "render" } || { span.task.count = 4242 }`,
	`{ } | count() > 11`,
	`{ } | count() >= 14`,
	`{ } | count() > 20`,
	`{ name = "render" } | count() > 2`,
	`{ duration > 45ms }`,
	`{ event:name = "exception" }`,
	// Conjunctions that head traces are tested on at the wire before decoding.
	`{ span.tags != "red" && name = "render" }`,
	`{ name =~ "cache.*" && span.http.method != "GET" }`,
	`{ duration > 30ms && name = "query" && status = unset && kind = unspecified }`,
	`{ span.ratio >= 0.5 && span.cached = false }`,
	`{ name != "render" && span.tags !~ "r.*" && span.task.count < 3 }`,
	`{ span.http.method = "PUT" && resource.service.name = "worker" } && { name = "load_user" && span.task.count >= 10 }`,
}

func searchIDs(t *testing.T, e *Engine, q string, limit int) []string {
	t.Helper()
	pq, err := traceql.Parse(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	res, err := e.Search(context.Background(), Request{Query: pq, Limit: limit})
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	var ids []string
	for _, tr := range res.Traces {
		ids = append(ids, fmt.Sprintf("%x/%d", tr.ID, len(tr.SpanSets)))
	}
	return ids
}

// TestIndexesGiveFullScanAnswers runs every query with the head's and the blocks' indexes and
// statistics and again reading everything, over the head alone, blocks alone and both.
func TestIndexesGiveFullScanAnswers(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	store, err := objstore.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	all := indexTraces(r, 300)
	h := head.New()
	appendHead(t, h, all[200:])
	blocks := []*block.Reader{writeBlock(t, store, all[:100]), writeBlock(t, store, all[100:200])}
	for _, src := range []struct {
		name string
		src  *benchSource
	}{
		{"head", &benchSource{h: h}},
		{"blocks", &benchSource{h: head.New(), blocks: blocks}},
		{"both", &benchSource{h: h, blocks: blocks}},
	} {
		indexed, full := New(src.src), New(src.src)
		full.fullScan = true
		for _, q := range indexQueries {
			for _, limit := range []int{20, 1000} {
				want := searchIDs(t, full, q, limit)
				got := searchIDs(t, indexed, q, limit)
				if !slices.Equal(got, want) {
					t.Errorf("%s: %s limit %d: %d traces with indexes, %d reading everything\ngot  %v\nwant %v", src.name, q, limit, len(got), len(want), got, want)
				}
			}
		}
	}
}

// TestHeadIndexGivesScannedTags compares tag names and values from the head's index and the
// blocks' value lists with those found by decoding every trace.
func TestHeadIndexGivesScannedTags(t *testing.T) {
	all := indexTraces(rand.New(rand.NewPCG(3, 4)), 300)
	h := head.New()
	appendHead(t, h, all[100:])
	store, err := objstore.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	src := &benchSource{h: h, blocks: []*block.Reader{writeBlock(t, store, all[:100])}}
	indexed, full := New(src), New(src)
	full.fullScan = true
	ctx := context.Background()
	want, err := full.TagNames(ctx, TagsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := indexed.TagNames(ctx, TagsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("tag names\ngot  %v\nwant %v", got, want)
	}
	if len(want[ScopeSpan]) < 5 || len(want[ScopeEvent]) != 1 || len(want[ScopeResource]) != 1 {
		t.Fatalf("the data set lacks tags: %v", want)
	}
	for _, tag := range []string{"span.task.count", "span.http.method", "span.ratio", "span.cached", "span.tags", "span.nope"} {
		want, err := full.TagValues(ctx, TagValuesRequest{Tag: tag})
		if err != nil {
			t.Fatal(err)
		}
		got, err := indexed.TagValues(ctx, TagValuesRequest{Tag: tag})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s values\ngot  %v\nwant %v", tag, got, want)
		}
	}
}

// TestStatisticsSkipBlocks checks that the statistics do rule blocks out, not only that they
// keep answers unchanged: a count() past every trace's span count and a value no block holds.
func TestStatisticsSkipBlocks(t *testing.T) {
	store, err := objstore.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	all := indexTraces(rand.New(rand.NewPCG(5, 6)), 100)
	e := New(&benchSource{h: head.New(), blocks: []*block.Reader{writeBlock(t, store, all[:50]), writeBlock(t, store, all[50:])}})
	for _, q := range []string{`{ } | count() > 20`, `{ span.task.count = 4242 }`, `{ span.ratio = 0.25 }`, `{ span.cached = 1 }`} {
		pq, err := traceql.Parse(q)
		if err != nil {
			t.Fatal(err)
		}
		res, err := e.Search(context.Background(), Request{Query: pq})
		if err != nil {
			t.Fatal(err)
		}
		if res.Metrics.SkippedBlocks != 2 || res.Metrics.InspectedSpans != 0 || len(res.Traces) != 0 {
			t.Errorf("%s: skipped %d of 2 blocks, read %d spans, %d traces", q, res.Metrics.SkippedBlocks, res.Metrics.InspectedSpans, len(res.Traces))
		}
	}
}

// TestNewestFirstGivesFullScanAnswers reads a block big enough to be read in chunks, newest
// trace first, with small limits, against reading every trace; and with a time window.
func TestNewestFirstGivesFullScanAnswers(t *testing.T) {
	r := rand.New(rand.NewPCG(18, 5))
	store, err := objstore.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b := writeBlock(t, store, indexTraces(r, 3000))
	// In the head, spans 400 ms apart, each trace's later spans sent first: its start moves
	// back across seconds as the earlier ones arrive.
	rss := indexTraces(r, 600)
	var late, early []*tracepb.ResourceSpans
	for _, rs := range rss {
		spans := rs.ScopeSpans[0].Spans
		for i, sp := range spans {
			sp.StartTimeUnixNano += uint64(i) * 400e6
			sp.EndTimeUnixNano += uint64(i) * 400e6
		}
		h := len(spans) / 2
		late = append(late, &tracepb.ResourceSpans{Resource: rs.Resource, ScopeSpans: []*tracepb.ScopeSpans{{Scope: rs.ScopeSpans[0].Scope, Spans: spans[h:]}}})
		early = append(early, &tracepb.ResourceSpans{Resource: rs.Resource, ScopeSpans: []*tracepb.ScopeSpans{{Scope: rs.ScopeSpans[0].Scope, Spans: spans[:h]}}})
	}
	hd := head.New()
	appendHead(t, hd, late)
	appendHead(t, hd, early)
	for _, src := range []*benchSource{{h: head.New(), blocks: []*block.Reader{b}}, {h: hd}} {
		newestFirstMatchesFullScan(t, src)
	}
}

func newestFirstMatchesFullScan(t *testing.T, src *benchSource) {
	fast, full := New(src), New(src)
	full.fullScan = true
	mid := time.Unix(0, int64(indexBase)).Add(5 * time.Minute)
	for _, q := range indexQueries {
		pq, err := traceql.Parse(q)
		if err != nil {
			t.Fatal(err)
		}
		for _, limit := range []int{1, 5, 20, 300} {
			for _, end := range []time.Time{{}, mid} {
				req := Request{Query: pq, Limit: limit, End: end}
				got, err1 := fast.Search(context.Background(), req)
				want, err2 := full.Search(context.Background(), req)
				if err1 != nil || err2 != nil {
					t.Fatal(err1, err2)
				}
				if g, w := fmt.Sprint(ids(got)), fmt.Sprint(ids(want)); g != w {
					t.Errorf("%s limit %d end %v:\nnewest first %s\nfull scan    %s", q, limit, end, g, w)
				}
				if len(src.blocks) > 0 && limit <= 20 && len(want.Traces) == limit && got.Metrics.InspectedTraces >= want.Metrics.InspectedTraces {
					t.Errorf("%s limit %d: inspected %d traces, as many as a full scan", q, limit, got.Metrics.InspectedTraces)
				}
			}
		}
	}
}

func ids(r *Result) []string {
	var out []string
	for _, tr := range r.Traces {
		out = append(out, fmt.Sprintf("%x/%d", tr.ID[:4], len(tr.SpanSets)))
	}
	return out
}
