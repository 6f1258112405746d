package block

import (
	"context"
	"encoding/hex"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// timedTraces makes n one-span traces starting at base + i ms, with random IDs.
func timedTraces(t *testing.T, r *rand.Rand, g *otlpwire.Group, base uint64, n int) []Trace {
	t.Helper()
	out := make([]Trace, n)
	for i := range out {
		out[i] = Trace{ID: traceID(r), Spans: []Span{timedSpan(t, r, g, base+uint64(i)*1e6)}}
	}
	return out
}

func timedSpan(t *testing.T, r *rand.Rand, g *otlpwire.Group, start uint64) Span {
	t.Helper()
	raw, err := proto.Marshal(&tracepb.Span{SpanId: randBytes(r, 8), Name: "op", StartTimeUnixNano: start, EndTimeUnixNano: start + 5e6})
	if err != nil {
		t.Fatal(err)
	}
	return Span{Group: g, Raw: raw}
}

// TestRunsKeepSplitTracesWhole merges blocks of different minutes into runs, with a trace whose
// two parts are in the first and the last block: unmarked in both (as after a crash), and with
// its later part marked split (as the head marks it). The parts stay in their runs, the block's
// Split list names the trace either way, and lookups by ID return both parts.
func TestRunsKeepSplitTracesWhole(t *testing.T) {
	for _, marked := range []bool{false, true} {
		ctx := context.Background()
		store := newStore(t)
		r := rand.New(rand.NewPCG(5, 18))
		g := &otlpwire.Group{}
		const minute = uint64(60e9)
		base := uint64(1_800_000_000) * 1e9
		split := traceID(r)
		var inputs []*Reader
		var all []Trace
		for k := range 3 {
			traces := timedTraces(t, r, g, base+uint64(k)*minute, 50)
			switch k {
			case 0:
				traces = append(traces, Trace{ID: split, Spans: []Span{timedSpan(t, r, g, base+1)}})
			case 2:
				traces = append(traces, Trace{ID: split, Spans: []Span{timedSpan(t, r, g, base+2*minute+1)}, Split: marked})
			}
			all = append(all, traces...)
			m, err := Write(ctx, store, traces, WriteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if m.Version != FormatVersion || len(m.Runs) != 0 {
				t.Fatalf("block from the head: format %d, %d runs", m.Version, len(m.Runs))
			}
			br, err := Open(ctx, store, m.ID)
			if err != nil {
				t.Fatal(err)
			}
			defer br.Close()
			inputs = append(inputs, br)
		}
		// Newest block first: runs still come out by time.
		slices.Reverse(inputs)
		sw, err := NewStreamWriter(filepath.Join(t.TempDir(), "scratch"), len(all), WriteOptions{Level: 1, RunTraces: 10})
		if err != nil {
			t.Fatal(err)
		}
		spans, err := MergeRuns(ctx, inputs, sw)
		if err != nil || spans != len(all) {
			t.Fatalf("merged %d spans of %d: %v", spans, len(all), err)
		}
		meta, err := sw.Finish(ctx, store)
		if err != nil {
			t.Fatal(err)
		}
		if len(meta.Runs) != 3 || meta.Traces != int64(len(all)) {
			t.Fatalf("merged: %d runs, %d traces", len(meta.Runs), meta.Traces)
		}
		// A run per minute; the split trace's parts in the first and the last.
		for i, run := range meta.Runs {
			lo := int64(base + uint64(i)*minute)
			if want := []int64{51, 50, 51}[i]; run.Traces != want || run.MinStart < lo || run.MaxStart >= lo+int64(minute) {
				t.Errorf("run %d: %+v, want %d traces in minute %d", i, run, want, i)
			}
		}
		if !slices.ContainsFunc(meta.Split, func(s SplitTrace) bool { return s.ID == hex.EncodeToString(split[:]) }) {
			t.Errorf("marked %v: split trace not listed: %+v", marked, meta.Split)
		}
		br, err := Open(ctx, store, meta.ID)
		if err != nil {
			t.Fatal(err)
		}
		defer br.Close()
		rs, err := br.FindTrace(ctx, split)
		if err != nil || len(rs) != 2 {
			t.Fatalf("split trace: %d parts, %v", len(rs), err)
		}
		parts := 0
		found, err := br.FindTraceEncoded(ctx, split, func(sp []Span) error { parts += len(sp); return nil })
		if !found || err != nil || parts != 2 {
			t.Fatalf("split trace encoded: %v, %d spans, %v", found, parts, err)
		}
		for _, tr := range all {
			has, err := br.HasTrace(tr.ID)
			if err != nil || !has {
				t.Fatalf("trace %x: %v, %v", tr.ID, has, err)
			}
		}
		// A scan of the last minute reads the last run only.
		var read int
		err = br.Scan(ctx, ScanOptions{MinStart: int64(base + 2*minute)}, func(b *ScanBatch) bool { read += len(b.Traces); return true })
		if err != nil || read != 51 {
			t.Fatalf("scan of the last minute: %d traces, %v", read, err)
		}
	}
}

// TestWriteInRuns writes a block from the head big enough for runs: they come in start order,
// each sorted by trace ID, every trace is found by ID and read back whole, and a trace given
// in two entries is merged into one.
func TestWriteInRuns(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	r := rand.New(rand.NewPCG(7, 18))
	g := &otlpwire.Group{}
	base := uint64(1_800_000_000) * 1e9
	traces := timedTraces(t, r, g, base, 95)
	// A second entry of one trace, earlier than its first: the trace starts then.
	twice := traces[50].ID
	traces = append(traces, Trace{ID: twice, Spans: []Span{timedSpan(t, r, g, base+2)}})
	r.Shuffle(len(traces), func(i, j int) { traces[i], traces[j] = traces[j], traces[i] })
	// The head gives the start; blocks from other writers leave it to the spans.
	for i := range traces[:40] {
		traces[i].Start, _ = traceStart(&traces[i])
	}
	m, err := Write(ctx, store, traces, WriteOptions{RunTraces: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Runs) != 9 || m.Traces != 95 {
		t.Fatalf("%d runs, %d traces", len(m.Runs), m.Traces)
	}
	br, err := Open(ctx, store, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	runs := br.Runs()
	for i, run := range runs {
		if i > 0 && run.MinStart < runs[i-1].MaxStart {
			t.Errorf("run %d %+v starts before run %d ends %+v", i, run, i-1, runs[i-1])
		}
	}
	it := br.Iter()
	var prev [16]byte
	row, spans := int64(0), 0
	for tr, ok := it.Next(ctx); ok; tr, ok = it.Next(ctx) {
		first := slices.ContainsFunc(runs, func(rr RunRange) bool { return rr.From == row })
		if !first && string(tr.ID[:]) <= string(prev[:]) {
			t.Fatalf("row %d: %x after %x within a run", row, tr.ID, prev)
		}
		prev, row, spans = tr.ID, row+1, spans+len(tr.Spans)
		if has, err := br.HasTrace(tr.ID); !has || err != nil {
			t.Fatalf("trace %x: %v, %v", tr.ID, has, err)
		}
	}
	if it.Err() != nil || row != 95 || spans != 96 {
		t.Fatalf("read %d traces, %d spans: %v", row, spans, it.Err())
	}
	// The trace of two entries is one, in the first run (it starts first).
	rs, err := br.FindTrace(ctx, twice)
	if err != nil || len(rs) != 1 || len(rs[0].ScopeSpans[0].Spans) != 2 {
		t.Fatalf("merged trace: %v, %v", rs, err)
	}
	var in bool
	err = br.Scan(ctx, ScanOptions{From: runs[0].From, To: runs[0].To}, func(b *ScanBatch) bool {
		in = in || slices.ContainsFunc(b.Traces, func(st ScanTrace) bool { return st.ID == twice })
		return true
	})
	if err != nil || !in {
		t.Fatalf("trace of two entries not in the first run: %v", err)
	}
}
