package head

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// aggTotals sums the head's aggregates by name.
func aggTotals(t *testing.T, h *Head) (map[string]int64, bool) {
	t.Helper()
	out := map[string]int64{}
	ok := h.Aggregates(func(c *AggCell) { out[c.Name] += c.Count })
	return out, ok
}

// Spans are counted as they arrive and taken out when their trace is released, whatever was
// cut in between; names past the cap make the aggregates incomplete until their traces go.
func TestAggregatesFollowAppendAndRelease(t *testing.T) {
	h := New()
	appendReq(t, h, span(1, 1, "GET"), span(1, 2, "db"), span(2, 1, "GET"))
	if got, ok := aggTotals(t, h); !ok || fmt.Sprint(got) != "map[GET:2 db:1]" {
		t.Fatalf("after append: %v %v", got, ok)
	}
	cut := h.Cut(CutPolicy{All: true})
	appendReq(t, h, span(1, 3, "db")) // a late span: a new live entry of trace 1
	if got, _ := aggTotals(t, h); fmt.Sprint(got) != "map[GET:2 db:2]" {
		t.Fatalf("after cut and a late span: %v", got)
	}
	h.Release(cut)
	h.Release(cut) // a second release of the same traces changes nothing
	if got, _ := aggTotals(t, h); fmt.Sprint(got) != "map[db:1]" {
		t.Fatalf("after release: %v", got)
	}
	h.Release(h.Cut(CutPolicy{All: true}))
	if got, ok := aggTotals(t, h); !ok || len(got) != 0 {
		t.Fatalf("empty head: %v %v", got, ok)
	}

	// Every trace byte lands in one stripe per 8 shards; trace 8 shares trace 0's stripe.
	for i := range maxAggNames {
		appendReq(t, h, span(0, byte(i), fmt.Sprintf("n%d", i)))
	}
	appendReq(t, h, span(8, 1, "one too many"))
	if _, ok := aggTotals(t, h); ok {
		t.Fatal("aggregates complete past the name cap")
	}
	h.Release(h.Cut(CutPolicy{All: true}))
	h.sweepAggregates()
	appendReq(t, h, span(8, 2, "again"))
	if got, ok := aggTotals(t, h); !ok || fmt.Sprint(got) != "map[again:1]" {
		t.Fatalf("after the overflow left: %v %v", got, ok)
	}
}

// The counters the flush loop reads every tick (live bytes, oldest WAL segment) follow appends
// in any segment order, cuts and releases as a walk over every trace would find them.
func TestLiveBytesAndMinSegmentKept(t *testing.T) {
	h := New()
	walk := func() (live int64, seq uint64, ok bool) {
		for i := range h.shards {
			sh := &h.shards[i]
			for _, tr := range sh.live {
				live += int64(len(tr.buf))
				if !ok || tr.firstSeq < seq {
					seq, ok = tr.firstSeq, true
				}
			}
			for _, ts := range sh.flushing {
				for _, tr := range ts {
					if !ok || tr.firstSeq < seq {
						seq, ok = tr.firstSeq, true
					}
				}
			}
		}
		return
	}
	check := func(step string) {
		t.Helper()
		live, seq, ok := walk()
		gotSeq, gotOK := h.MinSegment()
		if h.liveBytes() != live || gotSeq != seq || gotOK != ok {
			t.Fatalf("%s: live bytes %d, min segment %d %v; a walk finds %d, %d %v", step, h.liveBytes(), gotSeq, gotOK, live, seq, ok)
		}
	}
	add := func(seq uint64, tr, id byte) {
		b := mustMarshalReq(t, span(tr, id, "x"))
		a := h.Appender(seq)
		if err := otlpwire.ScanRequest(b, func(g *otlpwire.Group, s *otlpwire.Span) error { a.Append(g, s); return nil }); err != nil {
			t.Fatal(err)
		}
		a.Commit()
	}
	add(5, 1, 1)
	add(3, 2, 1)
	add(7, 1, 2)
	check("appends")
	cut := h.Cut(CutPolicy{All: true})
	add(9, 2, 2) // a late span of trace 2
	check("cut")
	h.Release(cut[:1])
	check("one released")
	h.Release(cut[1:])
	check("all released")
	h.Release(h.Cut(CutPolicy{All: true}))
	check("empty")
}

func mustMarshalReq(t *testing.T, spans ...*tracepb.Span) []byte {
	t.Helper()
	b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kvStr("service.name", "api")}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Whether spans were indexed as they came (a head being searched) or only once read (one that
// was not), readers see the same index and aggregates, and a release takes out exactly what
// was counted of a trace: nothing, part of it or all.
func TestLazyIndexReadsAsEager(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	lazy, eager := New(), New()
	lazy.now, eager.now = c.now, c.now
	eager.SpanNames() // a read: from now on its appends index as they go
	state := func(h *Head) string {
		// Values of released traces may linger until a sweep (the index may say more than the
		// head holds, never less): only the held trace's value is compared.
		names, _ := h.SpanNames()
		slices.Sort(names)
		vals := slices.Contains(h.SpanAttributeValues("method").Values, StringKey("PUT"))
		aggs, _ := aggTotals(t, h)
		var sigs []string
		h.EachSummary(func(s *Summary) { sigs = append(sigs, fmt.Sprintf("%x:%x", s.ID[0], s.Signature)) })
		slices.Sort(sigs)
		return fmt.Sprint(names, vals, aggs, sigs)
	}
	both := func(f func(h *Head)) { f(lazy); f(eager) }
	var cut [2][]*Trace
	both(func(h *Head) {
		appendReq(t, h, span(1, 1, "GET", kvStr("method", "GET")), span(2, 1, "db", kvInt("rows", 3)))
	})
	cut[0], cut[1] = lazy.Cut(CutPolicy{All: true}), eager.Cut(CutPolicy{All: true})
	both(func(h *Head) { appendReq(t, h, span(1, 2, "late", kvStr("method", "PUT")), span(3, 1, "GET")) })
	lazy.Release(cut[0]) // never indexed
	eager.Release(cut[1])
	if l, e := state(lazy), state(eager); l != e || !strings.Contains(l, "true map[GET:1 late:1]") {
		t.Fatalf("lazy head reads %s, eager head %s", l, e)
	}
	// Long unread, the lazy head stops indexing as it goes: trace 3 is then half indexed.
	c.t = c.t.Add(2 * eagerFor)
	appendReq(t, lazy, span(3, 2, "more"))
	lazy.Release(lazy.Cut(CutPolicy{All: true}))
	if got, ok := aggTotals(t, lazy); !ok || len(got) != 0 {
		t.Fatalf("empty head aggregates %v %v", got, ok)
	}
	if n := lazy.unindexed.Load(); n != 0 {
		t.Fatalf("empty head counts %d bytes not indexed", n)
	}
}
