package block

import (
	"context"
	"math/rand/v2"
	"testing"
)

// A scan with NoCacheFill reads the block whole and leaves the shared page cache as it was; the
// same scan without it keeps the integer pages it decoded, and a second scan reads them from
// the cache (its answer unchanged).
func TestScanWithoutCacheFill(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	r := rand.New(rand.NewPCG(7, 8))
	traces := make([]Trace, 0, 300)
	for i := range 300 {
		traces = append(traces, toTraces(t, richTrace(r, traceID(r), 1+i%20))...)
	}
	meta, err := Write(ctx, store, traces, WriteOptions{PageSize: 1024, RowGroupRows: 500})
	if err != nil {
		t.Fatal(err)
	}
	br, err := Open(ctx, store, meta.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	spans := func(opts ScanOptions) int {
		n := 0
		err := br.Scan(ctx, opts, func(b *ScanBatch) bool {
			n += len(b.Spans.Start)
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	cols := ScanColumns{AllSpanAttrs: true}
	before := PageCacheBytes()
	whole := spans(ScanOptions{Columns: cols, NoCacheFill: true})
	if got := PageCacheBytes(); got != before {
		t.Fatalf("a scan without cache fill changed the page cache from %d to %d bytes", before, got)
	}
	if n := spans(ScanOptions{Columns: cols}); n != whole {
		t.Fatalf("a scan filling the cache read %d spans, the other %d", n, whole)
	}
	filled := PageCacheBytes()
	if filled <= before {
		t.Fatalf("a scan filling the cache left it at %d bytes (before: %d)", filled, before)
	}
	if n := spans(ScanOptions{Columns: cols}); n != whole {
		t.Fatalf("a scan from the cache read %d spans, want %d", n, whole)
	}
	if got := PageCacheBytes(); got != filled {
		t.Fatalf("a scan of cached pages changed the cache from %d to %d bytes", filled, got)
	}
}
