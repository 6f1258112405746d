package store

import (
	"runtime"
	"testing"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/tools/loadgen"
)

// BenchmarkCompactRun measures one merge as the store's compaction does it (compactRun: read
// the inputs, k-way merge, write, publish with fsyncs, open, swap, delete the inputs) on blocks
// a server would merge first: compact_min_blocks (8) level-0 blocks of a load generator
// profile at the default 16 MiB, built untimed. spans/cpu-s is the rewrite cost that every level
// of compaction pays per span.
//
//	go test -c -o /tmp/store.test ./internal/storage/store && cd internal/storage/store
//	/tmp/store.test -test.run '^$' -test.bench CompactRun -test.benchtime 3x
func BenchmarkCompactRun(b *testing.B) {
	for _, profile := range []string{"small", "guide"} {
		b.Run(profile, func(b *testing.B) {
			s, err := Open(Options{Dir: b.TempDir(), TraceIdle: time.Hour, TraceMaxAge: time.Hour,
				HeadMaxBytes: 1 << 30, FlushInterval: time.Hour, CompactMinBlocks: -1})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			next, _, err := loadgen.Requests(profile, 1000, 7)
			if err != nil {
				b.Fatal(err)
			}
			var buf []byte
			var spans int64
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				for s.HeadBytes() < 8*s.opts.BlockMaxBytes {
					buf = next(buf)
					if err := s.Append(buf); err != nil {
						b.Fatal(err)
					}
				}
				if err := s.Flush(); err != nil {
					b.Fatal(err)
				}
				// Eight full blocks, and a ninth of what was left over, which stays out.
				run := s.Blocks()[:8]
				for _, r := range run {
					spans += r.Meta().Spans
				}
				runtime.GC()
				b.StartTimer()
				c0 := cpuTime()
				if err := s.compactRun(s.compactCtx, run); err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime() - c0
				b.StopTimer()
				// The merged block goes too, so the next op merges eight level-0 blocks again.
				for _, r := range s.Blocks() {
					s.Forget(r.Meta().ID)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(spans)/b.Elapsed().Seconds(), "spans/s")
			b.ReportMetric(float64(spans)/cpu.Seconds(), "spans/cpu-s")
		})
	}
}
