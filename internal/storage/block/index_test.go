package block

import "testing"

// TestIndexCoarsens drives the aggregates past maxAggBuckets, so buckets merge into a wider
// width while the per-combo bucket cache points at accumulators that merge away: every span
// must still be counted once, in the bucket of its start at the final width.
func TestIndexCoarsens(t *testing.T) {
	var x indexBuilder
	x.reset()
	const spans = maxAggBuckets + 5000
	want := map[bucketKey]uint64{}
	for i := range spans {
		start := uint64(1_700_000_000e9) + uint64(i)*1e9 + 1
		x.addSpan(int32(i%2), []byte("op"), 0, 2, start, start+5e6)
	}
	if x.width == aggWidths[0] {
		t.Fatalf("width still %ds after %d distinct seconds", x.width, spans)
	}
	for i := range spans {
		start := int64(1_700_000_000e9) + int64(i)*1e9 + 1
		ci := x.combos[comboKey{int32(i % 2), x.names["op"], 0, 2}]
		want[bucketKey{ci, bucketOf(start, x.width)}]++
	}
	if len(x.buckets) != len(want) {
		t.Fatalf("%d buckets, want %d", len(x.buckets), len(want))
	}
	for k, n := range want {
		if a := x.buckets[k]; a == nil || a.count != n || a.sketch.Count() != n {
			t.Fatalf("bucket %v: %+v, want count %d", k, a, n)
		}
	}
}
