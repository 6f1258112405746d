package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
)

func rssBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestOverload pushes far past what a deliberately small server can take: it must refuse with
// retryable errors instead of growing, and keep every span it acknowledged.
func TestOverload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and loads a server process")
	}
	const memLimit = 160 << 20
	dir := t.TempDir()
	cfgPath := filepath.Join(t.TempDir(), "ariadne.yaml")
	cfgYAML := fmt.Sprintf(`memory_limit_bytes: %d
ingest:
  max_head_bytes: 8388608
storage:
  trace_idle: 200ms
  block_max_bytes: 67108864
  block_max_wait: 3s
`, memLimit)
	// Cut traces wait up to 3s for a block while the head may hold only 8 MiB: at full speed the
	// burst fills that in well under a second, so the server must refuse for most of it.
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, dir, "--config", cfgPath)
	conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := coltracepb.NewTraceServiceClient(conn)

	var peak atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			if r := rssBytes(p.cmd.Process.Pid); r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	var mu sync.Mutex
	acked := map[string][]string{}
	var refused, other atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(5 * time.Second)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			for time.Now().Before(deadline) {
				req, want := crashRequest(rng, 5, 200) // 1000 spans in 5 traces
				_, err := client.Export(context.Background(), req)
				switch status.Code(err) {
				case codes.OK:
					mu.Lock()
					for k, v := range want {
						acked[k] = v
					}
					mu.Unlock()
				case codes.Unavailable, codes.ResourceExhausted:
					refused.Add(1) // a sender would back off and retry; this one just moves on
				default:
					other.Add(1)
					t.Errorf("non-retryable answer under overload: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	sampler.Wait()
	t.Logf("acknowledged %d traces, %d retryable refusals, peak RSS %.1f MiB (limit %d MiB)",
		len(acked), refused.Load(), float64(peak.Load())/(1<<20), memLimit>>20)
	if refused.Load() == 0 {
		t.Fatal("no retryable refusals: the burst did not exceed capacity, so nothing was tested")
	}
	if peak.Load() > memLimit {
		t.Fatalf("peak RSS %.1f MiB over the configured %d MiB", float64(peak.Load())/(1<<20), memLimit>>20)
	}
	checkAcknowledged(t, p.http, acked)
}
