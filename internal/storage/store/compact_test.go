package store

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/read/query"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
)

// writeSmallBlocks makes six blocks: each holds a trace of its own (IDs 10 to 15), a span of
// trace 1 (split over all six, service by block) and, in blocks 0 and 3, a span of trace 2.
// It returns the span IDs each trace should have.
func writeSmallBlocks(t *testing.T, s *Store) map[byte][]byte {
	t.Helper()
	now := time.Now()
	want := map[byte][]byte{}
	for k := range byte(6) {
		svc := string(rune('a' + k))
		spans := []*tracepb.Span{sp(1, 1+k, 0, now), sp(10+k, 1, 0, now), sp(10+k, 2, 1, now)}
		want[1] = append(want[1], 1+k)
		want[10+k] = []byte{1, 2}
		if k%3 == 0 {
			spans = append(spans, sp(2, 1+k, 0, now))
			want[2] = append(want[2], 1+k)
		}
		if err := s.Append(req(t, svc, spans...)); err != nil {
			t.Fatal(err)
		}
		if k == 2 {
			s.MarkTruncated([16]byte(bytes.Repeat([]byte{1}, 16)))
		}
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	return want
}

// assertWhole checks every trace through the querier and that the blocks hold no span twice.
func assertWhole(t *testing.T, s *Store, want map[byte][]byte) {
	t.Helper()
	q := query.New(s)
	for id, spanIDs := range want {
		td, err := q.FindTrace(context.Background(), [16]byte(bytes.Repeat([]byte{id}, 16)), query.TimeRange{})
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		for _, rs := range td.GetResourceSpans() {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					got = append(got, sp.SpanId[0])
				}
			}
		}
		slices.Sort(got)
		if !bytes.Equal(got, spanIDs) {
			t.Errorf("trace %d: spans %v, want %v", id, got, spanIDs)
		}
		if h, b := spansOf(t, s, id); h != 0 || b != len(spanIDs) {
			t.Errorf("trace %d: head %d blocks %d, want %d in blocks", id, h, b, len(spanIDs))
		}
	}
}

func blockIDs(s *Store) []string {
	var ids []string
	for _, r := range s.Blocks() {
		ids = append(ids, r.Meta().ID)
	}
	return ids
}

// closeWindows moves the store's clock past the end of every block's compaction window.
func closeWindows(s *Store) {
	later := time.Now().Add(s.opts.CompactWindow + 2*compactWindowGrace)
	s.now = func() time.Time { return later }
}

