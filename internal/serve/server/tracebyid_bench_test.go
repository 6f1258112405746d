package server_test

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
)

// BenchmarkTraceByIDLarge reads one 200,000-span trace through the real HTTP API, from the head
// and from blocks, as JSON and protobuf. Besides time and allocations it reports the answer's
// size and the heap's peak growth during the read (sampled every millisecond), which is the
// "extra memory" a large trace costs.
//
//	go test -run '^$' -bench TraceByIDLarge -benchtime 3x ./internal/serve/server/
func BenchmarkTraceByIDLarge(b *testing.B) {
	cfg := testConfig(b.TempDir())
	cfg.Ingest.MaxRequestBytes = 16 << 20
	cfg.Ingest.MaxSpansPerTrace = -1
	cfg.Ingest.MaxHeadBytes = 1 << 30
	cfg.Storage.HeadCutBytes = 1 << 30
	cfg.Storage.TraceIdle = config.Duration(time.Hour)
	cfg.Storage.TraceMaxAge = config.Duration(time.Hour)
	s, err := server.Start(cfg, api.BuildInfo{Version: "bench"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Stop(context.Background())
	id := bigTrace(b, s, 200_000, 7)
	url := "http://" + s.HTTPAddr + "/api/v2/traces/" + hex.EncodeToString(id[:])
	for _, where := range []string{"head", "blocks"} {
		if where == "blocks" {
			if err := s.Store.Flush(); err != nil {
				b.Fatal(err)
			}
		}
		for _, accept := range []string{"application/json", "application/protobuf"} {
			b.Run(where+"/"+accept[len("application/"):], func(b *testing.B) {
				var size int64
				var peak int64
				for b.Loop() {
					runtime.GC()
					base := heapBytes()
					var top atomic.Int64
					stop := make(chan struct{})
					done := make(chan struct{})
					go func() {
						defer close(done)
						for {
							if h := heapBytes() - base; h > top.Load() {
								top.Store(h)
							}
							select {
							case <-stop:
								return
							case <-time.After(time.Millisecond):
							}
						}
					}()
					req, _ := http.NewRequest("GET", url, nil)
					req.Header.Set("Accept", accept)
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					close(stop)
					<-done
					if resp.StatusCode != 200 || n < 1<<20 {
						b.Fatalf("%d, %d bytes", resp.StatusCode, n)
					}
					size = n
					peak = max(peak, top.Load())
				}
				b.ReportMetric(float64(size)/(1<<20), "answer-MiB")
				b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			})
		}
	}
}

func heapBytes() int64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}
