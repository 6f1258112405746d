package server_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
	"github.com/ariadne-tracing/ariadne/internal/storage/vfs"
	"github.com/ariadne-tracing/ariadne/internal/testkit/faultfs"
)

// waitFor polls cond until it holds; what it waits for is caused by the test, not by time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With the disk full under the WAL, exports are refused as retryable (gRPC Unavailable with
// RetryInfo, HTTP 503 with Retry-After), counted under their own reason, /ready says writes are
// not accepted while /live stays 200; the real SDKs keep retrying, and once there is room again
// the server recovers by itself and every span the SDKs sent is stored. Before, the receivers
// answered Internal/500, which SDKs do not retry: the data was dropped.
func TestDiskFullIsRetryableAndRecovers(t *testing.T) {
	dir := t.TempDir()
	ffs := faultfs.New(vfs.OS)
	s, err := server.Start(testConfig(dir), api.BuildInfo{Version: "test"}, nil, server.WithFS(ffs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	base := "http://" + s.HTTPAddr
	client := grpcClient(t, s)
	ctx := context.Background()
	if _, err := client.Export(ctx, request(validSpan(1, 1))); err != nil {
		t.Fatalf("export before the disk filled: %v", err)
	}

	walDir := filepath.Join(dir, "wal")
	ffs.Inject(faultfs.Fault{Op: faultfs.OpWrite, PathContains: walDir, Err: syscall.ENOSPC, Torn: true})

	_, err = client.Export(ctx, request(validSpan(2, 1)))
	st := status.Convert(err)
	if st.Code() != codes.Unavailable {
		t.Fatalf("export on a full disk: %v, want Unavailable", err)
	}
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri
		}
	}
	if retry == nil || retry.RetryDelay.AsDuration() <= 0 {
		t.Fatalf("no RetryInfo with the refusal: %v", st.Details())
	}
	body, _ := proto.Marshal(request(validSpan(3, 1)))
	hr, hb := post(t, "http://"+s.OTLPHTTPAddr+"/v1/traces", "application/x-protobuf", body)
	if hr.StatusCode != 503 || hr.Header.Get("Retry-After") == "" {
		t.Fatalf("HTTP export on a full disk: %d %q, Retry-After %q", hr.StatusCode, hb, hr.Header.Get("Retry-After"))
	}
	if code, b := httpGet(t, base+"/ready", ""); code != 503 || !strings.Contains(string(b), "not accepting writes") {
		t.Fatalf("/ready on a full disk: %d %q", code, b)
	}
	if code, _ := httpGet(t, base+"/live", ""); code != 200 {
		t.Fatalf("/live on a full disk: %d", code)
	}
	fams := scrape(t, s)
	if v := metricValue(fams, "ariadne_ingest_spans_refused_total", map[string]string{"reason": "storage_unavailable"}); v != 2 {
		t.Fatalf("storage_unavailable refusals = %v, want 2", v)
	}
	if v := metricValue(fams, "ariadne_wal_writable", nil); v != 0 {
		t.Fatalf("ariadne_wal_writable = %v on a full disk", v)
	}

	// The real SDKs, over both protocols, export while the disk is full; they retry.
	var providers []*sdktrace.TracerProvider
	var traceIDs [][16]byte
	for _, protocol := range []string{"grpc", "http"} {
		var exp sdktrace.SpanExporter
		switch protocol {
		case "grpc":
			exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(s.GRPCAddr), otlptracegrpc.WithInsecure(),
				otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: true, InitialInterval: 50 * time.Millisecond,
					MaxInterval: 500 * time.Millisecond, MaxElapsedTime: 2 * time.Minute}))
		case "http":
			exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(s.OTLPHTTPAddr), otlptracehttp.WithInsecure(),
				otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: true, InitialInterval: 50 * time.Millisecond,
					MaxInterval: 500 * time.Millisecond, MaxElapsedTime: 2 * time.Minute}))
		}
		if err != nil {
			t.Fatal(err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithExportTimeout(3*time.Minute)))
		providers = append(providers, tp)
		for i := 0; i < 3; i++ {
			_, span := tp.Tracer("diskfull").Start(ctx, fmt.Sprintf("%s-%d", protocol, i))
			traceIDs = append(traceIDs, span.SpanContext().TraceID())
			span.End()
		}
	}
	flushed := make(chan error, len(providers))
	for _, tp := range providers {
		go func() { flushed <- tp.ForceFlush(ctx) }()
	}
	// Both SDKs have been refused at least once (2 spans refused before, 3 per SDK since).
	waitFor(t, "both SDKs to be refused", func() bool {
		return metricValue(scrape(t, s), "ariadne_ingest_spans_refused_total", map[string]string{"reason": "storage_unavailable"}) >= 2+6
	})
	select {
	case err := <-flushed:
		t.Fatalf("an SDK flush finished while the disk was full: %v", err)
	default:
	}

	ffs.Clear() // space returns
	for range providers {
		if err := <-flushed; err != nil {
			t.Fatalf("SDK flush after space returned: %v", err)
		}
	}
	waitFor(t, "/ready after space returned", func() bool { code, _ := httpGet(t, base+"/ready", ""); return code == 200 })
	for _, id := range traceIDs {
		if code, b := httpGet(t, fmt.Sprintf("%s/api/traces/%x", base, id), "application/json"); code != 200 {
			t.Fatalf("trace %x sent while the disk was full: %d %s", id, code, b)
		}
	}
	for _, tp := range providers {
		tp.Shutdown(ctx)
	}
	if v := metricValue(scrape(t, s), "ariadne_wal_writable", nil); v != 1 {
		t.Fatalf("ariadne_wal_writable = %v after recovery", v)
	}
}

