package store

import (
	"encoding/binary"
	"strconv"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// BenchmarkCheckSplits measures what looking for earlier parts of new traces costs the flush
// loop, per new trace, with blocks holding 20,000 traces each (64 blocks: about what waits for
// compaction in a busy minute, compact_fresh_age): a bloom filter test per block,
// and, for the bloom's false positives (1% per block), the in-memory trace ID prefixes.
//
//	go test -run xxx -bench CheckSplits ./internal/storage/store/
func BenchmarkCheckSplits(b *testing.B) {
	for _, blocks := range []int{4, 16, 64} {
		b.Run("blocks="+strconv.Itoa(blocks), func(b *testing.B) {
			s := open(b, b.TempDir(), nil)
			defer s.Close()
			now := time.Now()
			next := uint64(1)
			batch := func(n int) []byte {
				spans := make([]*tracepb.Span, n)
				for i := range spans {
					tid := make([]byte, 16)
					binary.BigEndian.PutUint64(tid, next*0x9e3779b97f4a7c15)
					binary.BigEndian.PutUint64(tid[8:], next)
					next++
					spans[i] = &tracepb.Span{TraceId: tid, SpanId: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Name: "op",
						StartTimeUnixNano: uint64(now.UnixNano()), EndTimeUnixNano: uint64(now.UnixNano()) + 1000}
				}
				return req(b, "svc", spans...)
			}
			for range blocks {
				if err := s.Append(batch(20000)); err != nil {
					b.Fatal(err)
				}
				if err := s.Flush(); err != nil {
					b.Fatal(err)
				}
			}
			var spent time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				if err := s.Append(batch(1000)); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				t0 := time.Now()
				s.head.CheckSplits(s.inBlocks)
				spent += time.Since(t0)
			}
			// ns/op also counts the appends between the timed calls on this toolchain, so the
			// figure to read is ns per new trace, timed around CheckSplits alone.
			b.ReportMetric(float64(spent.Nanoseconds())/float64(b.N*1000), "ns/new-trace")
		})
	}
}
