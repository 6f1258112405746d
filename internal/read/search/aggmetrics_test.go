package search

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
)

// aggQueries are metrics queries the aggregates answer (filters and by() on name, status, kind
// and resource attributes) and a few they cannot, which must come out the same either way.
var aggQueries = []string{
	`{ } | rate() by (name)`,
	`{ } | count_over_time()`,
	`{ } | rate() by (resource.service.name, status)`,
	`{ resource.service.name = "api" } | count_over_time() by (name, kind)`,
	`{ status = error || kind = server } | rate() by (name)`,
	`{ name =~ "GET.*" && resource.service.name != "worker" } | rate()`,
	`{ name = "render" } | quantile_over_time(duration, .5, .9, .99) by (resource.service.name)`,
	`{ } | quantile_over_time(duration, 0, 1)`,
	`{ } | min_over_time(duration) by (name)`,
	`{ } | max_over_time(duration) by (status)`,
	`{ } | avg_over_time(duration) by (kind)`,
	`{ } | sum_over_time(duration)`,
	`{ } | rate() by (resource.nope)`,
	`{ } | rate() by (name) | topk(2)`,
	// Not from aggregates: they read span attributes or durations.
	`{ span.task.count = 7 } | rate() by (name)`,
	`{ duration > 20ms } | count_over_time()`,
	`{ } | rate() by (span.http.method)`,
}

// statusAndKind gives the data set's spans statuses and kinds, which indexTraces leaves unset.
func statusAndKind(r *rand.Rand, rss []*tracepb.ResourceSpans) {
	for _, rs := range rss {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				s.Kind = tracepb.Span_SpanKind(r.IntN(6))
				switch r.IntN(4) {
				case 0:
					s.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "boom"}
				case 1:
					s.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_OK}
				}
			}
		}
	}
}

