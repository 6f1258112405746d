package store

import (
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/tools/loadgen"
)

// BenchmarkBuildBlocks measures the flush path alone: each op appends 300k spans of a load
// generator profile to the store (untimed), then Flush cuts them and builds, publishes (fsync'd)
// and opens their blocks at the default 16 MiB (timed; Flush returns once every writer is done,
// so no block work runs on past it). CPU is the process's user and system time around Flush:
// GOMAXPROCS bounds the threads running Go code, not those in syscalls (writes into the page
// cache, fsync), so at -cpu 1 CPU can exceed wall time by the kernel's share. Run with -cpu 1,2: spans/s at -cpu 2
// over spans/s at -cpu 1 is how well block building uses a second core. writers=1 is one
// block at a time, as before the concurrent writers.
func BenchmarkBuildBlocks(b *testing.B) {
	for _, bc := range []struct {
		name    string
		profile string
		writers int
	}{{"small", "small", 0}, {"small/writers=1", "small", 1}, {"guide", "guide", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			profile := bc.profile
			s, err := Open(Options{Dir: b.TempDir(), TraceIdle: time.Hour, TraceMaxAge: time.Hour,
				HeadMaxBytes: 1 << 30, FlushInterval: time.Hour, CompactMinBlocks: -1, BlockWriters: bc.writers})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			next, perReq, err := loadgen.Requests(profile, 1000, 7)
			if err != nil {
				b.Fatal(err)
			}
			var buf []byte
			spans := 0
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				for range 300_000 / perReq {
					buf = next(buf)
					if err := s.Append(buf); err != nil {
						b.Fatal(err)
					}
					spans += perReq
				}
				// The appends' garbage is collected here, untimed: left to the collector, its
				// cycles ran inside the timed Flush and were counted as block building.
				runtime.GC()
				b.StartTimer()
				c0 := cpuTime()
				if err := s.Flush(); err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime() - c0
			}
			st := s.Stats()
			b.ReportMetric(float64(spans)/b.Elapsed().Seconds(), "spans/s")
			b.ReportMetric(float64(spans)/cpu.Seconds(), "spans/cpu-s")
			b.ReportMetric(float64(st.BlockBytes)/float64(st.SpansFlushed), "disk-bytes/span")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
