package ingest_test

import (
	"context"
	"errors"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ariadne-tracing/ariadne/internal/pipeline/ingest"
	"github.com/ariadne-tracing/ariadne/internal/pipeline/servicegraph"
	"github.com/ariadne-tracing/ariadne/internal/pipeline/spanmetrics"
	"github.com/ariadne-tracing/ariadne/internal/storage/store"
	"github.com/ariadne-tracing/ariadne/internal/tools/loadgen"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkConsume is the server's ingest path in one process, as `ariadne serve` wires it by
// default: the load generator's requests (512 spans each) through Ingester.Consume from
// concurrent exporters (4 per CPU), into a real store (fsync'd WAL, head, blocks written by the
// flush loop; compaction off) with span metrics and the service graph observing, under the
// server's soft memory limit. spans/cpu-s is accepted spans per second of the process's CPU
// time, block writing included: the in-process counterpart of `scripts/bench-ingest`'s "spans
// per server CPU-second", without gRPC; the store is closed (the head flushed to blocks) inside
// the measurement. Refused requests (the head over its limit while blocks catch up) are retried
// after a short pause and counted in refused/op.
func BenchmarkConsume(b *testing.B) {
	for _, profile := range []string{"small", "guide"} {
		b.Run(profile, func(b *testing.B) { benchConsume(b, profile) })
	}
}

func benchConsume(b *testing.B, profile string) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(200 << 20))
	// Compaction is off: it runs beside ingest at its own pace and has its own benchmark
	// (BenchmarkStreamRewrite); left on, whether a merge falls inside a run makes figures jump.
	st, err := store.Open(store.Options{Dir: b.TempDir(), CompactMinBlocks: -1})
	if err != nil {
		b.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	sm, err := spanmetrics.New(reg, spanmetrics.Config{})
	if err != nil {
		b.Fatal(err)
	}
	graph, err := servicegraph.New(reg, servicegraph.Config{Buckets: spanmetrics.DefaultBuckets})
	if err != nil {
		b.Fatal(err)
	}
	graph.Start()
	defer graph.Stop()
	in, err := ingest.New(st, ingest.Config{Observers: []ingest.Observer{sm, graph}, Registerer: reg})
	if err != nil {
		b.Fatal(err)
	}
	// The generators are built before the clock starts: encoding a profile's template is
	// setup, not ingest.
	const parallelism = 4
	gens := make(chan func([]byte) []byte, parallelism*runtime.GOMAXPROCS(0))
	for i := range cap(gens) {
		next, _, err := loadgen.Requests(profile, 512, uint64(i+1)*0x9e3779b97f4a7c15)
		if err != nil {
			b.Fatal(err)
		}
		gens <- next
	}
	var spans, refused atomic.Int64
	b.SetParallelism(parallelism)
	b.ResetTimer()
	cpu0, t0 := cpuTime(), time.Now()
	b.RunParallel(func(pb *testing.PB) {
		next := <-gens
		var buf []byte
		for pb.Next() {
			buf = next(buf)
			for {
				res, err := in.Consume(context.Background(), "", buf)
				var over *ingest.OverloadError
				if errors.As(err, &over) {
					refused.Add(1)
					time.Sleep(5 * time.Millisecond)
					continue
				}
				if err != nil {
					b.Error(err)
					return
				}
				spans.Add(res.Accepted)
				break
			}
		}
	})
	// Closing writes what is still in the head to blocks: every accepted span's block work
	// is in the figure.
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	cpu, wall := cpuTime()-cpu0, time.Since(t0)
	n := float64(spans.Load())
	b.ReportMetric(n/cpu.Seconds(), "spans/cpu-s")
	b.ReportMetric(n/wall.Seconds(), "spans/s")
	b.ReportMetric(float64(refused.Load())/float64(b.N), "refused/op")
}
