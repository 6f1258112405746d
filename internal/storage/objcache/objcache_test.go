package objcache_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/objcache"
	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
	"github.com/ariadne-tracing/ariadne/internal/storage/s3store"
	"github.com/ariadne-tracing/ariadne/internal/testkit/blocktest"
	"github.com/ariadne-tracing/ariadne/internal/testkit/miniotest"
)

func writeBlock(t *testing.T, st objstore.Store, n int, seed uint64) (block.Meta, [][16]byte) {
	t.Helper()
	return blocktest.Write(t, st, n, seed, time.Now(), time.Time{})
}

func backend(t *testing.T) *s3store.Store {
	t.Helper()
	srv := miniotest.Start(t)
	s, err := s3store.New(s3store.Config{Endpoint: srv.Endpoint, Bucket: "cache", Insecure: true,
		AccessKey: miniotest.AccessKey, SecretKey: miniotest.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureBucket(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	return s
}

func spanNames(t *testing.T, rss []*tracepb.ResourceSpans) []string {
	t.Helper()
	var out []string
	for _, rs := range rss {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				out = append(out, fmt.Sprintf("%x/%s", sp.SpanId, sp.Name))
			}
		}
	}
	sort.Strings(out)
	return out
}

// A block opened and read through the cache over MinIO gives the same traces as read from
// MinIO directly, the second time without a single request, and opening a prefetched block
// costs one wave of parallel requests.
func TestBlockThroughCache(t *testing.T) {
	ctx := context.Background()
	be := backend(t)
	meta, ids := writeBlock(t, be, 2000, 1)
	direct, err := block.Open(ctx, be, meta.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()

	c, err := objcache.New(be, objcache.Options{Dir: filepath.Join(t.TempDir(), "cache"), MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	dir := block.Prefix + meta.ID + "/"
	before := be.Stats().Requests
	ranged := map[string]int64{}
	want := int64(2) // meta.json, bloom
	for name, size := range meta.Files {
		if name != "bloom" {
			ranged[dir+name] = size
			want++
			if size > 128<<10 {
				want++ // head and tail apart
			}
		}
	}
	if err := c.Prefetch(ctx, ranged, []string{dir + "meta.json", dir + "bloom"}); err != nil {
		t.Fatal(err)
	}
	if prefetch := be.Stats().Requests - before; prefetch != want {
		t.Fatalf("prefetch made %d requests, want %d (one per file, two for large ones)", prefetch, want)
	}
	before = be.Stats().Requests
	cached, err := block.Open(ctx, c, meta.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer cached.Close()
	if n := be.Stats().Requests - before; n != 0 {
		t.Fatalf("opening a prefetched block made %d requests", n)
	}

	for _, id := range []([16]byte){ids[0], ids[777], ids[1999]} {
		want, err := direct.FindTrace(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		before = be.Stats().Requests
		got, err := cached.FindTrace(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		cold := be.Stats().Requests - before
		if a, b := fmt.Sprint(spanNames(t, got)), fmt.Sprint(spanNames(t, want)); a != b || len(spanNames(t, got)) != 10 {
			t.Fatalf("trace %x through the cache:\n%s\nwant\n%s", id, a, b)
		}
		before = be.Stats().Requests
		again, err := cached.FindTrace(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if n := be.Stats().Requests - before; n != 0 {
			t.Fatalf("warm read made %d requests (cold: %d)", n, cold)
		}
		if !proto.Equal(&tracepb.TracesData{ResourceSpans: again}, &tracepb.TracesData{ResourceSpans: got}) {
			t.Fatal("warm read differs from cold read")
		}
		t.Logf("trace by ID from a cold cache: %d requests", cold)
	}
	st := c.Stats()
	if st.Hits == 0 || st.Misses == 0 || st.Bytes <= 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// The cache stays within its byte budget, evicting the least recently used ranges, and what
// it evicted is fetched again correctly.
func TestBudget(t *testing.T) {
	ctx := context.Background()
	be := backend(t)
	var metas []block.Meta
	var idsOf [][][16]byte
	for i := 0; i < 3; i++ {
		m, ids := writeBlock(t, be, 1500, uint64(i+10))
		metas, idsOf = append(metas, m), append(idsOf, ids)
	}
	const budget = 150 << 10
	c, err := objcache.New(be, objcache.Options{Dir: filepath.Join(t.TempDir(), "cache"), MaxBytes: budget, MinFetch: 16 << 10, TailBytes: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ {
		for i, m := range metas {
			r, err := block.Open(ctx, c, m.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range idsOf[i][:8] {
				rss, err := r.FindTrace(ctx, id)
				if err != nil || len(spanNames(t, rss)) != 10 {
					t.Fatalf("round %d block %d trace %x: %d spans, %v", round, i, id, len(spanNames(t, rss)), err)
				}
			}
			r.Close()
			if st := c.Stats(); st.Bytes > budget {
				t.Fatalf("cache holds %d bytes, budget %d", st.Bytes, budget)
			}
		}
	}
	if st := c.Stats(); st.Evictions == 0 {
		t.Fatalf("no evictions with %d bytes fetched into a %d-byte budget", st.FetchedBytes, budget)
	}
}