func metricsAnswer(t *testing.T, e *Engine, q string, start, end time.Time, step time.Duration) (string, int64) {
	t.Helper()
	pq, err := traceql.Parse(q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	res, err := e.QueryRange(context.Background(), MetricsRequest{Query: pq, Start: start, End: end, Step: step})
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	var b strings.Builder
	for _, s := range res.Series {
		fmt.Fprintf(&b, "%s:", s.PromLabels())
		for _, smp := range s.Samples {
			// Sums add in another order: equal to 12 significant digits.
			fmt.Fprintf(&b, " %d=%.12g", smp.TimestampMs, smp.Value)
		}
		b.WriteByte('\n')
	}
	return b.String(), res.Metrics.InspectedSpans
}

// sameAnswer compares two metricsAnswer texts: labels and timestamps exactly, values to a
// relative 1e-9, since sums added in another order can differ in their last digits and even
// twelve-digit rounding then tips either way.
func sameAnswer(got, want string) bool {
	g, w := strings.Fields(got), strings.Fields(want)
	if len(g) != len(w) {
		return false
	}
	for i := range g {
		if g[i] == w[i] {
			continue
		}
		gts, gv, ok1 := strings.Cut(g[i], "=")
		wts, wv, ok2 := strings.Cut(w[i], "=")
		if !ok1 || !ok2 || gts != wts || strings.HasSuffix(g[i], ":") {
			return false
		}
		a, err1 := strconv.ParseFloat(gv, 64)
		b, err2 := strconv.ParseFloat(wv, 64)
		if err1 != nil || err2 != nil || math.Abs(a-b) > 1e-9*math.Max(math.Abs(a), math.Abs(b)) {
			return false
		}
	}
	return true
}

// TestAggregatesGiveScannedMetrics answers every query from the aggregates (where it can) and
// again by reading every span, over blocks, the head and both, for steps that fit the buckets
// and ones that do not (which read spans).
func TestAggregatesGiveScannedMetrics(t *testing.T) {
	r := rand.New(rand.NewPCG(18, 1))
	store, err := objstore.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	all := indexTraces(r, 300)
	statusAndKind(r, all)
	h := head.New()
	appendHead(t, h, all[200:])
	blocks := []*block.Reader{writeBlock(t, store, all[:100]), writeBlock(t, store, all[100:200])}
	end := time.Now().Truncate(time.Second).Add(time.Minute)
	start := end.Add(-time.Hour)
	windows := []struct {
		name       string
		start, end time.Time
		step       time.Duration
	}{
		{"1h by 60s", start, end, time.Minute},
		{"20m by 1s", end.Add(-20 * time.Minute), end, time.Second},
		{"instant", start, end, 0},
		{"unaligned", start.Add(500 * time.Millisecond), end, time.Minute},
		{"uneven step", start, end, 1500 * time.Millisecond},
	}
	for _, src := range []struct {
		name string
		src  *benchSource
	}{
		{"blocks", &benchSource{h: head.New(), blocks: blocks}},
		{"head", &benchSource{h: h}},
		{"both", &benchSource{h: h, blocks: blocks}},
	} {
		fast, full := New(src.src), New(src.src)
		full.fullScan = true
		for _, w := range windows {
			for _, q := range aggQueries {
				want, _ := metricsAnswer(t, full, q, w.start, w.end, w.step)
				got, read := metricsAnswer(t, fast, q, w.start, w.end, w.step)
				pq, _ := traceql.Parse(q)
				fits := !strings.Contains(w.name, "un") && aggregatable(MetricsRequest{Query: pq}) != nil
				headFits := fits && !strings.Contains(q, "quantile") && !strings.Contains(q, "min_") && !strings.Contains(q, "max_")
				if (src.name == "blocks" && fits || headFits) && read != 0 {
					t.Errorf("%s, %s: %s: read %d spans; the aggregates should answer", src.name, w.name, q, read)
				}
				if !sameAnswer(got, want) {
					t.Errorf("%s, %s: %s:\ngot\n%s\nwant\n%s", src.name, w.name, q, got, want)
				}
				if want == "" && !strings.Contains(q, "nope") && !strings.Contains(q, "duration >") {
					t.Errorf("%s, %s: %s: no series; the data set should give some", src.name, w.name, q)
				}
			}
		}
	}
}

// TestBlockIndexSums checks the block's aggregates against its spans: every span is counted
// once, in the bucket of its start.
func TestBlockIndexSums(t *testing.T) {
	r := rand.New(rand.NewPCG(18, 3))
	store, err := objstore.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rss := indexTraces(r, 50)
	b := writeBlock(t, store, rss)
	idx, err := b.Index(context.Background())
	if err != nil || idx == nil {
		t.Fatalf("index: %v, %v", idx, err)
	}
	want := map[int64]uint64{}
	var spans uint64
	for _, rs := range rss {
		for _, s := range rs.ScopeSpans[0].Spans {
			want[(int64(s.StartTimeUnixNano)-1)/idx.Width]++
			spans++
		}
	}
	got := map[int64]uint64{}
	var total uint64
	for _, bk := range idx.Buckets {
		got[bk.Bucket] += bk.Count
		total += bk.Count
		sk, err := bk.Sketch()
		if err != nil || sk.Count() != bk.Count || math.Abs(sk.Quantile(1)-bk.Max) > 0 {
			t.Fatalf("bucket %d: sketch %v (%v), count %d, max %g", bk.Bucket, sk, err, bk.Count, bk.Max)
		}
	}
	if total != spans || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("aggregates count %d spans %v, want %d %v", total, got, spans, want)
	}
	kv := idx.Values["task.count"]
	if kv == nil || !kv.Complete || len(kv.Values) != 20 {
		t.Errorf("task.count values: %+v", kv)
	}
	if kv := idx.Values["tags"]; kv == nil || kv.Complete || !kv.Raw {
		t.Errorf("tags (arrays) values: %+v, want incomplete and raw", kv)
	}
	if !strings.HasPrefix(kv.Values[0], string(block.ValueKeyInt)) || head.IntKey(0) != kv.Values[0] && head.IntKey(1) != kv.Values[0] {
		t.Errorf("value keys differ from the head's: %q", kv.Values[0])
	}
}

