package head

import (
	"fmt"
	"testing"
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
