package search

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
)

// TestPlainStringsSearch: searches, tag values and metrics over a block whose identifier-like
// keys are kept out of the str dictionary (block.ValueStringPlain, format 6) answer as the same
// traces in the head do: a request ID on 700 spans (taken for an ID from its 128th row on) and a
// user among 1500 (past 1000 distinct values in the block).
func TestPlainStringsSearch(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(61, 62))
	all := indexTraces(r, 300)
	var rids, users []string
	n := 0
	for _, rs := range all {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				n++
				if n <= 700 {
					rid := fmt.Sprintf("req-%016x", r.Uint64())
					rids = append(rids, rid)
					s.Attributes = append(s.Attributes, strKV("rid", rid))
				}
				user := fmt.Sprint("u", r.IntN(1500))
				users = append(users, user)
				s.Attributes = append(s.Attributes, strKV("user", user))
			}
		}
	}
	h := head.New()
	appendHead(t, h, all)
	store, err := objstore.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	br := writeBlock(t, store, all)
	plain := 0
	ac := br.Columns(block.FileSpanAttrs)
	for rg := range ac.RowGroups() {
		types, err := ac.Int32s(rg, "type", nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, typ := range types {
			if typ == block.ValueStringPlain || typ == block.ValueStringPlainNew {
				plain++
			}
		}
	}
	if plain < 1000 {
		t.Fatalf("%d plain strings in the block", plain)
	}
	heads, blocks := New(&benchSource{h: h}), New(&benchSource{h: head.New(), blocks: []*block.Reader{br}})
	queries := []string{
		fmt.Sprintf(`{ span.rid = %q }`, rids[len(rids)-1]),
		fmt.Sprintf(`{ .rid = %q }`, rids[300]),
		`{ span.rid = "req-none" }`,
		fmt.Sprintf(`{ span.user = %q }`, users[len(users)-1]),
		`{ span.user =~ "u1.*" && span.rid != nil }`,
		`{ span.user != "u3" && name = "render" }`,
	}
	for _, q := range queries {
		want, got := searchIDs(t, heads, q, 1000), searchIDs(t, blocks, q, 1000)
		if !slices.Equal(got, want) || len(want) == 0 && q != `{ span.rid = "req-none" }` {
			t.Errorf("%s: block finds %v, head %v", q, got, want)
		}
	}
	for _, tag := range []string{"span.rid", "span.http.method"} {
		want, err1 := heads.TagValues(ctx, TagValuesRequest{Tag: tag})
		got, err2 := blocks.TagValues(ctx, TagValuesRequest{Tag: tag})
		if err1 != nil || err2 != nil || fmt.Sprint(got) != fmt.Sprint(want) || len(want) == 0 {
			t.Errorf("tag values of %s: block %d (%v), head %d (%v)", tag, len(got), err2, len(want), err1)
		}
	}
	start := time0(all)
	q := `{ span.user =~ "u1.*" } | count_over_time() by (span.http.method)`
	if pq, _ := traceql.Parse(q); pq == nil {
		t.Fatalf("parse %s", q)
	}
	want, _ := metricsAnswer(t, heads, q, start, start.Add(time.Hour), time.Minute)
	got, _ := metricsAnswer(t, blocks, q, start, start.Add(time.Hour), time.Minute)
	if got != want || want == "" {
		t.Errorf("%s: block\n%s\nhead\n%s", q, got, want)
	}
}

func time0(rss []*tracepb.ResourceSpans) time.Time {
	lo := uint64(1<<63 - 1)
	for _, rs := range rss {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				lo = min(lo, s.StartTimeUnixNano)
			}
		}
	}
	return time.Unix(0, int64(lo)).Add(-time.Minute)
}
