package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
)

func req(t testing.TB, service string, spans ...*tracepb.Span) []byte {
	t.Helper()
	b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name",
			Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: service}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sp(trace, id, parent byte, end time.Time) *tracepb.Span {
	s := &tracepb.Span{TraceId: bytes.Repeat([]byte{trace}, 16), SpanId: bytes.Repeat([]byte{id}, 8), Name: "op",
		StartTimeUnixNano: uint64(end.Add(-time.Millisecond).UnixNano()), EndTimeUnixNano: uint64(end.UnixNano())}
	if parent != 0 {
		s.ParentSpanId = bytes.Repeat([]byte{parent}, 8)
	}
	return s
}

func open(t testing.TB, dir string, mod func(*Options)) *Store {
	t.Helper()
	o := Options{Dir: dir, FlushInterval: time.Hour} // flushes only when the test says
	if mod != nil {
		mod(&o)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// spansOf counts a trace's spans across the head and every block, the way the querier sees them.
func spansOf(t *testing.T, s *Store, id byte) (head, blocks int) {
	t.Helper()
	tid := [16]byte(bytes.Repeat([]byte{id}, 16))
	for _, tr := range s.Head().Get(tid) {
		head += tr.SpanCount
	}
	for _, b := range s.Blocks() {
		rss, err := b.FindTrace(context.Background(), tid)
		if err != nil {
			t.Fatal(err)
		}
		for _, rs := range rss {
			for _, ss := range rs.ScopeSpans {
				blocks += len(ss.Spans)
			}
		}
	}
	return head, blocks
}

func TestTraceSplitAcrossBlocks(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	now := time.Now()
	if err := s.Append(req(t, "a", sp(1, 1, 0, now), sp(1, 2, 1, now))); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	// The rest of the trace arrives after its first part went to a block.
	if err := s.Append(req(t, "b", sp(1, 3, 2, now))); err != nil {
		t.Fatal(err)
	}
	if h, b := spansOf(t, s, 1); h != 1 || b != 2 {
		t.Fatalf("before second flush: head %d blocks %d", h, b)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Blocks()); n != 2 {
		t.Fatalf("%d blocks, want 2", n)
	}
	if h, b := spansOf(t, s, 1); h != 0 || b != 3 {
		t.Fatalf("after flush: head %d blocks %d", h, b)
	}
	s.Close()
	// After a clean close the WAL is trimmed: nothing is replayed, blocks hold everything.
	s = open(t, dir, nil)
	defer s.Close()
	if s.Stats().ReplayedSpans != 0 {
		t.Fatalf("replayed %d spans after a clean close", s.Stats().ReplayedSpans)
	}
	if h, b := spansOf(t, s, 1); h != 0 || b != 3 {
		t.Fatalf("after reopen: head %d blocks %d", h, b)
	}
}

func TestReplayAfterUncleanStop(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, nil)
	now := time.Now()
	if err := s.Append(req(t, "a", sp(2, 1, 0, now), sp(2, 2, 1, now))); err != nil {
		t.Fatal(err)
	}
	// No Close: the process "dies" with the spans only in the WAL.
	s.wal.Close()
	s2 := open(t, dir, nil)
	defer s2.Close()
	if s2.Stats().ReplayedSpans != 2 {
		t.Fatalf("replayed %d spans", s2.Stats().ReplayedSpans)
	}
	if h, _ := spansOf(t, s2, 2); h != 2 {
		t.Fatalf("head has %d spans after replay", h)
	}
}

func TestRetentionDeletesOldBlocks(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, func(o *Options) { o.Retention = 14 * 24 * time.Hour })
	defer s.Close()
	now := time.Now()
	// Block 1 holds spans from 15 days ago; it was written just now.
	if err := s.Append(req(t, "a", sp(3, 1, 0, now.Add(-15*24*time.Hour)))); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	// Old data sent now must stay readable for the retention period.
	if len(s.Blocks()) != 1 {
		t.Fatal("a block of old spans was deleted as soon as it was written")
	}
	// Block 2 holds spans that will still be recent when the clock moves on.
	if err := s.Append(req(t, "a", sp(4, 1, 0, now.Add(14*24*time.Hour)))); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return now.Add(14*24*time.Hour + time.Hour) }
	if err := s.Flush(); err != nil { // nothing to write; retention runs
		t.Fatal(err)
	}
	if len(s.Blocks()) != 1 {
		t.Fatalf("%d blocks after retention, want 1", len(s.Blocks()))
	}
	if _, b := spansOf(t, s, 3); b != 0 {
		t.Fatal("trace of the expired block still found")
	}
	if _, b := spansOf(t, s, 4); b != 1 {
		t.Fatal("recent trace lost")
	}
	metas, _ := block.List(context.Background(), s.objs)
	if len(metas) != 1 {
		t.Fatalf("%d blocks on disk, want 1", len(metas))
	}
	if s.Stats().BlocksDeleted != 1 {
		t.Fatalf("BlocksDeleted = %d", s.Stats().BlocksDeleted)
	}
}

