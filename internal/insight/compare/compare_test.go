package compare

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/read/search"
	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
	"github.com/ariadne-tracing/ariadne/internal/testkit/blocktest"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

func anyKV(k string, v *commonpb.AnyValue) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: v}
}

// mixedTraces are traces with every kind of value compare counts: string, int, double, bool,
// bytes, array and map attributes, repeated keys, events with attributes, three services in
// two versions, an identifier per span, a user per span except on slow spans (30 hot users
// over 40ms, 30 others under)
// and a session among 1300 that repeat: enough distinct values in a large block that the
// writer keeps the last three keys out of the str dictionary (block.ValueStringPlain).
func mixedTraces(r *rand.Rand, n int, base time.Time) []*tracepb.ResourceSpans {
	var out []*tracepb.ResourceSpans
	seq := 0
	for i := range n {
		svc := []string{"api", "db", "cache"}[r.IntN(3)]
		version := []string{"1.0", "1.1"}[r.IntN(2)]
		res := &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("service.name", svc), kv("service.version", version),
			anyKV("pod.ord", &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: int64(r.IntN(3))}})}}
		tid := make([]byte, 16)
		for j := range tid {
			tid[j] = byte(r.Uint32())
		}
		var spans []*tracepb.Span
		start := uint64(base.Add(time.Duration(i) * time.Second).UnixNano())
		for s := range 1 + r.IntN(6) {
			sid := make([]byte, 8)
			for j := range sid {
				sid[j] = byte(r.Uint32())
			}
			slow := r.IntN(4) == 0
			dur := uint64(1e6 + r.IntN(5e6))
			if slow {
				dur *= 20
			}
			sp := &tracepb.Span{TraceId: tid, SpanId: sid, Name: fmt.Sprint("op-", r.IntN(4)), Kind: tracepb.Span_SpanKind(r.IntN(6)),
				StartTimeUnixNano: start + uint64(s)*1000, EndTimeUnixNano: start + uint64(s)*1000 + dur}
			sp.Attributes = []*commonpb.KeyValue{
				kv("route", fmt.Sprint("/r/", r.IntN(5))),
				kv("code", 200+100*r.IntN(3)),
				anyKV("ratio", &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: r.Float64()}}),
				anyKV("cached", &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: r.IntN(2) == 0}}),
				kv("req.id", fmt.Sprint(r.Uint64())),
			}
			seq++
			user := fmt.Sprint("u-", r.Uint64())
			switch {
			case slow && dur > 40e6:
				user = fmt.Sprint("u-hot-", r.IntN(30))
			case slow:
				user = fmt.Sprint("u-warm-", r.IntN(30))
			}
			sp.Attributes = append(sp.Attributes, kv("user", user), kv("session", fmt.Sprint("s-", seq*7%1300)))
			switch r.IntN(5) {
			case 0:
				sp.Attributes = append(sp.Attributes, anyKV("blob", &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{1, byte(r.IntN(3))}}}))
			case 1:
				sp.Attributes = append(sp.Attributes, anyKV("tags", &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{
					Values: []*commonpb.AnyValue{{Value: &commonpb.AnyValue_StringValue{StringValue: "a"}}}}}}))
			case 2:
				sp.Attributes = append(sp.Attributes, anyKV("m", &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{}}}))
			case 3:
				sp.Attributes = append(sp.Attributes, kv("route", "/dup")) // a repeated key
			}
			if slow && svc == "db" {
				sp.Attributes = append(sp.Attributes, kv("db.statement", "SELECT * FROM t WHERE note = ?"))
			}
			if r.IntN(3) == 0 {
				sp.Events = []*tracepb.Span_Event{
					{Name: "retry", TimeUnixNano: sp.StartTimeUnixNano + 1, Attributes: []*commonpb.KeyValue{kv("attempt", r.IntN(3)), kv("pool", "p")}},
					{Name: "retry", TimeUnixNano: sp.StartTimeUnixNano + 2, Attributes: []*commonpb.KeyValue{kv("pool", "p")}},
				}
			}
			if r.IntN(8) == 0 || (version == "1.1" && r.IntN(4) == 0) {
				sp.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}
			} else if r.IntN(5) == 0 {
				sp.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_OK}
			}
			spans = append(spans, sp)
		}
		out = append(out, &tracepb.ResourceSpans{Resource: res, ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}}})
	}
	return out
}

