package server_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/samplers/jaegerremote"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/ariadne-tracing/ariadne/internal/pipeline/headsampling"
	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
)

// spreadIDs gives trace IDs whose sampling halves (the bytes the SDK's ratio sampler reads) step
// by the golden ratio: any run of N of them holds p×N below any bound p, give or take a few, so
// the SDK's sampled counts are exact enough to assert on instead of hoping for randomness.
type spreadIDs struct{ n uint64 }

func (g *spreadIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	g.n++
	var tid trace.TraceID
	binary.BigEndian.PutUint64(tid[:8], g.n)
	binary.BigEndian.PutUint64(tid[8:], g.n*0x9E3779B97F4A7C15)
	var sid trace.SpanID
	binary.BigEndian.PutUint64(sid[:], g.n)
	return tid, sid
}

func (g *spreadIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	g.n++
	var sid trace.SpanID
	binary.BigEndian.PutUint64(sid[:], g.n)
	return sid
}

// fetchSignal fetches strategies from Ariadne over HTTP exactly as the sampler's own fetcher
// does, and reports each answer, so the test knows when the sampler's first poll is done and
// every later update is one the test asked for.
type fetchSignal struct {
	url     string
	fetched chan struct{}
}

func (f *fetchSignal) Fetch(service string) ([]byte, error) {
	defer func() {
		select {
		case f.fetched <- struct{}{}:
		default:
		}
	}()
	resp, err := http.Get(f.url + "?" + url.Values{"service": {service}}.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return b, nil
}

func TestHeadSamplingAdaptsThroughJaegerRemoteSampler(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	zero, one := 0.0, 1.0
	cfg.Sampling.Remote = headsampling.Config{
		DefaultProbability: &one,
		// No rate-limited floor, so the SDK's sampled counts are its probability's alone.
		LowerBoundTracesPerSecond: &zero,
		Services:                  map[string]headsampling.Service{"shop": {Operations: map[string]float64{"GET /health": 0}}},
		// The interval is out of reach: the test steps the adapter with its own clock.
		Adaptive: headsampling.Adaptive{Enabled: true, TargetTracesPerSecond: 1, MaxStep: 4, MinProbability: 0.001, Interval: time.Hour},
	}
	s := startServer(t, cfg)
	if s.HeadSampling == nil {
		t.Fatal("adaptive head sampling configured but no adapter")
	}
	ctx := context.Background()

	fetch := &fetchSignal{url: "http://" + s.HTTPAddr + "/api/sampling", fetched: make(chan struct{}, 1)}
	sampler := jaegerremote.New("shop", jaegerremote.WithSamplingStrategyFetcher(fetch),
		jaegerremote.WithSamplingRefreshInterval(time.Hour), jaegerremote.WithInitialSampler(sdktrace.AlwaysSample()))
	defer sampler.Close()
	<-fetch.fetched // the sampler's own first poll; from here on it fetches only when told

	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(s.GRPCAddr), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithBatcher(exp),
		sdktrace.WithIDGenerator(&spreadIDs{}),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "shop"))))
	defer tp.Shutdown(ctx)
	tracer := tp.Tracer("shop")

	// send starts n root spans named op and answers how many the SDK sampled; the sampled ones
	// reach Ariadne, whose span metrics are all the adapter sees.
	send := func(op string, n int) int {
		sampled := 0
		for range n {
			_, span := tracer.Start(ctx, op)
			if span.SpanContext().IsSampled() {
				sampled++
			}
			span.End()
		}
		return sampled
	}
	now := time.Unix(1_800_000_000, 0)
	const interval = 10 * time.Second
	type counts struct{ busy, quiet int }
	// round sends one interval of traffic, then steps the adapter and has the SDK fetch.
	round := func(busy, quiet int) counts {
		t.Helper()
		c := counts{send("GET /busy", busy), send("GET /quiet", quiet)}
		send("GET /health", 5)
		if err := tp.ForceFlush(ctx); err != nil {
			t.Fatal(err)
		}
		now = now.Add(interval)
		if err := s.HeadSampling.Step(now); err != nil {
			t.Fatal(err)
		}
		sampler.UpdateSampler()
		<-fetch.fetched
		return c
	}
	served := func() headsampling.Response {
		t.Helper()
		code, body := httpGet(t, "http://"+s.HTTPAddr+"/api/sampling?service=shop", "")
		var r headsampling.Response
		if code != 200 || json.Unmarshal(body, &r) != nil || r.OperationSampling == nil {
			t.Fatalf("strategy: %d %s", code, body)
		}
		return r
	}
	// checkServed compares the served document with the adapter's own numbers.
	checkServed := func() map[string]float64 {
		t.Helper()
		got := map[string]float64{}
		for _, o := range served().OperationSampling.PerOperationStrategies {
			got[o.Operation] = o.ProbabilisticSampling.SamplingRate
		}
		computed := s.HeadSampling.Probabilities("shop")
		for op, p := range computed {
			if op == "GET /health" {
				continue // static wins
			}
			if got[op] != p {
				t.Fatalf("served %s=%v, computed %v", op, got[op], p)
			}
		}
		if got["GET /health"] != 0 {
			t.Fatalf("static operation probability: %v", got["GET /health"])
		}
		return got
	}
	near := func(got int, want float64) bool { return math.Abs(float64(got)-want) <= 2+0.02*want }

	// Base reading, then steady traffic of 2 traces/s per operation: the target of 1 halves both.
	round(20, 20)
	for range 3 {
		round(20, 20)
	}
	p := checkServed()
	// The SDK's 20 samples per interval carry a count or two of noise, and so does the estimate.
	if math.Abs(p["GET /busy"]-0.5) > 0.1 || math.Abs(p["GET /quiet"]-0.5) > 0.1 {
		t.Fatalf("steady 2/s: probabilities %v, want 0.5 each", p)
	}
	if c := round(20, 20); !near(c.busy, 20*p["GET /busy"]) || !near(c.quiet, 20*p["GET /quiet"]) {
		t.Fatalf("SDK sampled %+v of 20 each at %v", c, p)
	}

	// Traffic shift: busy becomes 50x busier (100 traces/s). Within four intervals its
	// probability comes down to the target's 0.01, never more than 4x per step; quiet stays.
	probs := checkServed()
	prev := probs["GET /busy"]
	for i := range 4 {
		c := round(1000, 20)
		if want := 1000 * prev; !near(c.busy, want) {
			t.Fatalf("shift %d: SDK sampled %d busy of 1000 at %v", i, c.busy, prev)
		}
		if !near(c.quiet, 20*probs["GET /quiet"]) || c.quiet == 0 {
			t.Fatalf("shift %d: quiet operation sampled %d of 20 at %v", i, c.quiet, probs["GET /quiet"])
		}
		probs = checkServed()
		p := probs["GET /busy"]
		if p < prev/4-1e-9 || p > prev {
			t.Fatalf("shift %d: busy probability %v -> %v", i, prev, p)
		}
		prev = p
	}
	if math.Abs(prev-0.01) > 0.002 {
		t.Fatalf("busy probability after the window: %v, want 0.01", prev)
	}
	// The SDK's effective rate for busy is now the target: 1000 traces in 10s give about 10.
	c := round(1000, 20)
	if !near(c.busy, 10) || !near(c.quiet, 20*probs["GET /quiet"]) || c.quiet == 0 {
		t.Fatalf("after adapting: SDK sampled %+v, want about 10 busy (1/s) and 10 quiet", c)
	}
	if p := checkServed(); math.Abs(p["GET /quiet"]-0.5) > 0.15 {
		t.Fatalf("quiet operation starved: %v", p["GET /quiet"])
	}
	want := s.HeadSampling.Probabilities("shop")

	// A restart keeps the probabilities (the state file in the data directory).
	tp.ForceFlush(ctx)
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := startServer(t, cfg)
	got := map[string]float64{}
	code, body := httpGet(t, "http://"+s2.HTTPAddr+"/api/sampling?service=shop", "")
	var r headsampling.Response
	if code != 200 || json.Unmarshal(body, &r) != nil || r.OperationSampling == nil {
		t.Fatalf("after restart: %d %s", code, body)
	}
	for _, o := range r.OperationSampling.PerOperationStrategies {
		got[o.Operation] = o.ProbabilisticSampling.SamplingRate
	}
	for op, p := range want {
		if op != "GET /health" && got[op] != p {
			t.Fatalf("after restart %s=%v, want %v", op, got[op], p)
		}
	}
}

