package block

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

func str(s string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
}

func kv(k string, v *commonpb.AnyValue) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: v}
}

// richAttrs covers every AnyValue shape, plus a KeyValue without a value and an empty AnyValue.
func richAttrs(r *rand.Rand) []*commonpb.KeyValue {
	return []*commonpb.KeyValue{
		kv("s", str(fmt.Sprint("v", r.IntN(5)))),
		kv("empty.s", str("")),
		kv("b.true", &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}),
		kv("b.false", &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: false}}),
		kv("i", &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: -r.Int64()}}),
		kv("i0", &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 0}}),
		kv("d", &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: r.NormFloat64()}}),
		kv("bytes", &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{0, 1, 2, byte(r.IntN(256))}}}),
		kv("arr", &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{
			str("x"), {Value: &commonpb.AnyValue_IntValue{IntValue: 7}},
			{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{}}},
		}}}}),
		kv("kvl", &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{
			kv("inner", str("y")), kv("nested", &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{}}}),
		}}}}),
		kv("nil", nil),
		kv("emptyany", &commonpb.AnyValue{}),
		kv("", str("empty key")),
	}
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// richTrace builds a trace spread over several resources and scopes, with roots, children,
// orphans and remote parents.
func richTrace(r *rand.Rand, id [16]byte, nSpans int) []*tracepb.ResourceSpans {
	resources := []*resourcepb.Resource{
		{Attributes: []*commonpb.KeyValue{kv("service.name", str("frontend")), kv("host", str("a"))}, DroppedAttributesCount: 3},
		{Attributes: []*commonpb.KeyValue{kv("service.name", str("db"))}},
		nil,
	}
	scopes := []*commonpb.InstrumentationScope{
		{Name: "lib", Version: "1.2", Attributes: richAttrs(r)[:3], DroppedAttributesCount: 1},
		{Name: "other"},
		nil,
	}
	var rss []*tracepb.ResourceSpans
	var ids [][]byte
	for ri, res := range resources {
		rs := &tracepb.ResourceSpans{Resource: res, SchemaUrl: fmt.Sprint("https://schema/", ri)}
		for si, sc := range scopes {
			ss := &tracepb.ScopeSpans{Scope: sc}
			if si == 0 {
				ss.SchemaUrl = "https://scope-schema"
			}
			rs.ScopeSpans = append(rs.ScopeSpans, ss)
		}
		rss = append(rss, rs)
	}
	base := uint64(1_700_000_000_000_000_000) + r.Uint64N(1e15)
	for i := range nSpans {
		s := &tracepb.Span{
			TraceId:           id[:],
			SpanId:            randBytes(r, 8),
			Name:              fmt.Sprint("op-", r.IntN(4)),
			Kind:              tracepb.Span_SpanKind(r.IntN(6)),
			StartTimeUnixNano: base + r.Uint64N(1e9),
			Flags:             uint32(r.IntN(3)) << 8,
		}
		s.EndTimeUnixNano = s.StartTimeUnixNano + r.Uint64N(1e8)
		switch {
		case i == 0: // root
		case i%7 == 3:
			s.ParentSpanId = randBytes(r, 8) // orphan or remote parent
		default:
			s.ParentSpanId = ids[r.IntN(len(ids))]
		}
		ids = append(ids, s.SpanId)
		if i%2 == 0 {
			s.Attributes = richAttrs(r)
			s.DroppedAttributesCount = uint32(i)
		}
		if i%3 == 0 {
			s.TraceState = "k=v"
			s.DroppedEventsCount, s.DroppedLinksCount = 2, 1
			s.Events = []*tracepb.Span_Event{
				{TimeUnixNano: s.StartTimeUnixNano + 5, Name: "ev", Attributes: richAttrs(r)[:5], DroppedAttributesCount: 4},
				{TimeUnixNano: s.StartTimeUnixNano - 1, Name: ""},
			}
			s.Links = []*tracepb.Span_Link{
				{TraceId: randBytes(r, 16), SpanId: randBytes(r, 8), TraceState: "a=b", Attributes: richAttrs(r)[7:], DroppedAttributesCount: 9, Flags: 0x301},
				{},
			}
		}
		switch i % 4 {
		case 1:
			s.Status = &tracepb.Status{}
			if i%3 == 1 {
				s.Status.Code = -1 // out-of-range enum values must survive too
			} else if i%3 == 2 {
				s.Status.Code = math.MaxInt32
				s.Kind = -3
			}
		case 2:
			s.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "boom"}
		case 3:
			s.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_OK}
		}
		rs := rss[r.IntN(len(rss))]
		ss := rs.ScopeSpans[r.IntN(len(rs.ScopeSpans))]
		ss.Spans = append(ss.Spans, s)
	}
	return rss
}

