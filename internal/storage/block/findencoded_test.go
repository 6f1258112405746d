package block

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// wireToResourceSpans decodes encoded spans with their groups: one ResourceSpans per resource,
// one ScopeSpans per group.
func wireToResourceSpans(t *testing.T, spans []Span) []*tracepb.ResourceSpans {
	t.Helper()
	var out []*tracepb.ResourceSpans
	byRes := map[string]*tracepb.ResourceSpans{}
	byGroup := map[*otlpwire.Group]*tracepb.ScopeSpans{}
	for _, sp := range spans {
		g := sp.Group
		ss := byGroup[g]
		if ss == nil {
			key := fmt.Sprintf("%v|%q|%q", g.Resource == nil, g.Resource, g.ResourceSchemaURL)
			rs := byRes[key]
			if rs == nil {
				rs = &tracepb.ResourceSpans{SchemaUrl: string(g.ResourceSchemaURL)}
				if g.Resource != nil {
					rs.Resource = &resourcepb.Resource{}
					if err := otlpwire.Unmarshal(g.Resource, rs.Resource); err != nil {
						t.Fatal(err)
					}
				}
				byRes[key] = rs
				out = append(out, rs)
			}
			ss = &tracepb.ScopeSpans{SchemaUrl: string(g.ScopeSchemaURL)}
			if g.Scope != nil {
				ss.Scope = &commonpb.InstrumentationScope{}
				if err := otlpwire.Unmarshal(g.Scope, ss.Scope); err != nil {
					t.Fatal(err)
				}
			}
			byGroup[g] = ss
			rs.ScopeSpans = append(rs.ScopeSpans, ss)
		}
		s := &tracepb.Span{}
		if err := otlpwire.Unmarshal(sp.Raw, s); err != nil {
			t.Fatal(err)
		}
		ss.Spans = append(ss.Spans, s)
	}
	return out
}

// A trace of several chunks comes back from FindTraceEncoded chunk by chunk, equal to what
// FindTrace rebuilds: parents that point into earlier chunks, attributes, events and links (and
// theirs) cut at the right rows, across pages and row groups.
func TestFindTraceEncodedChunks(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	r := rand.New(rand.NewPCG(31, 32))
	var rss []*tracepb.ResourceSpans
	var ids [][16]byte
	for i := range 5 {
		id := traceID(r)
		ids = append(ids, id)
		n := 1 + i*7
		if i == 2 {
			n = 2*encodedChunk + 123
		}
		rss = append(rss, richTrace(r, id, n)...)
	}
	m, err := Write(ctx, store, toTraces(t, rss), WriteOptions{PageSize: 4096, RowGroupRows: 3000})
	if err != nil {
		t.Fatal(err)
	}
	br, err := Open(ctx, store, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	for i, id := range ids {
		var got []Span
		chunks := 0
		found, err := br.FindTraceEncoded(ctx, id, func(spans []Span) error {
			if len(spans) > encodedChunk {
				t.Errorf("chunk of %d spans", len(spans))
			}
			chunks++
			got = append(got, spans...)
			return nil
		})
		if err != nil || !found {
			t.Fatalf("trace %d: found %v, err %v", i, found, err)
		}
		if i == 2 && chunks != 3 {
			t.Fatalf("large trace read in %d chunks, want 3", chunks)
		}
		want, err := br.FindTrace(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		assertSameTrace(t, wireToResourceSpans(t, got), want)
	}

	found, err := br.FindTraceEncoded(ctx, traceID(r), func([]Span) error { t.Fatal("spans of an absent trace"); return nil })
	if found || err != nil {
		t.Fatalf("absent trace: found %v, err %v", found, err)
	}
	// An error from fn stops the read; so does a context that ends between chunks.
	stop := errors.New("stop")
	n := 0
	if _, err := br.FindTraceEncoded(ctx, ids[2], func([]Span) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("fn error: %d chunks, err %v", n, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	n = 0
	_, err = br.FindTraceEncoded(cctx, ids[2], func([]Span) error { n++; cancel(); return nil })
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Fatalf("cancelled: %d chunks, err %v", n, err)
	}
}
