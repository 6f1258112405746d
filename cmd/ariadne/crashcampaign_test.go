package main

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
)

// TestKill9Campaign kills the server with SIGKILL at random moments while senders export and
// the flush loop writes and compacts blocks, restarts it on the same data each time, and checks
// that every span acknowledged so far is there. CI runs a few points; the long run is
//
//	ARIADNE_CRASH_POINTS=1000 go test -run TestKill9Campaign -timeout 0 ./cmd/ariadne
//
// (ARIADNE_CRASH_SEED=n repeats a campaign; the seed is logged.)
func TestKill9Campaign(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a server process")
	}
	points := 3
	if v := os.Getenv("ARIADNE_CRASH_POINTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("ARIADNE_CRASH_POINTS=%q", v)
		}
		points = n
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("ARIADNE_CRASH_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("ARIADNE_CRASH_SEED=%q", v)
		}
		seed = s
	}
	t.Logf("seed %d, %d kill points", seed, points)
	rng := rand.New(rand.NewPCG(seed, 1))

	dir := t.TempDir()
	// Short waits and eager compaction, so that a kill lands while blocks are being written,
	// merged and the WAL trimmed, not only during appends.
	cfgPath := filepath.Join(t.TempDir(), "ariadne.yaml")
	cfgYAML := "storage:\n  trace_idle: 100ms\n  block_max_wait: 150ms\n  compact_min_blocks: 2\n  compact_fresh_age: -1s\n  wal_segment_bytes: 65536\n"
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	acked := map[string][]string{}
	for point := 0; point < points; point++ {
		p := startProc(t, dir, "--config", cfgPath)
		if point > 0 {
			// Everything acknowledged in the round before the kill, and a sample of older rounds.
			check := map[string][]string{}
			for tid, spans := range acked {
				if len(check) < 400 || rng.IntN(10) == 0 {
					check[tid] = spans
				}
			}
			checkAcknowledged(t, p.http, check)
		}
		round := sendUntilKilled(t, p, rng.Uint64(), time.Duration(50+rng.IntN(1500))*time.Millisecond)
		for k, v := range round {
			acked[k] = v
		}
		if point%50 == 0 || point == points-1 {
			t.Logf("kill point %d: %d traces acknowledged so far", point+1, len(acked))
		}
	}
	p := startProc(t, dir, "--config", cfgPath)
	checkAcknowledged(t, p.http, acked)
}

// sendUntilKilled exports from a few senders, kills the server after wait, and returns what was
// acknowledged before the kill.
func sendUntilKilled(t *testing.T, p *proc, seed uint64, wait time.Duration) map[string][]string {
	conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := coltracepb.NewTraceServiceClient(conn)
	var mu sync.Mutex
	acked := map[string][]string{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, want := crashRequest(rng, 5, 4)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := client.Export(ctx, req)
				cancel()
				if err != nil {
					return // killed under us, or refused: not acknowledged either way
				}
				mu.Lock()
				for k, v := range want {
					acked[k] = v
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	time.Sleep(wait) // where the kill lands is what the campaign randomises; nothing waits on it
	p.kill9(t)
	close(stop)
	wg.Wait()
	return acked
}
