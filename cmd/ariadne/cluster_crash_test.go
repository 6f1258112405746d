package main

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/testkit/miniotest"
)

// An ingest node killed with SIGKILL mid-ingest and restarted with its data folder loses
// nothing acknowledged (its WAL, its queued and uploaded blocks); stopped cleanly and started
// with an empty folder, nothing is lost either, since everything is in the bucket. A separate
// query node reads every acknowledged trace back both times.
func TestIngestNodeKill9AndEmptyRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills server processes")
	}
	srv := miniotest.Start(t)
	cfgPath := filepath.Join(t.TempDir(), "ariadne.yaml")
	cfgYAML := "storage:\n  trace_idle: 200ms\n  block_max_wait: 300ms\n" +
		"cluster:\n  poll_interval: 100ms\n  upload_hold: 2s\nmetrics_generator:\n  disabled: true\n"
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	// Credentials through the environment, as an operator would give them.
	t.Setenv("AWS_ACCESS_KEY_ID", miniotest.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", miniotest.SecretKey)
	s3 := []string{"--config", cfgPath, "--storage-backend", "s3", "--s3-endpoint", srv.Endpoint, "--s3-bucket", "ariadne",
		"--s3-prefix", "crash", "--s3-insecure"}
	ingestDir := t.TempDir()
	ingestHTTP := freeAddr(t)
	ing := startNodeAt(t, ingestDir, ingestHTTP, append([]string{"--target", "ingest"}, s3...)...)
	q := startProc(t, t.TempDir(), append([]string{"--target", "query", "--cluster-peers", ingestHTTP}, s3...)...)

	conn, err := grpc.NewClient(ing.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := coltracepb.NewTraceServiceClient(conn)
	var mu sync.Mutex
	acked := map[string][]string{}
	var ackCount atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, want := crashRequest(rng, 10, 5)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := client.Export(ctx, req)
				cancel()
				if err != nil {
					return // the node died under us: never acknowledged
				}
				mu.Lock()
				for k, v := range want {
					acked[k] = v
				}
				mu.Unlock()
				ackCount.Add(1)
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	deadline := time.Now().Add(time.Minute)
	for {
		uploaded, _ := os.ReadDir(filepath.Join(ingestDir, "uploaded"))
		if ackCount.Load() >= 150 && len(uploaded) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a minute: %d requests acknowledged, %d blocks uploaded", ackCount.Load(), len(uploaded))
		}
		time.Sleep(5 * time.Millisecond)
	}
	ing.kill9(t) // mid-ingest: data in the head, the WAL, local blocks and the bucket at once
	close(stop)
	wg.Wait()
	t.Logf("%d requests acknowledged before SIGKILL (%d traces)", ackCount.Load(), len(acked))

	ing = startNodeAt(t, ingestDir, ingestHTTP, append([]string{"--target", "ingest"}, s3...)...)
	checkAcknowledged(t, q.http, acked)

	// A clean stop uploads the last block; a node started on an empty disk holds nothing, so
	// everything the query node finds now comes from the bucket.
	if err := ing.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := ing.cmd.Wait(); err != nil {
		t.Fatalf("clean stop: %v\n%s", err, ing.logs.String())
	}
	ing = startNodeAt(t, t.TempDir(), ingestHTTP, append([]string{"--target", "ingest"}, s3...)...)
	checkAcknowledged(t, q.http, acked)
}