// toTraces scans OTLP data the way ingest does and groups the spans into Traces.
func toTraces(t testing.TB, rss []*tracepb.ResourceSpans) []Trace {
	t.Helper()
	req, err := proto.Marshal(&tracepb.TracesData{ResourceSpans: rss})
	if err != nil {
		t.Fatal(err)
	}
	groups := map[string]*otlpwire.Group{}
	byID := map[[16]byte]int{}
	var out []Trace
	err = otlpwire.ScanRequest(req, func(g *otlpwire.Group, s *otlpwire.Span) error {
		key := fmt.Sprintf("%v|%q|%q|%v|%q|%q", g.Resource == nil, g.Resource, g.ResourceSchemaURL, g.Scope == nil, g.Scope, g.ScopeSchemaURL)
		gp := groups[key]
		if gp == nil {
			c := *g
			gp = &c
			groups[key] = gp
		}
		id := [16]byte(s.TraceID)
		i, ok := byID[id]
		if !ok {
			i = len(out)
			byID[id] = i
			out = append(out, Trace{ID: id})
		}
		out[i].Spans = append(out[i].Spans, Span{Group: gp, Raw: s.Raw})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// canonical flattens ResourceSpans into one single-span ResourceSpans per span, sorted, so
// that grouping order does not matter but every span keeps its resource and scope.
func canonical(t testing.TB, rss []*tracepb.ResourceSpans) [][]byte {
	t.Helper()
	var out [][]byte
	for _, rs := range rss {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				one := &tracepb.ResourceSpans{Resource: rs.Resource, SchemaUrl: rs.SchemaUrl, ScopeSpans: []*tracepb.ScopeSpans{
					{Scope: ss.Scope, SchemaUrl: ss.SchemaUrl, Spans: []*tracepb.Span{s}},
				}}
				b, err := proto.MarshalOptions{Deterministic: true}.Marshal(one)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, b)
			}
		}
	}
	slices.SortFunc(out, bytes.Compare)
	return out
}

func assertSameTrace(t *testing.T, got, want []*tracepb.ResourceSpans) {
	t.Helper()
	g, w := canonical(t, got), canonical(t, want)
	if len(g) != len(w) {
		t.Fatalf("got %d spans, want %d", len(g), len(w))
	}
	for i := range g {
		if !bytes.Equal(g[i], w[i]) {
			a, b := &tracepb.ResourceSpans{}, &tracepb.ResourceSpans{}
			proto.Unmarshal(g[i], a)
			proto.Unmarshal(w[i], b)
			if !proto.Equal(a, b) {
				t.Fatalf("span %d differs:\ngot  %v\nwant %v", i, a, b)
			}
		}
	}
	// Spans of one resource must come back under one ResourceSpans, and of one scope under one
	// ScopeSpans.
	seen := map[string]bool{}
	for _, rs := range got {
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&tracepb.ResourceSpans{Resource: rs.Resource, SchemaUrl: rs.SchemaUrl})
		if seen[string(b)] {
			t.Fatalf("resource %v split over several ResourceSpans", rs.Resource)
		}
		seen[string(b)] = true
	}
}

