package block

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// smallTraces builds the benchmark shape: 10-span traces, each span with two short attributes,
// random trace and span IDs, parents forming a tree, and log-normal durations nested inside
// the parent's.
func smallTraces(tb testing.TB, r *rand.Rand, nTraces int, base uint64) []Trace {
	services := []string{"frontend", "cart", "checkout", "payment", "shipping", "email", "currency", "ad"}
	methods := []string{"GET", "POST", "PUT"}
	codes := []int64{200, 200, 200, 201, 404, 500}
	var rss []*tracepb.ResourceSpans
	byService := map[string]*tracepb.ScopeSpans{}
	for _, s := range services {
		ss := &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: "otel-go", Version: "1.30.0"}}
		byService[s] = ss
		rss = append(rss, &tracepb.ResourceSpans{
			Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
				kv("service.name", str(s)), kv("host.name", str(s+"-7d9f8")),
			}},
			ScopeSpans: []*tracepb.ScopeSpans{ss},
		})
	}
	for range nTraces {
		id := traceID(r)
		start := base + r.Uint64N(30e9)
		type node struct {
			id         []byte
			start, end uint64
		}
		var nodes []node
		for i := range 10 {
			svc := services[r.IntN(len(services))]
			s := &tracepb.Span{
				TraceId: id[:],
				SpanId:  randBytes(r, 8),
				Name:    fmt.Sprintf("%s /api/v1/%s", methods[r.IntN(len(methods))], svc),
				Kind:    tracepb.Span_SpanKind(1 + r.IntN(3)),
				Attributes: []*commonpb.KeyValue{
					kv("http.method", str(methods[r.IntN(len(methods))])),
					kv("http.status_code", &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: codes[r.IntN(len(codes))]}}),
				},
			}
			if i == 0 {
				s.StartTimeUnixNano = start
				s.EndTimeUnixNano = start + uint64(math.Exp(r.NormFloat64()+17)) // ~25ms median
			} else {
				p := nodes[r.IntN(len(nodes))]
				s.ParentSpanId = p.id
				span := p.end - p.start
				s.StartTimeUnixNano = p.start + r.Uint64N(span/2+1)
				s.EndTimeUnixNano = s.StartTimeUnixNano + r.Uint64N(p.end-s.StartTimeUnixNano+1)
			}
			if r.IntN(50) == 0 {
				s.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}
			}
			nodes = append(nodes, node{s.SpanId, s.StartTimeUnixNano, s.EndTimeUnixNano})
			ss := byService[svc]
			ss.Spans = append(ss.Spans, s)
		}
	}
	return toTraces(tb, rss)
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWrite writes 100k small spans per op. "local" includes the local store's file
// creation and fsyncs; "mem" measures encoding alone.
func BenchmarkWrite(b *testing.B) {
	r := rand.New(rand.NewPCG(11, 12))
	traces := smallTraces(b, r, 10_000, 1_700_000_000_000_000_000)
	b.Run("local", func(b *testing.B) { benchWrite(b, newStore(b), traces) })
	b.Run("mem", func(b *testing.B) { benchWrite(b, newMemStore(), traces) })
}

// benchOptions lets BLOCK_PAGE_SIZE override the page size, to compare sizes and latencies.
func benchOptions() WriteOptions {
	var o WriteOptions
	if v, err := strconv.Atoi(os.Getenv("BLOCK_PAGE_SIZE")); err == nil {
		o.PageSize = v
	}
	return o
}

func benchWrite(b *testing.B, store objstore.Store, traces []Trace) {
	ctx := context.Background()
	spans := 0
	for _, t := range traces {
		spans += len(t.Spans)
	}
	var meta Meta
	var err error
	// One write outside the timer warms the pooled writer, as steady state would.
	if meta, err = Write(ctx, store, traces, benchOptions()); err != nil {
		b.Fatal(err)
	}
	Delete(ctx, store, meta.ID)
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		meta, err = Write(ctx, store, traces, benchOptions())
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		Delete(ctx, store, meta.ID)
		b.StartTimer()
	}
	cpu := cpuTime() - cpu0
	total := float64(spans) * float64(b.N)
	b.ReportMetric(total/b.Elapsed().Seconds(), "spans/s")
	b.ReportMetric(total/cpu.Seconds(), "spans/cpu-s")
	b.ReportMetric(float64(meta.Bytes)/float64(spans), "bytes/span")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/total, "ns/span")
}