// With the server up, the WAL recovers without any sender: the prober starts a new segment once
// the disk has room, and /ready turns 200 again on its own.
func TestReadyRecoversWithoutTraffic(t *testing.T) {
	dir := t.TempDir()
	ffs := faultfs.New(vfs.OS)
	s, err := server.Start(testConfig(dir), api.BuildInfo{Version: "test"}, nil, server.WithFS(ffs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop(context.Background()) })
	base := "http://" + s.HTTPAddr
	ffs.Inject(faultfs.Fault{Op: faultfs.OpSync, PathContains: filepath.Join(dir, "wal"), Err: syscall.EIO})
	if _, err := grpcClient(t, s).Export(context.Background(), request(validSpan(4, 1))); status.Code(err) != codes.Unavailable {
		t.Fatalf("export with failing fsync: %v", err)
	}
	if code, _ := httpGet(t, base+"/ready", ""); code != 503 {
		t.Fatalf("/ready with failing fsync: %d", code)
	}
	ffs.Clear()
	waitFor(t, "/ready without traffic", func() bool { code, _ := httpGet(t, base+"/ready", ""); return code == 200 })
}

// copyDir copies a data directory as it is on disk now: what a crash at this moment would leave
// for the next start (the WAL is the only copy of everything here: nothing was flushed).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Each WAL operation fails in turn (write, fsync, directory sync, segment creation), with ENOSPC
// and EIO, in the middle of a run of exports through real gRPC. Refused exports are Unavailable;
// a server started on what is then on disk has every acknowledged span.
func TestEachWALFaultThenRestart(t *testing.T) {
	for _, op := range []faultfs.Op{faultfs.OpWrite, faultfs.OpSync, faultfs.OpSyncDir, faultfs.OpCreate} {
		for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EIO} {
			t.Run(fmt.Sprintf("%v-%v", op, errno), func(t *testing.T) {
				dir := t.TempDir()
				cfg := testConfig(dir)
				cfg.Storage.TraceIdle = config.Duration(time.Hour) // everything stays in the WAL
				cfg.Storage.WALSegment = 1 << 10                   // rolls every few requests
				ffs := faultfs.New(vfs.OS)
				// Skip the start (first segment) and a few operations, then fail two in a row.
				ffs.Inject(faultfs.Fault{Op: op, PathContains: filepath.Join(dir, "wal"), Skip: 3, Count: 2, Err: errno, Torn: true})
				s, err := server.Start(cfg, api.BuildInfo{Version: "test"}, nil, server.WithFS(ffs))
				if err != nil {
					t.Fatal(err)
				}
				defer s.Stop(context.Background())
				client := grpcClient(t, s)
				acked := map[byte]bool{}
				refused := 0
				for i := 1; i <= 40; i++ {
					id := byte(i)
					_, err := client.Export(context.Background(), request(validSpan(id, 1), validSpan(id, 2)))
					switch status.Code(err) {
					case codes.OK:
						acked[id] = true
					case codes.Unavailable:
						refused++
					default:
						t.Fatalf("export %d: %v", i, err)
					}
				}
				if ffs.Fired() == 0 || refused == 0 {
					t.Fatalf("the fault never fired (%d fired, %d refused)", ffs.Fired(), refused)
				}
				crashed := t.TempDir()
				copyDir(t, dir, crashed)
				s2 := startServer(t, testConfig(crashed))
				for id := range acked {
					code, b := httpGet(t, fmt.Sprintf("http://%s/api/v2/traces/%x", s2.HTTPAddr, bytes.Repeat([]byte{id}, 16)), "")
					if code != 200 || strings.Count(string(b), `"spanId"`) != 2 {
						t.Fatalf("acknowledged trace %d after restart: %d %.200s", id, code, b)
					}
				}
				t.Logf("%d acknowledged, %d refused, all acknowledged present after restart", len(acked), refused)
			})
		}
	}
}