// TestFormat2BlockReads opens a block written by the code before the index file (format 2,
// checked in under testdata/v2store) and the same traces rewritten by this code (format 3),
// and asks both the same searches, tag values and metrics: the old block answers by reading
// its columns, the new one from its index, and the answers agree.
func TestFormat2BlockReads(t *testing.T) {
	ctx := context.Background()
	old, err := objstore.NewLocal("testdata/v2store")
	if err != nil {
		t.Fatal(err)
	}
	metas, err := block.List(ctx, old)
	if err != nil || len(metas) != 1 || metas[0].Version != 2 {
		t.Fatalf("fixture: %+v, %v", metas, err)
	}
	v2, err := block.Open(ctx, old, metas[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	if idx, err := v2.Index(ctx); idx != nil || err != nil {
		t.Fatalf("format 2 block has an index: %v, %v", idx, err)
	}
	var traces []block.Trace
	it := v2.Iter()
	for tr, ok := it.Next(ctx); ok; tr, ok = it.Next(ctx) {
		traces = append(traces, tr)
	}
	if it.Err() != nil || len(traces) != int(metas[0].Traces) {
		t.Fatalf("read %d traces of %d: %v", len(traces), metas[0].Traces, it.Err())
	}
	store, err := objstore.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	meta, err := block.Write(ctx, store, traces, block.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v3, err := block.Open(ctx, store, meta.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer v3.Close()
	if meta.Version != block.FormatVersion || meta.Files["index"] == 0 {
		t.Fatalf("rewritten block: version %d, files %v", meta.Version, meta.Files)
	}
	oldE, newE := New(&benchSource{h: head.New(), blocks: []*block.Reader{v2}}), New(&benchSource{h: head.New(), blocks: []*block.Reader{v3}})
	for _, q := range indexQueries {
		if got, want := searchIDs(t, newE, q, 1000), searchIDs(t, oldE, q, 1000); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: format 3 finds %v, format 2 %v", q, got, want)
		}
	}
	for _, tag := range []string{"span.task.count", "span.http.method", "span.tags", "span.ratio", "name"} {
		got, err1 := newE.TagValues(ctx, TagValuesRequest{Tag: tag})
		want, err2 := oldE.TagValues(ctx, TagValuesRequest{Tag: tag})
		if err1 != nil || err2 != nil || fmt.Sprint(got) != fmt.Sprint(want) || len(want) == 0 {
			t.Errorf("tag values of %s: format 3 %v (%v), format 2 %v (%v)", tag, got, err1, want, err2)
		}
	}
	// The fixture's spans start from 12:00 UTC over ten minutes.
	start := time.Date(2026, 12, 3, 11, 30, 0, 0, time.UTC)
	for _, q := range aggQueries {
		want, _ := metricsAnswer(t, oldE, q, start, start.Add(time.Hour), time.Minute)
		got, read := metricsAnswer(t, newE, q, start, start.Add(time.Hour), time.Minute)
		if got != want {
			t.Errorf("%s: format 3\n%s\nformat 2\n%s", q, got, want)
		}
		if pq, _ := traceql.Parse(q); aggregatable(MetricsRequest{Query: pq}) != nil && read != 0 {
			t.Errorf("%s: format 3 block read %d spans", q, read)
		}
	}
}

// TestIndexFromStreamWriterAndDamage checks that compaction's writer makes the same index as
// Write, and that a damaged index file leaves metrics and tag values to the columns, with the
// same answers.
func TestIndexFromStreamWriterAndDamage(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(18, 9))
	dir := t.TempDir()
	store, err := objstore.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	rss := indexTraces(r, 120)
	statusAndKind(r, rss)
	written := writeBlock(t, store, rss)
	var traces []block.Trace
	it := written.Iter()
	for tr, ok := it.Next(ctx); ok; tr, ok = it.Next(ctx) {
		traces = append(traces, tr)
	}
	sw, err := block.NewStreamWriter(t.TempDir(), len(traces), block.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range traces {
		if err := sw.Add(tr); err != nil {
			t.Fatal(err)
		}
	}
	meta, err := sw.Finish(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	streamed, err := block.Open(ctx, store, meta.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer streamed.Close()
	a, err1 := written.Index(ctx)
	b, err2 := streamed.Index(ctx)
	if err1 != nil || err2 != nil || a == nil || b == nil {
		t.Fatalf("index: %v %v", err1, err2)
	}
	if fmt.Sprint(len(a.Buckets), a.Combos, a.Values["task.count"]) != fmt.Sprint(len(b.Buckets), b.Combos, b.Values["task.count"]) {
		t.Errorf("stream writer's index differs from Write's")
	}

	// Damage: flip the index file's bytes (its checksum in meta.json no longer holds).
	path := dir + "/blocks/" + meta.ID + "/index"
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		raw[i] ^= 0x5a
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	damaged, err := block.Open(ctx, store, meta.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer damaged.Close()
	if _, err := damaged.Index(ctx); !errors.Is(err, block.ErrDamaged) {
		t.Fatalf("damaged index: %v, want ErrDamaged", err)
	}
	good, bad := New(&benchSource{h: head.New(), blocks: []*block.Reader{written}}), New(&benchSource{h: head.New(), blocks: []*block.Reader{damaged}})
	end := time.Now().Truncate(time.Second).Add(time.Minute)
	for _, q := range aggQueries {
		want, _ := metricsAnswer(t, good, q, end.Add(-time.Hour), end, time.Minute)
		got, _ := metricsAnswer(t, bad, q, end.Add(-time.Hour), end, time.Minute)
		if got != want {
			t.Errorf("%s with a damaged index:\n%s\nwant\n%s", q, got, want)
		}
	}
	gv, err1 := bad.TagValues(ctx, TagValuesRequest{Tag: "span.task.count"})
	wv, err2 := good.TagValues(ctx, TagValuesRequest{Tag: "span.task.count"})
	if err1 != nil || err2 != nil || fmt.Sprint(gv) != fmt.Sprint(wv) {
		t.Errorf("tag values with a damaged index: %v (%v), want %v (%v)", gv, err1, wv, err2)
	}
}