func TestCompaction(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, func(o *Options) { o.CompactMinBlocks, o.CompactFreshAge = 4, -1 })
	want := writeSmallBlocks(t, s)
	old := blockIDs(s)
	if len(old) != 6 {
		t.Fatalf("%d blocks, want 6", len(old))
	}
	// In the open window, four blocks of level 0 make a tier: one merge, two blocks stay.
	if err := s.compact(); err != nil {
		t.Fatal(err)
	}
	if n := len(blockIDs(s)); n != 3 || s.Stats().Compactions != 1 {
		t.Fatalf("%d blocks after the open window's merge, want 3; stats %+v", n, s.Stats())
	}
	assertWhole(t, s, want)
	// Once the window closes, its blocks become one.
	closeWindows(s)
	if err := s.compact(); err != nil {
		t.Fatal(err)
	}
	ids := blockIDs(s)
	if len(ids) != 1 {
		t.Fatalf("%d blocks after compaction, want 1", len(ids))
	}
	if st := s.Stats(); st.Compactions != 2 || st.BlocksCompacted != 7 || st.LastCompactError != "" {
		t.Fatalf("stats %+v", st)
	}
	assertWhole(t, s, want)
	for _, id := range old {
		if _, err := os.Stat(filepath.Join(dir, "blocks", id)); !os.IsNotExist(err) {
			t.Errorf("block %s still on disk: %v", id, err)
		}
	}
	// Summaries survive: trace 1 was marked truncated in one of its parts.
	err := s.Blocks()[0].Traces(context.Background(), func(ts *block.TraceSummary) bool {
		if ts.ID[0] == 1 && !ts.Truncated {
			t.Errorf("trace 1 lost its truncated mark")
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing left to merge.
	if err := s.compact(); err != nil || s.Stats().Compactions != 2 {
		t.Fatalf("second compaction: %v, stats %+v", err, s.Stats())
	}
	s.Close()

	s = open(t, dir, nil)
	defer s.Close()
	if got := blockIDs(s); !slices.Equal(got, ids) {
		t.Fatalf("after restart blocks %v, want %v", got, ids)
	}
	assertWhole(t, s, want)
}

// TestCompactionAfterCrash leaves a merged block beside its inputs, as a crash between the
// write and the deletes would, and checks that the next compaction does not keep the
// duplicates.
func TestCompactionAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, func(o *Options) { o.CompactMinBlocks = -1 })
	want := writeSmallBlocks(t, s)
	blocks := s.Blocks()
	var traces []block.Trace
	if _, err := block.Merge(context.Background(), blocks[:4], func(t block.Trace) error {
		traces = append(traces, t)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	first := blocks[0].Meta()
	if _, err := block.Write(context.Background(), s.objs, traces, block.WriteOptions{ID: block.NewID(first.Created), Now: first.Created}); err != nil {
		t.Fatal(err)
	}
	if err := s.compact(); err != nil || s.Stats().Compactions != 0 {
		t.Fatalf("compaction ran while disabled: %v", err)
	}
	s.Close()

	s = open(t, dir, nil)
	defer s.Close()
	if n := len(s.Blocks()); n != 7 {
		t.Fatalf("%d blocks after the crash, want 7", n)
	}
	closeWindows(s)
	if err := s.compact(); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Blocks()); n != 1 {
		t.Fatalf("%d blocks after compaction, want 1", n)
	}
	assertWhole(t, s, want)
}

// TestCompactionFromLoop checks the flush loop runs the compactor.
func TestCompactionFromLoop(t *testing.T) {
	s := open(t, t.TempDir(), func(o *Options) { o.FlushInterval, o.CompactMinBlocks, o.CompactFreshAge = 10*time.Millisecond, 4, -1 })
	defer s.Close()
	want := writeSmallBlocks(t, s)
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Compactions == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no compaction from the loop: %+v", s.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	assertWhole(t, s, want)
}

// Fresh blocks wait: level-0 blocks younger than freshAge are not merged while no more than
// freshBlocks of them wait; the oldest beyond that count, or once old enough, merge as before.
func TestPlanFreshBlocksWait(t *testing.T) {
	p := compactPolicy{fanout: 4, maxBytes: 1 << 30, window: 24 * time.Hour, freshAge: 2 * time.Minute, freshBlocks: 6}
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var metas []block.Meta
	cut := func(n int, at time.Time) {
		for range n {
			at = at.Add(time.Second)
			metas = append(metas, block.Meta{ID: block.NewID(at), Created: at, Bytes: 1 << 20})
		}
	}
	cut(5, day.Add(time.Hour))
	now := day.Add(time.Hour + 10*time.Second)
	if run := planCompaction(metas, now, p); run != nil {
		t.Fatalf("5 fresh blocks, cap 6: merged %v", run)
	}
	if run := planCompaction(metas, now, compactPolicy{fanout: 4, maxBytes: 1 << 30, window: 24 * time.Hour}); len(run) != 4 {
		t.Fatalf("without waiting: run %v, want the oldest 4", run)
	}
	// Past the cap, the oldest beyond it become mergeable: 10 waiting, cap 6, so 4 may go.
	cut(5, day.Add(time.Hour+5*time.Second))
	if run := planCompaction(metas, now, p); !slices.Equal(run, []int{0, 1, 2, 3}) {
		t.Fatalf("10 fresh blocks, cap 6: run %v, want the oldest 4", run)
	}
	// Below the cap again, age alone decides: the oldest four are two minutes old at +2m7s.
	metas = metas[3:]
	if run := planCompaction(metas, now, p); run != nil {
		t.Fatalf("7 fresh blocks, cap 6, fanout 4: merged %v", run)
	}
	if run := planCompaction(metas, day.Add(time.Hour+2*time.Minute+7*time.Second), p); !slices.Equal(run, []int{0, 1, 2, 3}) {
		t.Fatalf("old enough: run %v, want the oldest 4", run)
	}
}
