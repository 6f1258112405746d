package block

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
)

// scanRows is every span attribute row of a block as Scan reports it, keyed by trace and
// span, in row order.
func scanRows(t *testing.T, br *Reader) []string {
	t.Helper()
	var out []string
	err := br.Scan(context.Background(), ScanOptions{Columns: ScanColumns{SpanID: true, AllSpanAttrs: true, AllEventAttrs: true, AllLinkAttrs: true}},
		func(b *ScanBatch) bool {
			for _, tr := range b.Traces {
				for i := tr.Span0; i < tr.Span1; i++ {
					out = append(out, fmt.Sprintf("%x/%x", tr.ID, b.Spans.ID[i]))
				}
			}
			for _, a := range []*ScanAttrs{&b.Attrs, &b.EventAttrs, &b.LinkAttrs} {
				for i := range a.Owner {
					out = append(out, fmt.Sprintf("%d %q %d %q %d %v %v %x", a.Owner[i], a.Key[i], a.Type[i], a.Str[i], a.Int[i], a.Double[i], a.Bool[i], a.Raw[i]))
				}
			}
			return true
		})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOldFormatReads opens the checked-in blocks of formats 2 and 3 (search's fixtures,
// written by the code of those formats), rewrites each with this code and checks that old and
// new give the same traces (FindTrace, FindTraceEncoded), the same scanned rows and the same
// index.
func TestOldFormatReads(t *testing.T) {
	ctx := context.Background()
	for _, fx := range []struct {
		dir     string
		version int
	}{{"../../read/search/testdata/v2store", 2}, {"../../read/search/testdata/v3store", 3}} {
		old, err := objstore.NewLocal(fx.dir)
		if err != nil {
			t.Fatal(err)
		}
		metas, err := List(ctx, old)
		if err != nil || len(metas) == 0 {
			t.Fatalf("%s: %+v, %v", fx.dir, metas, err)
		}
		for _, m := range metas {
			if m.Version != fx.version {
				t.Fatalf("%s: block %s has version %d", fx.dir, m.ID, m.Version)
			}
			br, err := Open(ctx, old, m.ID)
			if err != nil {
				t.Fatal(err)
			}
			defer br.Close()
			checkRewrite(t, br)
		}
	}
}

// checkRewrite writes br's traces again with this code and compares the two blocks.
func checkRewrite(t *testing.T, br *Reader) {
	t.Helper()
	ctx := context.Background()
	var traces []Trace
	if err := br.ReadAll(ctx, func(tr Trace) error { traces = append(traces, tr); return nil }); err != nil {
		t.Fatal(err)
	}
	if int64(len(traces)) != br.Meta().Traces || len(traces) == 0 {
		t.Fatalf("read %d traces of %d", len(traces), br.Meta().Traces)
	}
	store := newStore(t)
	meta, err := Write(ctx, store, traces, WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if meta.Version != FormatVersion {
		t.Fatalf("rewritten block has version %d", meta.Version)
	}
	cur, err := Open(ctx, store, meta.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	for _, tr := range traces {
		want, err1 := br.FindTrace(ctx, tr.ID)
		got, err2 := cur.FindTrace(ctx, tr.ID)
		if err := errors.Join(err1, err2); err != nil || len(want) == 0 {
			t.Fatalf("trace %x: %d resources, %v", tr.ID, len(want), err)
		}
		assertSameTrace(t, got, want)
		var enc []Span
		found, err := cur.FindTraceEncoded(ctx, tr.ID, func(spans []Span) error { enc = append(enc, spans...); return nil })
		if err != nil || !found {
			t.Fatalf("FindTraceEncoded: %v, %v", found, err)
		}
		assertSameTrace(t, wireToResourceSpans(t, enc), want)
	}
	if a, b := scanRows(t, br), scanRows(t, cur); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("scans differ: format %d %d rows, format %d %d rows", br.Meta().Version, len(a), FormatVersion, len(b))
	}
	x, err1 := br.Index(ctx)
	y, err2 := cur.Index(ctx)
	if err1 != nil || err2 != nil || y == nil {
		t.Fatal(err1, err2)
	}
	if x == nil {
		return // format 2
	}
	if len(x.Values) != len(y.Values) {
		t.Fatalf("index lists %d keys, format %d %d", len(y.Values), br.Meta().Version, len(x.Values))
	}
	for k, v := range x.Values {
		if fmt.Sprint(*v) != fmt.Sprint(*y.Values[k]) {
			t.Fatalf("index values of %q differ", k)
		}
	}
}

// checkPlainStrings checks the layout of a format 6 span attributes file: str is dictionary
// entries only; plain string rows are all of the given keys (and some are), their bytes in
// raw; a row typed ValueStringPlainNew has a value no earlier row of its row group has, and
// most values seen for the first time are typed so.
func checkPlainStrings(t *testing.T, br *Reader, keys map[string]bool, repeats bool) {
	t.Helper()
	ac := br.Columns(FileSpanAttrs)
	plainRows, firsts, marked := 0, 0, 0
	for rg := range ac.RowGroups() {
		var kc, sc, rc StringColumn
		err1 := ac.Strings(rg, "key", &kc)
		types, err2 := ac.Int32s(rg, "type", nil)
		err3 := ac.Strings(rg, "str", &sc)
		err4 := ac.Strings(rg, "raw", &rc)
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			t.Fatal(err)
		}
		if sc.Entries() != int(sc.Dict) {
			t.Fatalf("row group %d: str has %d entries past its dictionary of %d", rg, sc.Entries()-int(sc.Dict), sc.Dict)
		}
		seen := map[string]bool{}
		for i, typ := range types {
			if !plainString(typ) {
				continue
			}
			plainRows++
			key, val := kc.String(kc.Index[i]), rc.String(rc.Index[i])
			if !keys[key] || val == "" || sc.String(sc.Index[i]) != "" {
				t.Fatalf("row group %d row %d: plain string %q of key %q", rg, i, val, key)
			}
			if typ == ValueStringPlainNew && seen[val] {
				t.Fatalf("row group %d row %d: %q marked new after an earlier row", rg, i, val)
			}
			if !seen[val] {
				firsts++
				if typ == ValueStringPlainNew {
					marked++
				}
			}
			seen[val] = true
		}
	}
	if plainRows == 0 || repeats && firsts == plainRows {
		t.Fatalf("%d plain strings, %d of them first in their row group: want some (and repeats: %v)", plainRows, firsts, repeats)
	}
	if marked < firsts*9/10 {
		t.Fatalf("%d of %d new values marked new", marked, firsts)
	}
}

// TestPlainStrings writes spans whose keys pass MaxIndexValues distinct values, one of them
// with values that repeat, over several row groups, and checks the layout, that every reader
// gets the values back, and that the str dictionary is not taken as listing every string.
func TestPlainStrings(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 19))
	want := map[[16]byte][]*tracepb.ResourceSpans{}
	var all []*tracepb.ResourceSpans
	for i := range 600 {
		id := traceID(r)
		rss := richTrace(r, id, 1+i%9)
		for _, rs := range rss {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					s.Attributes = append(s.Attributes, kv("id", str(fmt.Sprint(r.Uint64()))), kv("user", str(fmt.Sprint("u", r.IntN(1500)))),
						kv("method", str("GET")))
				}
			}
		}
		want[id] = rss
		all = append(all, rss...)
	}
	store := newStore(t)
	meta, err := Write(ctx, store, toTraces(t, all), WriteOptions{RowGroupRows: 20000, PageSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	br, err := Open(ctx, store, meta.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	checkPlainStrings(t, br, map[string]bool{"id": true, "user": true}, true)
	for id, rss := range want {
		got, err := br.FindTrace(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		assertSameTrace(t, got, rss)
	}
	// Scan with a required value of a plain key finds its span.
	var target string
	for _, rs := range all[len(all)-1:] {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				for _, a := range s.Attributes {
					if a.Key == "id" {
						target = a.Value.GetStringValue()
					}
				}
			}
		}
	}
	found := 0
	err = br.Scan(ctx, ScanOptions{Columns: ScanColumns{SpanAttrs: []string{"id"}}, Require: &AttrPredicate{Key: "id",
		Match: func(typ int32, s string, _ int64, _ float64, _ bool, _ []byte) bool {
			return typ == ValueString && s == target
		}}},
		func(b *ScanBatch) bool {
			for i := range b.Attrs.Owner {
				if b.Attrs.Type[i] != ValueString {
					t.Errorf("scan reports type %d for a string", b.Attrs.Type[i])
				}
				if b.Attrs.Str[i] == target {
					found++
				}
			}
			return true
		})
	if err != nil || found != 1 {
		t.Fatalf("scan for id %q found %d: %v", target, found, err)
	}
	if _, complete, err := br.Distinct(DictSpanAttrStr); complete || err != nil {
		t.Fatalf("str dictionary listed as complete (%v) with plain strings", err)
	}
	if !br.HasRawSpanAttrs() {
		t.Fatal("HasRawSpanAttrs false with plain strings")
	}
	checkRewrite(t, br) // as compaction reads and writes them
}

// TestFormat5Reads: a block of format 5 (runs, no plain strings) is what this writer writes
// for spans without high-cardinality keys, with its version; such a block still opens and
// reads.
func TestFormat5Reads(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := objstore.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 5))
	want := map[[16]byte][]*tracepb.ResourceSpans{}
	var all []*tracepb.ResourceSpans
	for i := range 50 {
		id := traceID(r)
		want[id] = richTrace(r, id, 1+i%7)
		all = append(all, want[id]...)
	}
	meta, err := Write(ctx, store, toTraces(t, all), WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "blocks", meta.ID, "meta.json")
	js, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	old := bytes.Replace(js, []byte(fmt.Sprintf(`"version": %d`, FormatVersion)), []byte(`"version": 5`), 1)
	if bytes.Equal(old, js) {
		t.Fatal("no version in meta.json")
	}
	if err := os.WriteFile(path, old, 0o644); err != nil {
		t.Fatal(err)
	}
	br, err := Open(ctx, store, meta.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	if br.Meta().Version != 5 {
		t.Fatalf("version %d", br.Meta().Version)
	}
	for id, rss := range want {
		got, err := br.FindTrace(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		assertSameTrace(t, got, rss)
	}
}
