package loadgen

import (
	"context"
	"os"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
)

func TestTemplateFillsFreshIDsAndTimes(t *testing.T) {
	for _, profile := range Profiles {
		tmpl, err := buildProfile(profile, 100)
		if err != nil {
			t.Fatal(err)
		}
		rng := &fastRand{s: 42}
		seenSpan := map[string]bool{}
		seenTrace := map[string]bool{}
		now := uint64(1_800_000_000_000_000_000)
		for round := 0; round < 3; round++ {
			var req coltracepb.ExportTraceServiceRequest
			if err := proto.Unmarshal(tmpl.fill(nil, rng, now), &req); err != nil {
				t.Fatalf("%s: filled request does not decode: %v", profile, err)
			}
			ids := map[string]bool{}
			roundTraces := map[string]bool{}
			traceEnd := map[string]uint64{}
			for _, rs := range req.ResourceSpans {
				for _, ss := range rs.ScopeSpans {
					for _, sp := range ss.Spans {
						if seenSpan[string(sp.SpanId)] {
							t.Fatalf("%s: span ID reused across sends", profile)
						}
						seenSpan[string(sp.SpanId)] = true
						ids[string(sp.SpanId)] = true
						roundTraces[string(sp.TraceId)] = true
						// No span may lie in the future of the send, and none far in its past.
						if sp.EndTimeUnixNano > now || sp.StartTimeUnixNano < now-uint64(time.Minute) || sp.EndTimeUnixNano < sp.StartTimeUnixNano {
							t.Fatalf("%s: times not shifted to now: %d..%d (now %d)", profile, sp.StartTimeUnixNano, sp.EndTimeUnixNano, now)
						}
						for _, ev := range sp.Events {
							if ev.TimeUnixNano < sp.StartTimeUnixNano || ev.TimeUnixNano > now {
								t.Fatalf("%s: event time %d outside its span or after now", profile, ev.TimeUnixNano)
							}
						}
						traceEnd[string(sp.TraceId)] = max(traceEnd[string(sp.TraceId)], sp.EndTimeUnixNano)
					}
				}
			}
			// Every trace ends at the moment it is sent.
			for tid, end := range traceEnd {
				if end != now {
					t.Fatalf("%s: trace %x ends at %d, %v from the send", profile, tid, end, time.Duration(int64(now)-int64(end)))
				}
			}
			for tid := range roundTraces {
				if seenTrace[tid] {
					t.Fatalf("%s: trace ID reused across sends", profile)
				}
				seenTrace[tid] = true
			}
			// Parents must still point at spans of the same request (the tree survives patching).
			for _, rs := range req.ResourceSpans {
				for _, ss := range rs.ScopeSpans {
					for _, sp := range ss.Spans {
						if len(sp.ParentSpanId) > 0 && !ids[string(sp.ParentSpanId)] {
							t.Fatalf("%s: parent %x not in the request", profile, sp.ParentSpanId)
						}
					}
				}
			}
		}
	}
}

func TestRunAgainstServer(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.OTLPGRPCAddr, cfg.OTLPHTTPAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ZipkinAddr = "127.0.0.1:0"
	s, err := server.Start(cfg, api.BuildInfo{Version: "test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	for _, c := range []struct{ protocol, addr, profile string }{
		{"grpc", s.GRPCAddr, "small"}, {"http", s.OTLPHTTPAddr, "guide"}, {"grpc", s.GRPCAddr, "wide"},
	} {
		before := s.Store.Head().Stats().Spans
		rep, err := Run(context.Background(), Config{Endpoint: c.addr, Protocol: c.protocol, Profile: c.profile,
			Batch: 100, Concurrency: 2, Requests: 10, PID: os.Getpid()})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Failed != 0 || rep.Refused != 0 || rep.Requests != 10 {
			t.Fatalf("%+v", rep)
		}
		if got := s.Store.Head().Stats().Spans - before; got != rep.Spans {
			t.Fatalf("%s: server holds %d new spans, loadgen reports %d acknowledged", c.profile, got, rep.Spans)
		}
		if rep.Server == nil || rep.ServerPeakRSS == 0 {
			t.Fatalf("no process stats: %+v", rep)
		}
	}
}

// TestSearchableProbe runs the acknowledgement-to-searchable probe against a real server. The
// head indexes a request before it is acknowledged, so every probe must be found by the first
// search after its acknowledgement: a miss means a span was acknowledged before it was
// searchable. How long that takes is a benchmark figure (BENCHMARKS.md), not asserted here.
func TestSearchableProbe(t *testing.T) {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.OTLPGRPCAddr, cfg.OTLPHTTPAddr, cfg.HTTPAddr, cfg.ZipkinAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", ""
	s, err := server.Start(cfg, api.BuildInfo{Version: "test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	rep, err := Run(context.Background(), Config{Endpoint: s.GRPCAddr, Batch: 100, Concurrency: 1, Rate: 2000,
		Duration: 3500 * time.Millisecond, SearchURL: "http://" + s.HTTPAddr})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Probes < 2 {
		t.Fatalf("%d probes found", rep.Probes)
	}
	if rep.ProbeMisses != 0 {
		t.Fatalf("%d searches after an acknowledgement did not find the probe (of %d probes)", rep.ProbeMisses, rep.Probes)
	}
	t.Logf("%d probes, acknowledgement to found: max %v", rep.Probes, rep.Searchable.Max)
}
