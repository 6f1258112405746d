package block

import (
	"context"
	"math/rand/v2"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// A probe answers as MayContain does, for IDs in the block (always yes) and for absent ones
// (the same false positives), so the split check that uses it finds the same traces.
func TestProbeAnswersAsMayContain(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	r := rand.New(rand.NewPCG(7, 8))
	var rss []*tracepb.ResourceSpans
	var in [][16]byte
	for range 300 {
		id := traceID(r)
		in = append(in, id)
		rss = append(rss, richTrace(r, id, 2)...)
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
	for _, id := range in {
		if !br.MayContainProbe(NewProbe(id)) {
			t.Fatalf("probe says trace %x, written to the block, is not there", id)
		}
	}
	positives := 0
	for range 200_000 {
		id := traceID(r)
		got, want := br.MayContainProbe(NewProbe(id)), br.MayContain(id)
		if got != want {
			t.Fatalf("trace %x: probe %v, MayContain %v", id, got, want)
		}
		if got {
			positives++
		}
	}
	if positives == 0 {
		t.Fatal("no false positive in 200,000 absent IDs: the comparison tested nothing past the ID range")
	}
}
