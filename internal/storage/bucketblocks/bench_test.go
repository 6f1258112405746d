package bucketblocks_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/read/query"
	"github.com/ariadne-tracing/ariadne/internal/read/search"
	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/bucketblocks"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
	"github.com/ariadne-tracing/ariadne/internal/storage/objcache"
	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
	"github.com/ariadne-tracing/ariadne/internal/storage/s3store"
	"github.com/ariadne-tracing/ariadne/internal/testkit/blocktest"
	"github.com/ariadne-tracing/ariadne/internal/testkit/miniotest"
)

type src struct {
	h      *head.Head
	blocks func() ([]*block.Reader, func())
}

func (s src) Head() *head.Head                         { return s.h }
func (s src) AcquireBlocks() ([]*block.Reader, func()) { return s.blocks() }

// BenchmarkBucket compares reads from local disk with reads from MinIO on loopback through
// the cache, on the same blocks (1M spans in blocks of 100k, or ARIADNE_BENCH_SPANS): trace by
// ID and TraceQL searches, cold (a fresh cache holding only what opening the blocks fetched)
// and warm (every page read before). It reports requests and bytes per query; the open
// figures are what a query node pays once per block.
func BenchmarkBucket(b *testing.B) {
	ctx := context.Background()
	spans := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("ARIADNE_BENCH_SPANS")); err == nil && v > 0 {
		spans = v
	}
	srv := miniotest.Start(b)
	root, err := s3store.New(s3store.Config{Endpoint: srv.Endpoint, Bucket: "bench", Insecure: true,
		AccessKey: miniotest.AccessKey, SecretKey: miniotest.SecretKey})
	if err != nil {
		b.Fatal(err)
	}
	if err := root.EnsureBucket(ctx, ""); err != nil {
		b.Fatal(err)
	}
	bucket := root.Sub("bench")
	local, err := objstore.NewLocal(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	const tracesPerBlock = 10_000 // 100k spans
	var ids [][16]byte
	var localBlocks []*block.Reader
	for i := 0; i*tracesPerBlock*blocktest.SpansPerTrace < spans; i++ {
		m, tids := blocktest.Write(b, local, tracesPerBlock, uint64(i+1), time.Now().Add(-time.Duration(i)*time.Minute), time.Time{})
		for j := 0; j < len(tids); j += 97 {
			ids = append(ids, tids[j])
		}
		names, _ := local.List(ctx, block.Prefix+m.ID+"/")
		// meta.json last, as an upload does.
		sort.SliceStable(names, func(a, c int) bool {
			return filepath.Base(names[a]) != "meta.json" && filepath.Base(names[c]) == "meta.json"
		})
		for _, n := range names {
			rc, err := local.Get(ctx, n)
			if err != nil {
				b.Fatal(err)
			}
			err = bucket.Put(ctx, n, rc)
			rc.Close()
			if err != nil {
				b.Fatal(err)
			}
		}
		r, err := block.Open(ctx, local, m.ID)
		if err != nil {
			b.Fatal(err)
		}
		localBlocks = append(localBlocks, r)
	}
	localSrc := src{h: head.New(), blocks: func() ([]*block.Reader, func()) { return localBlocks, func() {} }}

	// openSet is a query node's start: a fresh cache, one poll (index absent: a listing).
	openSet := func(b *testing.B) (*bucketblocks.Set, *objcache.Store) {
		c, err := objcache.New(bucket, objcache.Options{Dir: filepath.Join(b.TempDir(), "cache")})
		if err != nil {
			b.Fatal(err)
		}
		s := bucketblocks.New(bucketblocks.Options{Bucket: bucket, Cache: c})
		before := root.Stats()
		start := time.Now()
		if err := s.Poll(ctx); err != nil {
			b.Fatal(err)
		}
		after := root.Stats()
		b.ReportMetric(float64(after.Requests-before.Requests)/float64(len(localBlocks)), "open-req/block")
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "open-all-ms")
		return s, c
	}
	report := func(b *testing.B, before s3store.Stats, n int, lat []time.Duration) {
		after := root.Stats()
		b.ReportMetric(float64(after.Requests-before.Requests)/float64(n), "req/op")
		b.ReportMetric(float64(after.BytesRead-before.BytesRead)/float64(n)/1024, "KiB/op")
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		if len(lat) > 0 {
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		}
	}
	rng := rand.New(rand.NewPCG(3, 3))
	findOnce := func(b *testing.B, q *query.Querier, id [16]byte) {
		td, err := q.FindTrace(ctx, id, query.TimeRange{})
		if err != nil || td == nil {
			b.Fatalf("trace %x: %v", id, err)
		}
	}
	timed := func(fn func()) time.Duration { t := time.Now(); fn(); return time.Since(t) }

	b.Run("trace-by-id/local", func(b *testing.B) {
		q := query.New(localSrc)
		var lat []time.Duration
		for b.Loop() {
			lat = append(lat, timed(func() { findOnce(b, q, ids[rng.IntN(len(ids))]) }))
		}
		report(b, root.Stats(), b.N, lat)
	})
	b.Run("trace-by-id/minio-cold", func(b *testing.B) {
		var lat []time.Duration
		var reqs, bytes int64
		for b.Loop() {
			b.StopTimer()
			s, _ := openSet(b)
			q := query.New(src{h: head.New(), blocks: s.AcquireBlocks})
			before := root.Stats()
			b.StartTimer()
			lat = append(lat, timed(func() { findOnce(b, q, ids[rng.IntN(len(ids))]) }))
			b.StopTimer()
			after := root.Stats()
			reqs += after.Requests - before.Requests
			bytes += after.BytesRead - before.BytesRead
			s.Close()
			b.StartTimer()
		}
		b.ReportMetric(float64(reqs)/float64(b.N), "req/op")
		b.ReportMetric(float64(bytes)/float64(b.N)/1024, "KiB/op")
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	})
	b.Run("trace-by-id/minio-warm", func(b *testing.B) {
		s, c := openSet(b)
		defer s.Close()
		q := query.New(src{h: head.New(), blocks: s.AcquireBlocks})
		for _, id := range ids {
			findOnce(b, q, id)
		}
		before, cs := root.Stats(), c.Stats()
		var lat []time.Duration
		for b.Loop() {
			lat = append(lat, timed(func() { findOnce(b, q, ids[rng.IntN(len(ids))]) }))
		}
		report(b, before, b.N, lat)
		after := c.Stats()
		b.ReportMetric(100*float64(after.Hits-cs.Hits)/float64(max(1, after.Hits-cs.Hits+after.Misses-cs.Misses)), "hit-%")
	})

	queries := []struct{ name, q string }{
		{"attr", `{ span.k = 4242 }`},
		{"name", `{ name = "op-7" && duration > 500ns }`},
		{"range", `{ span.k > 9990 }`},
	}
	for _, qq := range queries {
		parsed, err := traceql.Parse(qq.q)
		if err != nil {
			b.Fatal(err)
		}
		run := func(b *testing.B, e *search.Engine) {
			res, err := e.Search(ctx, search.Request{Query: parsed, Limit: 20})
			if err != nil {
				b.Fatal(err)
			}
			if len(res.Traces) == 0 {
				b.Fatalf("%s found nothing", qq.q)
			}
		}
		b.Run(fmt.Sprintf("search-%s/local", qq.name), func(b *testing.B) {
			e := search.New(localSrc)
			var lat []time.Duration
			for b.Loop() {
				lat = append(lat, timed(func() { run(b, e) }))
			}
			report(b, root.Stats(), b.N, lat)
		})
		b.Run(fmt.Sprintf("search-%s/minio-cold", qq.name), func(b *testing.B) {
			var lat []time.Duration
			var reqs, bytes int64
			for b.Loop() {
				b.StopTimer()
				s, _ := openSet(b)
				e := search.New(src{h: head.New(), blocks: s.AcquireBlocks})
				before := root.Stats()
				b.StartTimer()
				lat = append(lat, timed(func() { run(b, e) }))
				b.StopTimer()
				after := root.Stats()
				reqs += after.Requests - before.Requests
				bytes += after.BytesRead - before.BytesRead
				s.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(reqs)/float64(b.N), "req/op")
			b.ReportMetric(float64(bytes)/float64(b.N)/1024, "KiB/op")
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		})
		b.Run(fmt.Sprintf("search-%s/minio-warm", qq.name), func(b *testing.B) {
			s, c := openSet(b)
			defer s.Close()
			e := search.New(src{h: head.New(), blocks: s.AcquireBlocks})
			run(b, e)
			before, cs := root.Stats(), c.Stats()
			var lat []time.Duration
			for b.Loop() {
				lat = append(lat, timed(func() { run(b, e) }))
			}
			report(b, before, b.N, lat)
			after := c.Stats()
			b.ReportMetric(100*float64(after.Hits-cs.Hits)/float64(max(1, after.Hits-cs.Hits+after.Misses-cs.Misses)), "hit-%")
		})
	}
}