func TestHeadSamplingBadInputAndDefaults(t *testing.T) {
	cfg := testConfig(t.TempDir())
	tenth := 0.1
	cfg.Sampling.Remote = headsampling.Config{DefaultProbability: &tenth}
	s := startServer(t, cfg)
	base := "http://" + s.HTTPAddr + "/api/sampling"

	code, body := httpGet(t, base, "")
	if code != 400 || !strings.Contains(string(body), "service") {
		t.Fatalf("no service: %d %s", code, body)
	}
	for _, q := range []string{"?service=", "?service=a&service=b", "?service=%zz"} {
		if code, body := httpGet(t, base+q, ""); code != 400 || len(body) == 0 {
			t.Errorf("%s: %d %s, want 400 and a message", q, code, body)
		}
	}
	code, body = httpGet(t, base+"?service=never-seen", "")
	if code != 200 || !strings.Contains(string(body), `"strategyType":"PROBABILISTIC"`) || !strings.Contains(string(body), `"samplingRate":0.1`) {
		t.Fatalf("unknown service: %d %s", code, body)
	}

	// The SDK's sampler, fetching from Ariadne with its own HTTP fetcher, takes the default.
	sampler := jaegerremote.New("never-seen", jaegerremote.WithSamplingServerURL(base),
		jaegerremote.WithSamplingRefreshInterval(time.Hour), jaegerremote.WithInitialSampler(sdktrace.NeverSample()))
	defer sampler.Close()
	sampler.UpdateSampler()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithIDGenerator(&spreadIDs{}))
	defer tp.Shutdown(context.Background())
	sampled := 0
	for range 1000 {
		_, span := tp.Tracer("t").Start(context.Background(), "op")
		if span.SpanContext().IsSampled() {
			sampled++
		}
		span.End()
	}
	if sampled < 95 || sampled > 105 {
		t.Fatalf("SDK sampled %d of 1000 after fetching the default 0.1", sampled)
	}

	// A bad strategy in the configuration refuses to start, with the setting named.
	bad := 2.0
	cfg2 := testConfig(t.TempDir())
	cfg2.Sampling.Remote = headsampling.Config{DefaultProbability: &bad}
	if s, err := server.Start(cfg2, api.BuildInfo{Version: "test"}, nil); err == nil {
		s.Stop(context.Background())
		t.Fatal("probability 2 accepted")
	} else if !strings.Contains(err.Error(), "default_probability") {
		t.Fatalf("error does not name the setting: %v", err)
	}
}