func TestSamplingHookDropsTraces(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, func(o *Options) {
		o.Keep = func(tr *head.Trace) (bool, float64) { return tr.ErrorCount > 0, 1 }
	})
	defer s.Close()
	errSpan := sp(6, 1, 0, time.Now())
	errSpan.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}
	s.Append(req(t, "a", errSpan))
	s.Append(req(t, "a", sp(7, 1, 0, time.Now())))
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, b := spansOf(t, s, 6); b != 1 {
		t.Fatal("error trace not kept")
	}
	if h, b := spansOf(t, s, 7); h+b != 0 {
		t.Fatal("dropped trace still readable")
	}
	if s.Stats().TracesDropped != 1 {
		t.Fatalf("TracesDropped = %d", s.Stats().TracesDropped)
	}
	// Neither kept nor dropped traces keep their WAL segment alive once flushed: the next
	// append starts a new segment and the next flush deletes the old one.
	first, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	s.Append(req(t, "a", sp(8, 1, 0, time.Now())))
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, seg := range first {
		if _, err := os.Stat(seg); err == nil {
			t.Errorf("segment %s kept after everything in it was flushed or dropped", seg)
		}
	}
}

// TestSplitTracesAreMarked checks that a trace whose spans arrive after an earlier part went to a
// block is marked split in its own block, and that compaction keeps the mark.
func TestSplitTracesAreMarked(t *testing.T) {
	s := open(t, t.TempDir(), func(o *Options) { o.CompactMinBlocks = 1; o.CompactFreshAge = -1; o.CompactTargetBytes = 1 << 30 })
	defer s.Close()
	now := time.Now()
	splitIn := func(m block.Meta) map[byte]bool {
		out := map[byte]bool{}
		for _, st := range m.Split {
			out[st.ID[0]-'0'] = true // IDs are 0x11…, 0x22…: the first hex digit names the trace
		}
		return out
	}
	if err := s.Append(req(t, "a", sp(0x11, 1, 0, now), sp(0x22, 2, 0, now))); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := splitIn(s.Blocks()[0].Meta()); len(got) != 0 {
		t.Fatalf("first block lists split traces %v", got)
	}
	// Late spans of trace 1 after its first part is in a block; trace 3 is new.
	if err := s.Append(req(t, "a", sp(0x11, 3, 1, now), sp(0x33, 4, 0, now))); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := splitIn(s.Blocks()[1].Meta()); !got[1] || len(got) != 1 {
		t.Fatalf("second block lists split traces %v, want trace 1 only", got)
	}
	if err := s.compact(); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Blocks()); n != 1 {
		t.Fatalf("%d blocks after compaction, want 1", n)
	}
	if got := splitIn(s.Blocks()[0].Meta()); !got[1] {
		t.Fatalf("compacted block lists split traces %v, want trace 1", got)
	}
}

// An append between its WAL write and the head while the flush loop trims the WAL: the trim
// neither waits for it (nor do other appends and flushes) nor deletes the segment it wrote to,
// so a crash right after it is acknowledged replays it.
func TestTrimKeepsSegmentsOfAppendsInFlight(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, func(o *Options) { o.CompactMinBlocks = -1 })
	var hold atomic.Bool
	reached, release := make(chan struct{}), make(chan struct{})
	s.afterWALWrite = func() {
		if hold.CompareAndSwap(true, false) {
			close(reached)
			<-release
		}
	}
	now := time.Now()
	hold.Store(true)
	appended := make(chan error, 1)
	go func() { appended <- s.Append(req(t, "a", sp(1, 1, 0, now), sp(1, 2, 1, now))) }()
	<-reached
	inFlight := s.wal.ActiveSegment()

	// Meanwhile another export lands in the next segment (the flush rolled the WAL), and a
	// flush writes it to a block and trims. Neither waits for the append in flight.
	others := make(chan error, 1)
	go func() {
		err := s.Flush()
		if err == nil {
			err = s.Append(req(t, "b", sp(2, 1, 0, now)))
		}
		if err == nil {
			err = s.Flush()
		}
		others <- err
	}()
	select {
	case err := <-others:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		close(release)
		t.Fatal("flushing and appending waited for an append in flight")
	}
	if s.wal.ActiveSegment() == inFlight {
		t.Fatal("the WAL did not move to a new segment; the test checks nothing")
	}
	if _, err := os.Stat(filepath.Join(dir, "wal", fmt.Sprintf("%016d.wal", inFlight))); err != nil {
		ents, _ := os.ReadDir(filepath.Join(dir, "wal"))
		t.Fatalf("the segment of the append in flight was trimmed (%v); the WAL holds %v", err, ents)
	}
	close(release)
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
	// The process dies with trace 1 acknowledged, in the head and the WAL only.
	s.wal.Close()
	s2 := open(t, dir, func(o *Options) { o.CompactMinBlocks = -1 })
	defer s2.Close()
	if h, _ := spansOf(t, s2, 1); h != 2 {
		t.Fatalf("after the crash trace 1 has %d spans in the head, want 2 (replayed %d)", h, s2.Stats().ReplayedSpans)
	}
	if _, b := spansOf(t, s2, 2); b != 1 {
		t.Fatalf("trace 2 has %d spans in blocks, want 1", b)
	}
}
