package block

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// TestReadAllRewrite rewrites two blocks into one through ReadAll and checks that every trace
// reads back as it did, including one split across the two and the summary flags.
func TestReadAllRewrite(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	r := rand.New(rand.NewPCG(21, 22))
	var ids [][16]byte
	var blocks [2][]*tracepb.ResourceSpans
	for i := range 400 {
		id := traceID(r)
		ids = append(ids, id)
		blocks[i%2] = append(blocks[i%2], richTrace(r, id, 1+i%25)...)
	}
	split := traceID(r)
	ids = append(ids, split)
	whole := toTraces(t, richTrace(r, split, 30))[0]
	var metas []Meta
	for k, rss := range blocks {
		traces := toTraces(t, rss)
		half := len(whole.Spans) / 2
		part := Trace{ID: split, Spans: whole.Spans[:half], SampleRatio: 0.5}
		if k == 1 {
			part = Trace{ID: split, Spans: whole.Spans[half:], SampleRatio: 0.25, Truncated: true}
		}
		traces = append(traces, part)
		traces[0].SampleRatio, traces[0].Truncated = 0.1, true
		// Small pages and row groups so the batches cross page and row-group boundaries.
		m, err := Write(ctx, store, traces, WriteOptions{PageSize: 1024, RowGroupRows: 300})
		if err != nil {
			t.Fatal(err)
		}
		metas = append(metas, m)
	}
	var old []*Reader
	var all []Trace
	for _, m := range metas {
		br, err := Open(ctx, store, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		defer br.Close()
		old = append(old, br)
		n := 0
		if err := br.ReadAll(ctx, func(tr Trace) error { all = append(all, tr); n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if int64(n) != m.Traces {
			t.Fatalf("ReadAll gave %d traces, block has %d", n, m.Traces)
		}
	}
	m, err := Write(ctx, store, all, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Traces != int64(len(ids)) || m.Spans != metas[0].Spans+metas[1].Spans || m.Groups > metas[0].Groups+metas[1].Groups {
		t.Fatalf("merged meta %+v from %+v and %+v", m, metas[0], metas[1])
	}
	merged, err := Open(ctx, store, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer merged.Close()
	for _, id := range ids {
		var want []*tracepb.ResourceSpans
		for _, br := range old {
			part, err := br.FindTrace(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, part...)
		}
		got, err := merged.FindTrace(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		assertSameTrace(t, got, want)
	}
	sums := map[[16]byte]TraceSummary{}
	for _, br := range append(old, merged) {
		err := br.Traces(ctx, func(s *TraceSummary) bool {
			if br != merged {
				if prev, ok := sums[s.ID]; ok {
					s.SampleRatio = min(s.SampleRatio, prev.SampleRatio)
					s.Truncated = s.Truncated || prev.Truncated
				}
				sums[s.ID] = *s
				return true
			}
			want := sums[s.ID]
			if s.SampleRatio != want.SampleRatio || s.Truncated != want.Truncated {
				t.Errorf("trace %x: ratio %v truncated %v, want %v %v", s.ID, s.SampleRatio, s.Truncated, want.SampleRatio, want.Truncated)
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if s := sums[split]; s.SampleRatio != 0.25 || !s.Truncated {
		t.Fatalf("split trace summary %+v", s)
	}
}

func TestReadAllStops(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	r := rand.New(rand.NewPCG(23, 24))
	m, err := Write(ctx, store, smallTraces(t, r, 50, 1e18), WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	br, err := Open(ctx, store, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	stop := errors.New("stop")
	n := 0
	err = br.ReadAll(ctx, func(Trace) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("n=%d err=%v", n, err)
	}
	empty, err := Write(ctx, store, nil, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eb, err := Open(ctx, store, empty.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer eb.Close()
	if err := eb.ReadAll(ctx, func(Trace) error { t.Fatal("trace in empty block"); return nil }); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkReadAll reads back a block of 100k small spans per op.
func BenchmarkReadAll(b *testing.B) {
	ctx := context.Background()
	store := newStore(b)
	r := rand.New(rand.NewPCG(25, 26))
	m, err := Write(ctx, store, smallTraces(b, r, 10_000, 1_700_000_000_000_000_000), WriteOptions{})
	if err != nil {
		b.Fatal(err)
	}
	br, err := Open(ctx, store, m.ID)
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		if err := br.ReadAll(ctx, func(Trace) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	total := float64(m.Spans) * float64(b.N)
	b.ReportMetric(total/b.Elapsed().Seconds(), "spans/s")
	b.ReportMetric(total/(cpuTime()-cpu0).Seconds(), "spans/cpu-s")
}

// BenchmarkStreamRewrite rewrites 8 blocks of 100k small spans into one per op the way
// compaction does (block iterators in, StreamWriter out), and reports the peak heap in use
// during the rewrite above what was in use before it: it should stay flat however large the
// blocks, unlike holding the inputs decoded (about 170 bytes per span, 130 MiB here).
func BenchmarkStreamRewrite(b *testing.B) {
	ctx := context.Background()
	store := newStore(b)
	r := rand.New(rand.NewPCG(27, 28))
	var readers []*Reader
	var spans int64
	for range 8 {
		m, err := Write(ctx, store, smallTraces(b, r, 10_000, 1_700_000_000_000_000_000), WriteOptions{})
		if err != nil {
			b.Fatal(err)
		}
		br, err := Open(ctx, store, m.ID)
		if err != nil {
			b.Fatal(err)
		}
		defer br.Close()
		readers = append(readers, br)
		spans += m.Spans
	}
	scratch := b.TempDir()
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
	}()
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		// The inputs hold disjoint random IDs, so writing them in turn is not in ID order;
		// gather the first trace of each, as the k-way merge does, by a simple selection.
		its := make([]*Iter, len(readers))
		heads := make([]Trace, len(readers))
		live := make([]bool, len(readers))
		for i, br := range readers {
			its[i] = br.Iter()
			heads[i], live[i] = its[i].Next(ctx)
		}
		sw, err := NewStreamWriter(scratch, int(spans/10), WriteOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for {
			lo := -1
			for i := range heads {
				if live[i] && (lo < 0 || bytes.Compare(heads[i].ID[:], heads[lo].ID[:]) < 0) {
					lo = i
				}
			}
			if lo < 0 {
				break
			}
			if err := sw.Add(heads[lo]); err != nil {
				b.Fatal(err)
			}
			heads[lo], live[lo] = its[lo].Next(ctx)
		}
		m, err := sw.Finish(ctx, store)
		if err != nil {
			b.Fatal(err)
		}
		if m.Spans != spans {
			b.Fatalf("rewrote %d spans of %d", m.Spans, spans)
		}
		if err := Delete(ctx, store, m.ID); err != nil {
			b.Fatal(err)
		}
	}
	close(stop)
	<-sampled
	total := float64(spans) * float64(b.N)
	b.ReportMetric(total/b.Elapsed().Seconds(), "spans/s")
	b.ReportMetric(total/(cpuTime()-cpu0).Seconds(), "spans/cpu-s")
	// Above what the open inputs and the test's own data already hold.
	b.ReportMetric(float64(peak-min(peak, base.HeapInuse))/(1<<20), "peak-extra-heap-MiB")
}
