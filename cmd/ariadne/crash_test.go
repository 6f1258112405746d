package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// ariadneBinary builds the real binary once per test run: crash tests need a process to kill.
func ariadneBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ariadne-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ariadne")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// handedOut holds every address freeAddr has given in this test process: the kernel may give a
// just-closed port again, and a server started with two equal addresses cannot bind both.
var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

func freeAddr(t *testing.T) string {
	handedOut.Lock()
	defer handedOut.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr
		}
	}
}

type proc struct {
	cmd            *exec.Cmd
	grpcAddr, http string
	logs           *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func startProc(t *testing.T, dataDir string, extra ...string) *proc {
	t.Helper()
	return startNodeAt(t, dataDir, "", extra...)
}

// startNodeAt starts the server binary on dataDir with its query API at httpAddr, or on a free
// address when httpAddr is empty; a fixed address lets a restarted ingest node be found again
// by the query node that lists it as a peer. freeAddr's ports are free when chosen but may be
// taken by another test process before the server binds them; such a start is retried on fresh
// ports (a fixed address was released by the dead process, so it is kept).
func startNodeAt(t *testing.T, dataDir, httpAddr string, extra ...string) *proc {
	t.Helper()
	for attempt := 0; ; attempt++ {
		addr := httpAddr
		if addr == "" {
			addr = freeAddr(t)
		}
		p := &proc{grpcAddr: freeAddr(t), http: addr, logs: &syncBuffer{}}
		args := append([]string{"serve", "--data-dir", dataDir, "--otlp-grpc-addr", p.grpcAddr,
			"--otlp-http-addr", freeAddr(t), "--http-addr", p.http, "--zipkin-addr", ""}, extra...)
		p.cmd = exec.Command(ariadneBinary(t), args...)
		p.cmd.Stderr = p.logs
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if p.waitReady() {
			t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
			return p
		}
		p.cmd.Process.Kill()
		p.cmd.Wait()
		if !strings.Contains(p.logs.String(), "address already in use") || attempt == 4 {
			t.Fatalf("server not ready; logs:\n%s", p.logs.String())
		}
		if httpAddr != "" {
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// waitReady polls /ready until it answers 200, the server reports it could not start, or a
// minute and a half passes (a JetStream node may wait up to a minute for its cluster).
func (p *proc) waitReady() bool {
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + p.http + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return true
			}
		}
		if strings.Contains(p.logs.String(), "cannot start") {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func (p *proc) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil { // SIGKILL: no chance to flush anything
		t.Fatal(err)
	}
	p.cmd.Wait()
}

// crashRequest builds a request of traces×spans spans with random IDs.
func crashRequest(rng *rand.Rand, traces, spans int) (*coltracepb.ExportTraceServiceRequest, map[string][]string) {
	want := map[string][]string{}
	ss := &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: "crash-test"}}
	now := uint64(time.Now().UnixNano())
	for i := 0; i < traces; i++ {
		tid := make([]byte, 16)
		for j := range tid {
			tid[j] = byte(rng.IntN(256))
		}
		var parent []byte
		for j := 0; j < spans; j++ {
			sid := make([]byte, 8)
			for k := range sid {
				sid[k] = byte(rng.IntN(255) + 1)
			}
			ss.Spans = append(ss.Spans, &tracepb.Span{TraceId: tid, SpanId: sid, ParentSpanId: parent,
				Name: fmt.Sprintf("op-%d", j), StartTimeUnixNano: now, EndTimeUnixNano: now + 1e6,
				Attributes: []*commonpb.KeyValue{{Key: "i", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: int64(j)}}}}})
			parent = sid
			want[fmt.Sprintf("%x", tid)] = append(want[fmt.Sprintf("%x", tid)], fmt.Sprintf("%x", sid))
		}
	}
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "crash"}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{ss},
	}}}, want
}

// spanIDs reads a trace through the API and returns its span IDs, sorted.
func spanIDs(t *testing.T, httpAddr, traceID string) []string {
	t.Helper()
	ids, err := readSpanIDs(httpAddr, traceID)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// readSpanIDs is spanIDs for goroutines other than the test's, which must not call t.Fatal.
func readSpanIDs(httpAddr, traceID string) ([]string, error) {
	return readSpanIDsAs(httpAddr, "", traceID)
}

// readSpanIDsAs reads the trace as tenant (X-Scope-OrgID; none when empty).
func readSpanIDsAs(httpAddr, tenant, traceID string) ([]string, error) {
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/api/v2/traces/%s", httpAddr, traceID), nil)
	req.Header.Set("Accept", "application/protobuf")
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 404 {
		return nil, nil
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("trace %s: %d %s", traceID, resp.StatusCode, body)
	}
	_, _, n := protowire.ConsumeTag(body)
	inner, _ := protowire.ConsumeBytes(body[n:])
	td := &tracepb.TracesData{}
	if err := proto.Unmarshal(inner, td); err != nil {
		return nil, err
	}
	var ids []string
	for _, rs := range td.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				ids = append(ids, fmt.Sprintf("%x", sp.SpanId))
			}
		}
	}
	sort.Strings(ids)
	return ids, nil
}