// Many senders export spans of one trace at once over real gRPC: the spans-per-trace limit holds
// exactly, and once the head is flushed its byte, span and trace gauges are back at zero (before,
// concurrent commits to one trace counted each other's bytes and the head gauge drifted up until
// every export was refused as overloaded).
func TestOneTraceHammeredFromManySenders(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Storage.TraceIdle = config.Duration(time.Hour)
	cfg.Ingest.MaxSpansPerTrace = 400
	s := startServer(t, cfg)
	client := grpcClient(t, s)
	const senders, requests, perRequest = 16, 15, 6
	var wg sync.WaitGroup
	var accepted atomic.Int64
	for g := 0; g < senders; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < requests; r++ {
				var spans []*tracepb.Span
				for i := 0; i < perRequest; i++ {
					sp := validSpan(0x77, 1)
					n := (g*requests+r)*perRequest + i + 1
					sp.SpanId = []byte{byte(n), byte(n >> 8), 1, 1, 1, 1, 1, 1}
					spans = append(spans, sp)
				}
				resp, err := client.Export(context.Background(), request(spans...))
				if err != nil {
					t.Error(err)
					return
				}
				accepted.Add(int64(perRequest) - resp.PartialSuccess.GetRejectedSpans())
			}
		}()
	}
	wg.Wait()
	if accepted.Load() != 400 {
		t.Fatalf("%d spans acknowledged against a limit of 400", accepted.Load())
	}
	if err := s.Store.Flush(); err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, s)
	for _, m := range []string{"ariadne_head_bytes", "ariadne_head_spans", "ariadne_head_traces"} {
		if v := metricValue(fams, m, nil); v != 0 {
			t.Fatalf("%s = %v after the head was flushed", m, v)
		}
	}
	_, b := httpGet(t, fmt.Sprintf("http://%s/api/v2/traces/%x", s.HTTPAddr, bytes.Repeat([]byte{0x77}, 16)), "")
	if n := strings.Count(string(b), `"spanId"`); n != 400 {
		t.Fatalf("the trace holds %d spans, want 400", n)
	}
}

// Bytes flipped in the middle of a WAL segment on disk: a server started on it loses exactly the
// damaged record's trace, says so in its metrics, keeps a copy of the segment in quarantine, and
// serves every other acknowledged trace (before, replay stopped at the damage and truncated every
// later record away).
func TestMidSegmentWALDamageLosesOnlyThatRecord(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.Storage.TraceIdle = config.Duration(time.Hour) // everything stays in the WAL
	s := startServer(t, cfg)
	client := grpcClient(t, s)
	for i := 1; i <= 30; i++ {
		if _, err := client.Export(context.Background(), request(validSpan(byte(i), 1), validSpan(byte(i), 2))); err != nil {
			t.Fatal(err)
		}
	}
	crashed := t.TempDir()
	copyDir(t, dir, crashed)
	// Walk each segment's records (format v2: 8-byte segment header; 20-byte record header with
	// the payload length at +4) and flip 4 bytes in the payload of a record in the middle of the
	// segment holding the most (the flush loop rolls segments, so there may be several).
	segs, _ := filepath.Glob(filepath.Join(crashed, "wal", "*.wal"))
	var seg string
	var offs, lens []int
	for _, p := range segs {
		data, _ := os.ReadFile(p)
		var o, l []int
		for off := 8; off+20 <= len(data); {
			n := int(data[off+4]) | int(data[off+5])<<8 | int(data[off+6])<<16 | int(data[off+7])<<24
			o, l = append(o, off), append(l, n)
			off += 20 + n
		}
		if len(o) > len(offs) {
			seg, offs, lens = p, o, l
		}
	}
	if len(offs) < 3 {
		t.Fatalf("no segment with 3 records or more: %v", segs)
	}
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	k := len(offs) / 2
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(data[offs[k]+20:offs[k]+20+lens[k]], &req); err != nil {
		t.Fatal(err)
	}
	damaged := req.ResourceSpans[0].ScopeSpans[0].Spans[0].TraceId
	for j := 0; j < 4; j++ {
		data[offs[k]+20+lens[k]/2+j] ^= 0xff
	}
	if err := os.WriteFile(seg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	s2 := startServer(t, testConfig(crashed))
	for i := 1; i <= 30; i++ {
		id := bytes.Repeat([]byte{byte(i)}, 16)
		code, _ := httpGet(t, fmt.Sprintf("http://%s/api/v2/traces/%x", s2.HTTPAddr, id), "")
		want := 200
		if bytes.Equal(id, damaged) {
			want = 404
		}
		if code != want {
			t.Fatalf("trace %d: %d, want %d", i, code, want)
		}
	}
	fams := scrape(t, s2)
	for _, c := range []struct {
		name string
		want float64
	}{{"ariadne_wal_replay_lost_records", 1}, {"ariadne_wal_replay_damaged_segments", 1}, {"ariadne_wal_replayed_records", 29}} {
		if v := metricValue(fams, c.name, nil); v != c.want {
			t.Fatalf("%s = %v, want %v", c.name, v, c.want)
		}
	}
	if q, _ := filepath.Glob(filepath.Join(crashed, "wal", "quarantine", "*.wal")); len(q) != 1 {
		t.Fatalf("quarantine holds %v", q)
	}
}
