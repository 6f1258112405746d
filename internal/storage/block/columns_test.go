package block

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// TestColumnsMatchScan reads a block's span and attribute columns whole and checks every row
// against Scan, over small pages and row groups, with a string column that outgrows its
// dictionary so that row groups end in plain pages, and a key of distinct values that the
// writer keeps out of the dictionary (ValueStringPlain) from its 128th row on.
func TestColumnsMatchScan(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	r := rand.New(rand.NewPCG(31, 32))
	var rss []*tracepb.ResourceSpans
	for i := range 100 {
		trace := richTrace(r, traceID(r), 1+i%9)
		for _, rs := range trace {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					// 8 KiB distinct values: a few hundred rows fill a 256 KiB dictionary.
					s.Attributes = append(s.Attributes, kv("big", str(fmt.Sprint(r.Uint64())+strings.Repeat("x", 8192))))
				}
			}
		}
		rss = append(rss, trace...)
	}
	meta, err := Write(ctx, store, toTraces(t, rss), WriteOptions{PageSize: 1024, RowGroupRows: 700})
	if err != nil {
		t.Fatal(err)
	}
	br, err := Open(ctx, store, meta.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	type spanRow struct {
		name             string
		dur              int64
		kind, status, gr int32
	}
	type attrRow struct {
		owner int64
		key   string
		typ   int32
		val   string
	}
	var wantSpans []spanRow
	var wantAttrs []attrRow
	spanBase := 0
	err = br.Scan(ctx, ScanOptions{Columns: ScanColumns{Name: true, Kind: true, Status: true, AllSpanAttrs: true}}, func(b *ScanBatch) bool {
		for i := range b.Spans.Start {
			wantSpans = append(wantSpans, spanRow{b.Spans.Name[i], b.Spans.Duration[i], b.Spans.Kind[i], b.Spans.StatusCode[i], b.Spans.Group[i]})
		}
		a := &b.Attrs
		for i := range a.Owner {
			val := fmt.Sprint(a.Str[i], a.Int[i], a.Double[i], a.Bool[i])
			if a.Type[i] == ValueRaw {
				val = string(a.Raw[i])
			}
			wantAttrs = append(wantAttrs, attrRow{int64(spanBase) + int64(a.Owner[i]), a.Key[i], a.Type[i], val})
		}
		spanBase += len(b.Spans.Start)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}

	var gotSpans []spanRow
	sc := br.Columns(FileSpans)
	for rg := range sc.RowGroups() {
		names := &StringColumn{}
		err1 := sc.Strings(rg, "name", names)
		durs, err2 := sc.Int64s(rg, "duration_nano", nil)
		kinds, err3 := sc.Int32s(rg, "kind", nil)
		status, err4 := sc.Int64s(rg, "status", nil)
		groups, err5 := sc.Int32s(rg, "group", nil)
		for _, err := range []error{err1, err2, err3, err4, err5} {
			if err != nil {
				t.Fatal(err)
			}
		}
		for i := range durs {
			gotSpans = append(gotSpans, spanRow{names.String(names.Index[i]), durs[i], kinds[i], StatusCode(status[i]), groups[i]})
		}
	}
	if fmt.Sprint(gotSpans) != fmt.Sprint(wantSpans) {
		t.Fatalf("span columns differ from Scan: %d rows, want %d", len(gotSpans), len(wantSpans))
	}

	var gotAttrs []attrRow
	ac := br.Columns(FileSpanAttrs)
	plain, kept := false, 0
	for rg := range ac.RowGroups() {
		keys, strs, raws := &StringColumn{}, &StringColumn{}, &StringColumn{}
		owner, err1 := ac.Int64s(rg, "owner", nil)
		err2 := ac.Strings(rg, "key", keys)
		types, err3 := ac.Int32s(rg, "type", nil)
		err4 := ac.Strings(rg, "str", strs)
		ints, err5 := ac.Int64s(rg, "int", nil)
		dbls, err6 := ac.Doubles(rg, "double", nil)
		bools, err7 := ac.Bools(rg, "bool", nil)
		err8 := ac.Strings(rg, "raw", raws)
		for _, err := range []error{err1, err2, err3, err4, err5, err6, err7, err8} {
			if err != nil {
				t.Fatal(err)
			}
		}
		plain = plain || strs.Entries() > int(strs.Dict)
		for i := range owner {
			var s string
			if types[i] == ValueString {
				s = strs.String(strs.Index[i])
			}
			// Strings of high-cardinality keys are in raw; Scan reports them as strings.
			if plainString(types[i]) {
				kept++
				types[i], s = ValueString, raws.String(raws.Index[i])
			}
			var n int64
			if types[i] == ValueInt {
				n = ints[i]
			}
			val := fmt.Sprint(s, n, dbls[i], bools[i])
			if types[i] == ValueRaw {
				val = string(raws.Bytes(raws.Index[i]))
			}
			gotAttrs = append(gotAttrs, attrRow{owner[i], keys.String(keys.Index[i]), types[i], val})
		}
	}
	if !plain || kept == 0 {
		t.Errorf("%v row groups fell back to plain strings, %d strings kept out of the dictionary: the test misses a case", plain, kept)
	}
	if len(gotAttrs) != len(wantAttrs) {
		t.Fatalf("%d attribute rows, Scan has %d", len(gotAttrs), len(wantAttrs))
	}
	for i := range gotAttrs {
		if gotAttrs[i] != wantAttrs[i] {
			t.Fatalf("attribute row %d: %+v, Scan has %+v", i, gotAttrs[i], wantAttrs[i])
		}
	}
}
