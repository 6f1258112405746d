package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/read/query"
	"github.com/ariadne-tracing/ariadne/internal/read/search"
	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/partial"
)

// manySpans appends traces first..first+n-1 (IDs by their first byte) of ten spans each.
func manySpans(t *testing.T, s *Store, first, n byte, svc string) {
	t.Helper()
	now := time.Now()
	for id := first; id < first+n; id++ {
		var spans []*tracepb.Span
		for k := byte(1); k <= 10; k++ {
			x := sp(id, k, k-1, now.Add(time.Duration(k)*time.Millisecond))
			x.Name = fmt.Sprintf("operation-%d-%d", id, k)
			spans = append(spans, x)
		}
		if err := s.Append(req(t, svc, spans...)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
}

// corruptMiddle overwrites bytes in the middle of a file, keeping its size and its footer, so
// that the block opens and the damage shows only when a page is read.
func corruptMiddle(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	mid := len(b) / 3
	for i := mid; i < mid+64 && i < len(b)-64; i++ {
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A page damaged in one block: searches and lookups answer from everything else and say they
// are partial, the block is quarantined, and compaction backs off instead of retrying it on
// every tick.
func TestDamagedPageAtQueryTime(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, func(o *Options) { o.CompactMinBlocks = -1 })
	manySpans(t, s, 1, 100, "damaged")
	manySpans(t, s, 101, 100, "sound")
	bad := s.Blocks()[0].Meta().ID
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	corruptMiddle(t, filepath.Join(dir, "blocks", bad, "spans.parquet"))

	s = open(t, dir, func(o *Options) { o.CompactMinBlocks, o.CompactFreshAge = 1, -1 })
	defer s.Close()
	if st := s.Stats(); st.Blocks != 2 || st.BlocksQuarantined != 0 {
		t.Fatalf("%d blocks, %d quarantined at open; the damage should only show on read", st.Blocks, st.BlocksQuarantined)
	}

	ctx, rep := partial.New(context.Background())
	q, err := traceql.Parse("{}")
	if err != nil {
		t.Fatal(err)
	}
	res, err := search.New(s).Search(ctx, search.Request{Query: q, Limit: 1000})
	if err != nil {
		t.Fatalf("search failed instead of answering without the damaged block: %v", err)
	}
	if !rep.Partial() {
		t.Fatal("search skipped a damaged block without saying the answer is partial")
	}
	sound := 0
	for _, tr := range res.Traces {
		if tr.ID[0] > 100 {
			sound++
		}
	}
	if sound != 100 {
		t.Fatalf("search found %d of the sound block's 100 traces", sound)
	}

	// Trace by ID: every trace of the sound block whole, and no error for the damaged one.
	for id := byte(1); id <= 200; id++ {
		ctx, rep := partial.New(context.Background())
		td, err := query.New(s).FindTrace(ctx, [16]byte(bytes.Repeat([]byte{id}, 16)), query.TimeRange{})
		if err != nil {
			t.Fatalf("trace %d: %v", id, err)
		}
		n := 0
		for _, rs := range td.GetResourceSpans() {
			for _, ss := range rs.ScopeSpans {
				n += len(ss.Spans)
			}
		}
		if id > 100 && n != 10 {
			t.Fatalf("trace %d of the sound block has %d spans", id, n)
		}
		if id <= 100 && n != 10 && !rep.Partial() {
			t.Fatalf("trace %d came back with %d spans and no partial mark", id, n)
		}
	}

	// Compaction would read the damaged block: it fails once, then waits.
	if err := s.compact(); err == nil {
		t.Fatal("compaction over a damaged block succeeded")
	}
	for range 100 {
		if err := s.compact(); err != nil {
			t.Fatalf("compaction retried at once: %v", err)
		}
	}
	if st := s.Stats(); st.CompactErrors != 1 {
		t.Fatalf("%d compaction attempts failed, want 1 (then back off)", st.CompactErrors)
	}

	// The loop's next tick takes the block out and moves it aside.
	s.quarantineDamaged()
	if st := s.Stats(); st.Blocks != 1 || st.BlocksQuarantined != 1 {
		t.Fatalf("%d blocks, %d quarantined after the damage was found", st.Blocks, st.BlocksQuarantined)
	}
	if _, err := os.Stat(filepath.Join(dir, "quarantine", "blocks", bad, "spans.parquet")); err != nil {
		t.Fatalf("quarantine does not hold the damaged block: %v", err)
	}
	ctx, rep = partial.New(context.Background())
	if _, err := search.New(s).Search(ctx, search.Request{Query: q, Limit: 1000}); err != nil || rep.Partial() {
		t.Fatalf("after quarantine: err %v, partial %v", err, rep.Reasons())
	}
}