func newStore(t testing.TB) *objstore.Local {
	s, err := objstore.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func traceID(r *rand.Rand) [16]byte {
	var id [16]byte
	binary.LittleEndian.PutUint64(id[:8], r.Uint64())
	binary.LittleEndian.PutUint64(id[8:], r.Uint64())
	return id
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	r := rand.New(rand.NewPCG(1, 2))
	want := map[[16]byte][]*tracepb.ResourceSpans{}
	var all []*tracepb.ResourceSpans
	for i := range 300 {
		id := traceID(r)
		rss := richTrace(r, id, 1+i%40)
		want[id] = rss
		all = append(all, rss...)
	}
	traces := toTraces(t, all)
	// Small pages and row groups so lookups cross page and row-group boundaries.
	meta, err := Write(ctx, store, traces, WriteOptions{PageSize: 1024, RowGroupRows: 500})
	if err != nil {
		t.Fatal(err)
	}
	if meta.Traces != 300 {
		t.Fatalf("meta.Traces = %d", meta.Traces)
	}
	for reopen := range 2 {
		br, err := Open(ctx, store, meta.ID)
		if err != nil {
			t.Fatal(err)
		}
		for id, w := range want {
			got, err := br.FindTrace(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			assertSameTrace(t, got, w)
		}
		n := 0
		var prev [16]byte
		err = br.Traces(ctx, func(s *TraceSummary) bool {
			if n > 0 && bytes.Compare(prev[:], s.ID[:]) >= 0 {
				t.Errorf("summaries out of order")
			}
			prev = s.ID
			n++
			if _, ok := want[s.ID]; !ok {
				t.Errorf("unknown trace %x", s.ID)
			}
			return true
		})
		if err != nil || n != 300 {
			t.Fatalf("Traces: n=%d err=%v", n, err)
		}
		if err := br.Close(); err != nil {
			t.Fatalf("close %d: %v", reopen, err)
		}
	}
}

func TestSummary(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	id := [16]byte{1}
	res := &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("service.name", str("checkout"))}}
	spans := []*tracepb.Span{
		{TraceId: id[:], SpanId: []byte{2, 0, 0, 0, 0, 0, 0, 0}, ParentSpanId: []byte{1, 0, 0, 0, 0, 0, 0, 0}, Name: "child", StartTimeUnixNano: 150, EndTimeUnixNano: 400,
			Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}},
		{TraceId: id[:], SpanId: []byte{1, 0, 0, 0, 0, 0, 0, 0}, Name: "root", StartTimeUnixNano: 100, EndTimeUnixNano: 300},
		{TraceId: id[:], SpanId: []byte{3, 0, 0, 0, 0, 0, 0, 0}, ParentSpanId: []byte{9, 0, 0, 0, 0, 0, 0, 0}, Name: "orphan", StartTimeUnixNano: 50, EndTimeUnixNano: 60},
	}
	traces := toTraces(t, []*tracepb.ResourceSpans{{Resource: res, ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}}}})
	traces[0].SampleRatio, traces[0].Truncated = 0.25, true
	meta, err := Write(ctx, store, traces, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if meta.MinStart != 50 || meta.MaxEnd != 400 || meta.Spans != 3 {
		t.Fatalf("meta %+v", meta)
	}
	br, err := Open(ctx, store, meta.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	var got []TraceSummary
	br.Traces(ctx, func(s *TraceSummary) bool { got = append(got, *s); return true })
	want := TraceSummary{ID: id, StartUnixNano: 50, DurationNano: 350, RootService: "checkout", RootName: "root", SpanCount: 3, ErrorCount: 1,
		SampleRatio: 0.25, Truncated: true}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

// TestSplitTrace writes one trace's spans into two blocks, with the parent in the other block.
func TestSplitTrace(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	r := rand.New(rand.NewPCG(3, 4))
	id := traceID(r)
	rss := richTrace(r, id, 30)
	traces := toTraces(t, rss)
	if len(traces) != 1 {
		t.Fatal("expected one trace")
	}
	sp := traces[0].Spans
	half := len(sp) / 2
	// The second half also arrives as two entries with the same ID, which Write must merge.
	a := []Trace{{ID: id, Spans: sp[:half]}, {ID: traceID(r), Spans: toTraces(t, richTrace(r, [16]byte{7}, 3))[0].Spans}}
	b := []Trace{{ID: id, Spans: sp[half : half+3]}, {ID: id, Spans: sp[half+3:]}}
	a[1].ID = [16]byte{7}
	ma, err := Write(ctx, store, a, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mb, err := Write(ctx, store, b, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if mb.Traces != 1 {
		t.Fatalf("duplicate entries not merged: %d traces", mb.Traces)
	}
	var got []*tracepb.ResourceSpans
	for _, m := range []Meta{ma, mb} {
		br, err := Open(ctx, store, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		part, err := br.FindTrace(ctx, id)
		if err != nil || part == nil {
			t.Fatalf("block %s: %v %v", m.ID, part, err)
		}
		got = append(got, part...)
		br.Close()
	}
	// canonical ignores grouping across the two parts.
	g, w := canonical(t, got), canonical(t, rss)
	if len(g) != len(w) {
		t.Fatalf("got %d spans, want %d", len(g), len(w))
	}
	for i := range g {
		if !bytes.Equal(g[i], w[i]) {
			t.Fatalf("span %d differs", i)
		}
	}
}

func TestAbsentAndList(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	r := rand.New(rand.NewPCG(5, 6))
	var rss []*tracepb.ResourceSpans
	for range 50 {
		rss = append(rss, richTrace(r, traceID(r), 3)...)
	}
	meta, err := Write(ctx, store, toTraces(t, rss), WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	br, err := Open(ctx, store, meta.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	start := time.Now()
	for range 1000 {
		got, err := br.FindTrace(ctx, traceID(r))
		if err != nil || got != nil {
			t.Fatalf("absent trace: %v %v", got, err)
		}
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("1000 absent lookups took %v", d)
	}
	// Below min and above max trace ID.
	for _, id := range [][16]byte{{}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}} {
		if got, err := br.FindTrace(ctx, id); err != nil || got != nil {
			t.Fatalf("absent trace: %v %v", got, err)
		}
	}

	// An unfinished block: files but no meta.json.
	incomplete := NewID(time.Now().Add(time.Hour))
	if err := store.Put(ctx, blockDir(incomplete)+fileTraces, bytes.NewReader([]byte("partial"))); err != nil {
		t.Fatal(err)
	}
	metas, err := List(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	if len(metas) != 1 || metas[0].ID != meta.ID || metas[0].Spans != meta.Spans {
		t.Fatalf("List = %+v", metas)
	}
	inc, err := Incomplete(ctx, store)
	if err != nil || !slices.Equal(inc, []string{incomplete}) {
		t.Fatalf("Incomplete = %v, %v", inc, err)
	}
	if _, err := Open(ctx, store, incomplete); err == nil {
		t.Fatal("opened a block without meta")
	}
	if err := Delete(ctx, store, incomplete); err != nil {
		t.Fatal(err)
	}
	if err := Delete(ctx, store, meta.ID); err != nil {
		t.Fatal(err)
	}
	metas, _ = List(ctx, store)
	names, _ := store.List(ctx, Prefix)
	if len(metas) != 0 || len(names) != 0 {
		t.Fatalf("after Delete: %v %v", metas, names)
	}
}

func TestEmptyBlock(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	meta, err := Write(ctx, store, nil, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	br, err := Open(ctx, store, meta.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	if got, err := br.FindTrace(ctx, [16]byte{1}); got != nil || err != nil {
		t.Fatalf("%v %v", got, err)
	}
}

func TestMalformedSpan(t *testing.T) {
	store := newStore(t)
	_, err := Write(context.Background(), store, []Trace{{ID: [16]byte{1}, Spans: []Span{{Raw: []byte{0x0a, 0x05, 1}}}}}, WriteOptions{})
	if err == nil {
		t.Fatal("malformed span accepted")
	}
	if names, _ := store.List(context.Background(), Prefix); len(names) != 0 {
		t.Fatalf("failed write left %v", names)
	}
}

func TestNewID(t *testing.T) {
	a := NewID(time.UnixMilli(1000))
	b := NewID(time.UnixMilli(1001))
	c := NewID(time.UnixMilli(1001))
	if len(a) != 26 || a >= b || b == c {
		t.Fatalf("%s %s %s", a, b, c)
	}
	_ = filepath.Join
	_ = os.Getpid
}

// TestDecodeTruncated feeds every prefix of a rich span to the decoder: each must fail cleanly
// or decode, never panic.
func TestDecodeTruncated(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	traces := toTraces(t, richTrace(r, traceID(r), 12))
	var d decoder
	for _, s := range traces[0].Spans {
		for n := range len(s.Raw) {
			d.reset()
			_ = d.decodeSpan(s.Raw[:n], 0)
		}
		d.reset()
		if err := d.decodeSpan(s.Raw, 0); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGroupDedupe passes equal resource and scope bytes behind distinct pointers.
func TestGroupDedupe(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	r := rand.New(rand.NewPCG(9, 10))
	traces := toTraces(t, richTrace(r, [16]byte{1}, 20))
	groups := map[*otlpwire.Group]bool{}
	for i, s := range traces[0].Spans {
		c := *s.Group
		c.Resource = slices.Clone(c.Resource) // same bytes, different memory
		traces[0].Spans[i].Group = &c
		groups[s.Group] = true
	}
	meta, err := Write(ctx, store, traces, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if meta.Groups != int64(len(groups)) {
		t.Fatalf("%d groups stored, want %d", meta.Groups, len(groups))
	}
}

func TestWriteCanceled(t *testing.T) {
	store := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := rand.New(rand.NewPCG(9, 10))
	if _, err := Write(ctx, store, toTraces(t, richTrace(r, [16]byte{1}, 5)), WriteOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if names, _ := store.List(context.Background(), Prefix); len(names) != 0 {
		t.Fatalf("canceled write left %v", names)
	}
}

// TestConcurrentFind shares one Reader between goroutines, as a querier does.
func TestConcurrentFind(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	r := rand.New(rand.NewPCG(15, 16))
	want := map[[16]byte][]*tracepb.ResourceSpans{}
	var all []*tracepb.ResourceSpans
	for range 40 {
		id := traceID(r)
		want[id] = richTrace(r, id, 8)
		all = append(all, want[id]...)
	}
	meta, err := Write(ctx, store, toTraces(t, all), WriteOptions{PageSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	br, err := Open(ctx, store, meta.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for id, w := range want {
				got, err := br.FindTrace(ctx, id)
				if err == nil && len(canonical(t, got)) != len(canonical(t, w)) {
					err = fmt.Errorf("trace %x: wrong span count", id)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
