package search

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
)

// TestRunsGiveFullScanAnswers merges two format 3 blocks (written by the code before runs,
// checked in under testdata/v3store) into one block of time-ordered runs (format 5), and asks
// the merged block, newest first and by a full scan, the searches the old blocks answer: the
// answers agree, a search for the newest traces reads fewer traces than a full scan, and every
// trace is found by ID with all its spans.
func TestRunsGiveFullScanAnswers(t *testing.T) {
	ctx := context.Background()
	old, err := objstore.NewLocal("testdata/v3store")
	if err != nil {
		t.Fatal(err)
	}
	metas, err := block.List(ctx, old)
	if err != nil || len(metas) != 2 {
		t.Fatalf("fixture: %+v, %v", metas, err)
	}
	var inputs []*block.Reader
	for _, m := range metas {
		if m.Version != 3 || len(m.Runs) != 0 {
			t.Fatalf("fixture block %s: format %d, %d runs", m.ID, m.Version, len(m.Runs))
		}
		r, err := block.Open(ctx, old, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		inputs = append(inputs, r)
	}
	store, err := objstore.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Format 3 blocks are one run each, which a merge keeps whole.
	if m := mergeRuns(t, store, inputs).Meta(); m.Version != block.FormatVersion || len(m.Runs) != 2 || m.Traces != metas[0].Traces+metas[1].Traces {
		t.Fatalf("merged format 3 blocks: format %d, %d runs, %d traces", m.Version, len(m.Runs), m.Traces)
	}
	// The same traces as ten blocks of a minute each (as the head flushes them), merged.
	var traces []block.Trace
	for _, in := range inputs {
		it := in.Iter()
		for tr, ok := it.Next(ctx); ok; tr, ok = it.Next(ctx) {
			traces = append(traces, tr)
		}
		if it.Err() != nil {
			t.Fatal(it.Err())
		}
	}
	slices.SortFunc(traces, func(a, b block.Trace) int { return cmp.Compare(traceStart(t, a), traceStart(t, b)) })
	var small []*block.Reader
	for i := range 10 {
		part := traces[i*len(traces)/10 : (i+1)*len(traces)/10]
		m, err := block.Write(ctx, store, part, block.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := block.Open(ctx, store, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		small = append(small, r)
	}
	merged := mergeRuns(t, store, small)
	if m := merged.Meta(); len(m.Runs) != 10 || m.Traces != int64(len(traces)) {
		t.Fatalf("merged: %d runs, %d traces", len(m.Runs), m.Traces)
	}
	// The fixture's traces start in order over ten minutes, so the runs do too.
	runs := merged.Runs()
	for i := 1; i < len(runs); i++ {
		if runs[i].MinStart < runs[i-1].MinStart || runs[i].From != runs[i-1].To {
			t.Errorf("run %d %+v after %+v", i, runs[i], runs[i-1])
		}
	}

	before, after := New(&benchSource{h: head.New(), blocks: inputs}), &benchSource{h: head.New(), blocks: []*block.Reader{merged}}
	before.fullScan = true
	fast, full := New(after), New(after)
	full.fullScan = true
	// The fixture was written ten minutes before its test ran: a window around its middle.
	lo, hi := metas[0].MinStart, metas[0].MaxEnd
	for _, m := range metas[1:] {
		lo, hi = min(lo, m.MinStart), max(hi, m.MaxEnd)
	}
	mid := time.Unix(0, lo+(hi-lo)/2)
	for _, q := range indexQueries {
		pq, err := traceql.Parse(q)
		if err != nil {
			t.Fatal(err)
		}
		for _, limit := range []int{1, 5, 20, 300, 1000} {
			for _, end := range []time.Time{{}, mid} {
				req := Request{Query: pq, Limit: limit, End: end}
				want, err0 := before.Search(ctx, req)
				got, err1 := fast.Search(ctx, req)
				scan, err2 := full.Search(ctx, req)
				if err := cmpErr(err0, err1, err2); err != nil {
					t.Fatal(err)
				}
				w, g, s := fmt.Sprint(ids(want)), fmt.Sprint(ids(got)), fmt.Sprint(ids(scan))
				if g != w || s != w {
					t.Errorf("%s limit %d end %v:\nformat 3   %s\nruns       %s\nfull scan  %s", q, limit, end, w, g, s)
				}
				if limit <= 20 && len(want.Traces) == limit && got.Metrics.InspectedTraces*2 > scan.Metrics.InspectedTraces {
					t.Errorf("%s limit %d: newest runs inspected %d traces, a full scan %d", q, limit, got.Metrics.InspectedTraces, scan.Metrics.InspectedTraces)
				}
			}
		}
	}

	// Every trace by ID, whole.
	for _, in := range inputs {
		it := in.Iter()
		n := 0
		for tr, ok := it.Next(ctx); ok; tr, ok = it.Next(ctx) {
			n++
			rs, err := merged.FindTrace(ctx, tr.ID)
			if err != nil {
				t.Fatal(err)
			}
			spans := 0
			for _, r := range rs {
				for _, ss := range r.ScopeSpans {
					spans += len(ss.Spans)
				}
			}
			has, err := merged.HasTrace(tr.ID)
			if spans != len(tr.Spans) || !has || err != nil {
				t.Fatalf("trace %x: %d spans of %d, has %v, %v", tr.ID, spans, len(tr.Spans), has, err)
			}
		}
		if it.Err() != nil || n != int(in.Meta().Traces) {
			t.Fatalf("input %s: %d traces, %v", in.Meta().ID, n, it.Err())
		}
	}
	absent := [16]byte{0xde, 0xad}
	if has, err := merged.HasTrace(absent); has || err != nil {
		t.Errorf("absent trace: %v, %v", has, err)
	}
	if rs, err := merged.FindTrace(ctx, absent); len(rs) != 0 || err != nil {
		t.Errorf("absent trace: %d, %v", len(rs), err)
	}
}

// mergeRuns merges inputs as compaction does, with runs of at least 40 traces.
func mergeRuns(t *testing.T, store objstore.Store, inputs []*block.Reader) *block.Reader {
	t.Helper()
	ctx := context.Background()
	sw, err := block.NewStreamWriter(filepath.Join(t.TempDir(), "scratch"), 600, block.WriteOptions{Level: 1, RunTraces: 40})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := block.MergeRuns(ctx, inputs, sw); err != nil {
		t.Fatal(err)
	}
	meta, err := sw.Finish(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	r, err := block.Open(ctx, store, meta.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// traceStart is the earliest start of a trace's spans.
func traceStart(t *testing.T, tr block.Trace) uint64 {
	t.Helper()
	var start uint64
	for i, sp := range tr.Spans {
		var s tracepb.Span
		if err := proto.Unmarshal(sp.Raw, &s); err != nil {
			t.Fatal(err)
		}
		if i == 0 || s.StartTimeUnixNano < start {
			start = s.StartTimeUnixNano
		}
	}
	return start
}

func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
