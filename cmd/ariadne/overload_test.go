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
//
// The overload is made, not hoped for: nothing may leave the head (traces never go idle or old,
// blocks never fill or time out), so once the head holds max_head_bytes every further request
// must be refused, however fast or slow this machine is at the moment.
func TestOverload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and loads a server process")
	}
	const memLimit, maxHead = 160 << 20, 8 << 20
	// Each request carries 1000 spans, about 70 KiB as the head counts them (measured: the head
	// is full after about 115); this many is over ten times its capacity, so a server that never
	// refuses among them is not limiting.
	const maxRequests = 1500
	dir := t.TempDir()
	cfgPath := filepath.Join(t.TempDir(), "ariadne.yaml")
	cfgYAML := fmt.Sprintf(`memory_limit_bytes: %d
ingest:
  max_head_bytes: %d
storage:
  trace_idle: 1h
  trace_max_age: 1h
  head_cut_bytes: 268435456
  block_max_bytes: 268435456
  block_max_wait: 1h
`, memLimit, maxHead)
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
	var refused, other, sent atomic.Int64
	var wg sync.WaitGroup
	// Past capacity the server must keep refusing; 50 refusals show it does so steadily.
	enough := func() bool { return refused.Load() >= 50 || sent.Load() >= maxRequests }
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			for !enough() {
				sent.Add(1)
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
	t.Logf("%d requests: acknowledged %d traces, %d retryable refusals, peak RSS %.1f MiB (limit %d MiB)",
		sent.Load(), len(acked), refused.Load(), float64(peak.Load())/(1<<20), memLimit>>20)
	if refused.Load() == 0 {
		t.Fatalf("no retryable refusal in %d requests (over ten times max_head_bytes) while nothing could leave the head", sent.Load())
	}
	if peak.Load() > memLimit {
		t.Fatalf("peak RSS %.1f MiB over the configured %d MiB", float64(peak.Load())/(1<<20), memLimit>>20)
	}
	checkAcknowledged(t, p.http, acked)
}
