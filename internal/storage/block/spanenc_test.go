package block

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// The hand-written span encoder (otlpwire.AppendSpan) writes exactly proto's deterministic
// bytes for every span a block of rich traces reads back as, and encodeSpan hands them out of
// its arena: compaction drops a span stored twice by comparing bytes, and readers decode them
// with proto. Values the reader never builds are otlpwire's TestAppendSpanIsProtos.
func TestSpanEncodingIsProtos(t *testing.T) {
	same := func(what string, s *tracepb.Span) {
		t.Helper()
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		n, err := otlpwire.SpanSize(s)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		got := otlpwire.AppendSpan([]byte("prefix"), s)
		if n != len(want) || !bytes.Equal(got[len("prefix"):], want) {
			t.Fatalf("%s: encoded %d bytes (size said %d), proto %d:\n got %x\nwant %x", what, len(got)-len("prefix"), n, len(want), got[len("prefix"):], want)
		}
		var arena []byte
		raw, err := encodeSpan(&arena, s)
		if err != nil || !bytes.Equal(raw, want) {
			t.Fatalf("%s: encodeSpan: %v", what, err)
		}
	}
	ctx := context.Background()
	store := newStore(t)
	r := rand.New(rand.NewPCG(9, 10))
	var rss []*tracepb.ResourceSpans
	for range 40 {
		rss = append(rss, richTrace(r, traceID(r), 12)...)
	}
	meta, err := Write(ctx, store, toTraces(t, rss), WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	br, err := Open(ctx, store, meta.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	spans := 0
	if err := br.ReadAll(ctx, func(tr Trace) error {
		for _, sp := range tr.Spans {
			var s tracepb.Span
			if err := proto.Unmarshal(sp.Raw, &s); err != nil {
				return err
			}
			same("read back", &s)
			spans++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if spans != int(meta.Spans) {
		t.Fatalf("read %d spans of %d", spans, meta.Spans)
	}
	for _, rs := range rss {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				same("as written", s)
			}
		}
	}
}