func checkAcknowledged(t *testing.T, httpAddr string, acked map[string][]string) {
	t.Helper()
	ids := make(chan string)
	var missing atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tid := range ids {
				want := append([]string(nil), acked[tid]...)
				sort.Strings(want)
				got := spanIDs(t, httpAddr, tid)
				if strings.Join(got, ",") != strings.Join(want, ",") && missing.Add(1) <= 3 {
					t.Errorf("trace %s: got spans %v, want %v", tid, got, want)
				}
			}
		}()
	}
	for tid := range acked {
		ids <- tid
	}
	close(ids)
	wg.Wait()
	if n := missing.Load(); n > 0 {
		t.Fatalf("%d of %d acknowledged traces are not intact after the crash", n, len(acked))
	}
}

func TestKill9LosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a server process")
	}
	dir := t.TempDir()
	// Short idle and block waits make blocks get written while requests arrive, so the kill
	// lands with data in blocks, in the head and in the WAL at once. Set through a config file,
	// which this also exercises.
	cfgPath := filepath.Join(t.TempDir(), "ariadne.yaml")
	cfgYAML := "storage:\n  trace_idle: 200ms\n  block_max_wait: 300ms\n"
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

	var mu sync.Mutex
	acked := map[string][]string{}
	var ackCount atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
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
					return // the server died under us: this request was never acknowledged
				}
				mu.Lock()
				for k, v := range want {
					acked[k] = v
				}
				mu.Unlock()
				ackCount.Add(1)
				time.Sleep(10 * time.Millisecond) // a steady sender, not a flood: the check reads every trace back
			}
		}()
	}
	deadline := time.Now().Add(time.Minute)
	for {
		blocks, _ := filepath.Glob(filepath.Join(dir, "blocks", "*", "meta.json"))
		if ackCount.Load() >= 400 && len(blocks) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a minute: %d requests acknowledged, %d blocks written", ackCount.Load(), len(blocks))
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.kill9(t) // while the senders are still sending
	close(stop)
	wg.Wait()
	t.Logf("%d requests acknowledged before SIGKILL (%d traces) after %v", ackCount.Load(), len(acked), time.Since(deadline.Add(-time.Minute)))

	p = startProc(t, dir, "--config", cfgPath)
	checkAcknowledged(t, p.http, acked)
}

func TestTornWALRecordIsSkipped(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a server process")
	}
	dir := t.TempDir()
	p := startProc(t, dir, "--trace-idle", "1h") // keep everything in the WAL
	conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := coltracepb.NewTraceServiceClient(conn)
	rng := rand.New(rand.NewPCG(1, 2))
	var reqs []map[string][]string
	for i := 0; i < 20; i++ {
		req, want := crashRequest(rng, 3, 4)
		if _, err := client.Export(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, want)
	}
	p.kill9(t)

	segs, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	sort.Strings(segs)
	var last string
	for _, s := range segs {
		if fi, _ := os.Stat(s); fi.Size() > 0 {
			last = s
		}
	}
	fi, _ := os.Stat(last)
	// Cut into the last record, as a crash in the middle of its write would.
	if err := os.Truncate(last, fi.Size()-7); err != nil {
		t.Fatal(err)
	}

	p = startProc(t, dir, "--trace-idle", "1h")
	if !strings.Contains(p.logs.String(), "torn") {
		t.Errorf("no log line about the torn record:\n%s", p.logs.String())
	}
	before := map[string][]string{}
	for _, r := range reqs[:19] {
		for k, v := range r {
			before[k] = v
		}
	}
	checkAcknowledged(t, p.http, before)
	for tid := range reqs[19] {
		if got := spanIDs(t, p.http, tid); len(got) != 0 {
			t.Errorf("trace %s of the torn record came back with %d spans", tid, len(got))
		}
	}
}

func TestSIGTERMFlushesAndStops(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and stops a server process")
	}
	dir := t.TempDir()
	p := startProc(t, dir, "--trace-idle", "1h") // nothing would reach a block on its own
	conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	acked := map[string][]string{}
	for i := 0; i < 10; i++ {
		req, want := crashRequest(rng, 4, 3)
		if _, err := coltracepb.NewTraceServiceClient(conn).Export(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		for k, v := range want {
			acked[k] = v
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logs.String())
	}
	blocks, _ := filepath.Glob(filepath.Join(dir, "blocks", "*", "meta.json"))
	segs, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if len(blocks) != 1 || len(segs) != 0 {
		t.Fatalf("after SIGTERM: %d blocks (want 1), %d WAL segments left (want 0)", len(blocks), len(segs))
	}
	p = startProc(t, dir, "--trace-idle", "1h")
	if !strings.Contains(p.logs.String(), "ready") || strings.Contains(p.logs.String(), "replayed") {
		t.Errorf("restart after a clean stop replayed the WAL:\n%s", p.logs.String())
	}
	checkAcknowledged(t, p.http, acked)
}