// memStore is an in-memory objstore.Store, to time encoding without the file system.
type memStore struct {
	mu   sync.Mutex
	objs map[string][]byte
}

func newMemStore() *memStore { return &memStore{objs: map[string][]byte{}} }

func (m *memStore) Put(_ context.Context, name string, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[name] = b
	return nil
}

func (m *memStore) get(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, objstore.ErrNotFound)
	}
	return b, nil
}

func (m *memStore) Get(_ context.Context, name string) (io.ReadCloser, error) {
	b, err := m.get(name)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

type nopCloserAt struct{ *bytes.Reader }

func (nopCloserAt) Close() error { return nil }

func (m *memStore) ReaderAt(_ context.Context, name string) (objstore.ReaderAtCloser, int64, error) {
	b, err := m.get(name)
	if err != nil {
		return nil, 0, err
	}
	return nopCloserAt{bytes.NewReader(b)}, int64(len(b)), nil
}

func (m *memStore) List(_ context.Context, prefix string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var names []string
	for n := range m.objs {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

func (m *memStore) Delete(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, name)
	return nil
}

// BenchmarkFindTrace looks up random present traces, and absent ones, across blocks of 200k
// spans each, the way a querier fans a lookup out over every block. It uses 1M spans in 5
// blocks; BLOCK_BENCH_SPANS=10000000 scales it to 50 blocks.
func BenchmarkFindTrace(b *testing.B) {
	ctx := context.Background()
	store := newStore(b)
	r := rand.New(rand.NewPCG(13, 14))
	total := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("BLOCK_BENCH_SPANS")); err == nil && v > 0 {
		total = v
	}
	const perBlock = 200_000
	var readers []*Reader
	var ids [][16]byte
	for blk := 0; blk*perBlock < total; blk++ {
		traces := smallTraces(b, r, perBlock/10, 1_700_000_000_000_000_000+uint64(blk)*60e9)
		meta, err := Write(ctx, store, traces, benchOptions())
		if err != nil {
			b.Fatal(err)
		}
		br, err := Open(ctx, store, meta.ID)
		if err != nil {
			b.Fatal(err)
		}
		defer br.Close()
		readers = append(readers, br)
		for _, t := range traces {
			ids = append(ids, t.ID)
		}
	}
	runtime.GC()
	find := func(id [16]byte) int {
		n := 0
		for _, br := range readers {
			rss, err := br.FindTrace(ctx, id)
			if err != nil {
				b.Fatal(err)
			}
			for _, rs := range rss {
				for _, ss := range rs.ScopeSpans {
					n += len(ss.Spans)
				}
			}
		}
		return n
	}
	b.Run(fmt.Sprintf("present/blocks=%d", len(readers)), func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			if n := find(ids[(i*7919)%len(ids)]); n != 10 {
				b.Fatalf("found %d spans", n)
			}
		}
	})
	b.Run(fmt.Sprintf("absent/blocks=%d", len(readers)), func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if n := find(traceID(r)); n != 0 {
				b.Fatalf("found %d spans", n)
			}
		}
	})
}

// TestColumnSizes prints the compressed size of every column for the benchmark shape; it is
// how the encodings in schema.go were chosen. Run with BLOCK_SIZES=1 go test -run ColumnSizes -v.
func TestColumnSizes(t *testing.T) {
	if os.Getenv("BLOCK_SIZES") == "" {
		t.Skip("set BLOCK_SIZES=1")
	}
	ctx := context.Background()
	store := newStore(t)
	traces := smallTraces(t, rand.New(rand.NewPCG(11, 12)), 10_000, 1_700_000_000_000_000_000)
	meta, err := Write(ctx, store, traces, benchOptions())
	if err != nil {
		t.Fatal(err)
	}
	br, err := Open(ctx, store, meta.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	for _, p := range []*pfile{br.traces, br.spans, br.attrs} {
		for _, rg := range p.f.Metadata().RowGroups {
			for _, c := range rg.Columns {
				md := c.MetaData
				t.Logf("%-16s %-20s %-28v %9d bytes %6.2f bytes/span (uncompressed %d)", p.name, md.PathInSchema[0],
					md.Encoding, md.TotalCompressedSize, float64(md.TotalCompressedSize)/float64(meta.Spans), md.TotalUncompressedSize)
			}
		}
	}
}
