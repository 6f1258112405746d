package search

import (
	"math/rand/v2"
	"testing"

	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// TestSpanTestsAgreeWithEval checks the wire test of a span against the engine's evaluation of
// the same filter on the decoded span, over spans of every attribute type: where the test keeps
// every condition it must agree exactly, and it may never rule out a span that matches.
func TestSpanTestsAgreeWithEval(t *testing.T) {
	h := head.New()
	appendHead(t, h, indexTraces(rand.New(rand.NewPCG(3, 4)), 300))
	traces := h.Cut(head.CutPolicy{All: true})
	for _, q := range []string{
		`{ span.task.count = 7 && name = "render" }`,
		`{ span.task.count != 7 }`,
		`{ span.task.count >= 10 && span.task.count < 12 }`,
		`{ span.task.count = 7.0 }`,
		`{ span.tags != "red" }`,
		`{ span.tags = 2 && name != "query" }`,
		`{ span.tags !~ "r.*" }`,
		`{ span.http.method =~ "P.*" && duration > 20ms }`,
		`{ span.ratio > 0.4 && span.cached = true }`,
		`{ span.cached != false }`,
		`{ status = unset && kind = unspecified && duration <= 10ms }`,
		`{ span.nope = 1 }`,
		// Not all on the wire: resource conditions are dropped from the test.
		`{ resource.service.name = "api" && name = "render" }`,
	} {
		pq, err := traceql.Parse(q)
		if err != nil {
			t.Fatal(err)
		}
		f := pq.Stages[0].(*traceql.SpansetFilter)
		tests := spanTestsOf(f)
		conds, _ := f.Conditions()
		if len(tests) != 1 {
			t.Fatalf("%s: %d span tests, want 1", q, len(tests))
		}
		exact := len(tests[0].conds) == len(conds)
		cols := allWire()
		matched := 0
		for _, ht := range traces {
			ht.Spans(func(g *otlpwire.Group, raw []byte) {
				var arena []attr
				ws, err := decodeWireSpan(raw, cols, &arena)
				if err != nil {
					t.Fatal(err)
				}
				res, err := decodeResource(g.Resource, g.Scope)
				if err != nil {
					t.Fatal(err)
				}
				ws.s.res = res
				tr := &trace{spans: []span{ws.s}}
				v := evalField(f.Cond, tr, &tr.spans[0])
				want := v.k == kBool && v.b
				got := tests[0].wireSpanPasses(raw)
				if want {
					matched++
				}
				if (want && !got) || (exact && got != want) {
					t.Errorf("%s: wire test %v, evaluation %v, on span %q %v", q, got, want, ws.s.name, ws.s.attrs)
				}
			})
		}
		if q != `{ span.nope = 1 }` && matched == 0 {
			t.Errorf("%s matches no span: the data set does not test it", q)
		}
	}
}