func appendHead(t testing.TB, h *head.Head, rss []*tracepb.ResourceSpans) {
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

// mixedSource holds mixed traces in three blocks (small row groups and pages, so that columns
// cross them; the third large enough for plain strings) and the head, with one trace split
// between a block and the head.
func mixedSource(t testing.TB, base time.Time) *blocktest.Source {
	t.Helper()
	ctx := context.Background()
	store, err := objstore.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	src := &blocktest.Source{H: head.New()}
	all := mixedTraces(r, 1000, base)
	for k, part := range [][]*tracepb.ResourceSpans{all[:150], all[150:300], all[300:850]} {
		h := head.New()
		appendHead(t, h, part)
		var traces []block.Trace
		for _, ht := range h.Cut(head.CutPolicy{All: true}) {
			bt := block.Trace{ID: ht.ID}
			ht.Spans(func(g *otlpwire.Group, raw []byte) { bt.Spans = append(bt.Spans, block.Span{Group: g, Raw: raw}) })
			traces = append(traces, bt)
		}
		// The third block in one row group, where a side sees a key's plain strings whole.
		meta, err := block.Write(ctx, store, traces, block.WriteOptions{PageSize: 2048, RowGroupRows: []int64{300, 500, 1 << 20}[k]})
		if err != nil {
			t.Fatal(err)
		}
		rd, err := block.Open(ctx, store, meta.ID)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rd.Close() })
		src.Blocks = append(src.Blocks, rd)
	}
	// The first trace's spans again, later ones with new span IDs: a trace split between the
	// first block and the head, which the engine judges whole.
	late := proto.Clone(all[0]).(*tracepb.ResourceSpans)
	for _, s := range late.ScopeSpans[0].Spans {
		s.SpanId = append([]byte{0xee}, s.SpanId[1:]...)
	}
	appendHead(t, src.H, append(all[850:], late))
	return src
}

// TestColumnsMatchScan: reading blocks by their columns gives the answer reading every span
// through the search engine gives, for every kind of filter the columns answer, with the
// default baseline and a given one.
func TestColumnsMatchScan(t *testing.T) {
	base := time.Unix(1_750_000_000, 0)
	src := mixedSource(t, base)
	e := search.New(src)
	cases := []struct{ sel, baseline string }{
		{`{ duration > 40ms }`, ""},
		{`{ status = error }`, ""},
		{`{ status = error }`, `{ kind = server || kind = client }`},
		{`{ resource.service.name = "db" && duration > 40ms }`, ""},
		{`{ span.code >= 300 && !(span.route = "/r/1") }`, ""},
		{`{ .service.version = "1.1" || span.cached = true }`, `{ name =~ "op-[12]" }`},
		{`{ span.tags = "a" }`, ""},
		{`{ span.blob != nil && span.ratio < 0.5 }`, ""},
		{`{ span.m = nil && .route != "/dup" }`, ""},
		{`{ }`, ""},
		{`{ name != "op-3" && resource.pod.ord > 0 }`, `{ }`},
		{`{ span.user = "u-hot-1" }`, ""},
		{`{ duration > 40ms }`, `{ span.user =~ "u-(hot|warm)-.*" }`},
		{`{ span.session =~ "s-1.*" && span.user != "u-warm-0" }`, `{ span.session != nil }`},
	}
	// The third block keeps user, session and req.id out of the str dictionary.
	plain := 0
	ac := src.Blocks[2].Columns(block.FileSpanAttrs)
	for rg := range ac.RowGroups() {
		types, err := ac.Int32s(rg, "type", nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, typ := range types {
			if isPlain(typ) {
				plain++
			}
		}
	}
	if plain == 0 {
		t.Fatal("no plain strings in the large block")
	}
	hot := false
	for _, c := range cases {
		sel, err := traceql.Parse(c.sel)
		if err != nil {
			t.Fatal(err)
		}
		req := Request{Selection: sel, Start: base.Add(-time.Minute), End: base.Add(time.Hour), Limit: 1000}
		if c.baseline != "" {
			if req.Baseline, err = traceql.Parse(c.baseline); err != nil {
				t.Fatal(err)
			}
		}
		selF := compileFilter(req.Selection)
		baseF := compileFilter(req.Baseline)
		if selF == nil || (req.Baseline != nil && baseF == nil) {
			t.Fatalf("%s: columns cannot answer it", c.sel)
		}
		want, err := compareByScan(context.Background(), e, req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := compareByColumns(context.Background(), e, req, selF, baseF)
		if err != nil {
			t.Fatal(err)
		}
		if want.SelectionSpans == 0 {
			t.Fatalf("%s: nothing selected", c.sel)
		}
		if g, w := summary(got), summary(want); g != w {
			t.Errorf("%s against %q:\ncolumns: %s\nscan:    %s", c.sel, c.baseline, g, w)
		}
		hot = hot || strings.Contains(summary(got), "span.user=u-hot-")
	}
	if !hot {
		t.Error("no answer counts the hot users")
	}
}

// summary is a result without its example traces, which depend on the order spans are read in.
func summary(r *Result) string {
	s := fmt.Sprintf("sel %d base %d high %v tested %v\n", r.SelectionSpans, r.BaselineSpans, r.HighCardinality, r.Tested)
	vals := slices.Clone(r.Values)
	slices.SortFunc(vals, func(a, b ValueDiff) int {
		return cmpStr(a.Key+"="+valueText(a.Value)+a.Value.Type, b.Key+"="+valueText(b.Value)+b.Value.Type)
	})
	for _, v := range vals {
		s += fmt.Sprintf("  %s=%s(%s) %d/%d %.6f %v %d\n", v.Key, valueText(v.Value), v.Value.Type, v.Selection, v.Baseline, v.Score, v.Significant, len(v.ExampleTraceIDs))
	}
	for _, sh := range r.Shifts {
		s += fmt.Sprintf("  shift %s %+v %+v %.6f %.6f %v %d\n", sh.Key, sh.Selection, sh.Baseline, sh.D, sh.Score, sh.Significant, len(sh.ExampleTraceIDs))
	}
	return s
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
