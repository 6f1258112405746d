package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	api_v2 "github.com/jaegertracing/jaeger-idl/proto-gen/api_v2"
	"go.opentelemetry.io/contrib/samplers/jaegerremote"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/ariadne-tracing/ariadne/internal/pipeline/headsampling"
)

// flatStrategy writes a strategy's numbers in one line, to compare answers of the three
// endpoints (the api_v2 messages carry gogo bookkeeping fields that DeepEqual would trip on).
func flatStrategy(r *api_v2.SamplingStrategyResponse) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s p=%v", r.GetStrategyType(), r.GetProbabilisticSampling().GetSamplingRate())
	if os := r.GetOperationSampling(); os != nil {
		fmt.Fprintf(&b, " default=%v lower=%v", os.GetDefaultSamplingProbability(), os.GetDefaultLowerBoundTracesPerSecond())
		ops := os.GetPerOperationStrategies()
		slices.SortFunc(ops, func(a, b *api_v2.OperationSamplingStrategy) int { return strings.Compare(a.Operation, b.Operation) })
		for _, o := range ops {
			fmt.Fprintf(&b, " %q=%v", o.GetOperation(), o.GetProbabilisticSampling().GetSamplingRate())
		}
	}
	return b.String()
}

func samplingClient(t *testing.T, addr string) (api_v2.SamplingManagerClient, *grpc.ClientConn) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return api_v2.NewSamplingManagerClient(conn), conn
}

func TestSamplingManagerGRPCAndAgentEndpointServeTheHTTPStrategies(t *testing.T) {
	cfg := testConfig(t.TempDir())
	zero, quarter, half := 0.0, 0.25, 0.5
	cfg.JaegerSamplingAddr = "127.0.0.1:0"
	cfg.Sampling.Remote = headsampling.Config{
		DefaultProbability:        &quarter,
		LowerBoundTracesPerSecond: &zero,
		Services: map[string]headsampling.Service{"shop": {Probability: &half,
			Operations: map[string]float64{"GET /health": 0, "POST /pay": 1}}},
		Adaptive: headsampling.Adaptive{Enabled: true, TargetTracesPerSecond: 1, MaxStep: 4, Interval: time.Hour},
	}
	s := startServer(t, cfg)
	ctx := context.Background()

	// Real traffic through the SDK gives the adapter an operation of its own.
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(s.GRPCAddr), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "shop"))))
	defer tp.Shutdown(ctx)
	now := time.Unix(1_800_000_000, 0)
	for range 2 {
		for range 100 {
			_, sp := tp.Tracer("shop").Start(ctx, "GET /busy")
			sp.End()
		}
		if err := tp.ForceFlush(ctx); err != nil {
			t.Fatal(err)
		}
		now = now.Add(10 * time.Second)
		if err := s.HeadSampling.Step(now); err != nil {
			t.Fatal(err)
		}
	}
	adaptive := s.HeadSampling.Probabilities("shop")["GET /busy"]
	if adaptive == 0 || adaptive == half {
		t.Fatalf("adapter did not move GET /busy: %v", adaptive)
	}

	client, conn := samplingClient(t, s.GRPCAddr)
	httpStrategy := func(url string) *api_v2.SamplingStrategyResponse {
		t.Helper()
		code, body := httpGet(t, url, "")
		var r headsampling.Response
		if code != 200 || json.Unmarshal(body, &r) != nil {
			t.Fatalf("%s: %d %s", url, code, body)
		}
		return r.Proto()
	}
	for _, service := range []string{"shop", "never-seen"} {
		g, err := client.GetSamplingStrategy(ctx, &api_v2.SamplingStrategyParameters{ServiceName: service})
		if err != nil {
			t.Fatalf("gRPC %s: %v", service, err)
		}
		got := flatStrategy(g)
		for _, url := range []string{"http://" + s.HTTPAddr + "/api/sampling?service=" + service,
			"http://" + s.JaegerSamplingAddr + "/sampling?service=" + service} {
			if h := flatStrategy(httpStrategy(url)); h != got {
				t.Fatalf("%s:\n gRPC %s\n HTTP %s", service, got, h)
			}
		}
		switch service {
		case "shop":
			want := fmt.Sprintf(`PROBABILISTIC p=0.5 default=0.5 lower=0 "GET /busy"=%v "GET /health"=0 "POST /pay"=1`, adaptive)
			if got != want {
				t.Fatalf("shop over gRPC:\n got  %s\n want %s", got, want)
			}
		case "never-seen":
			if got != "PROBABILISTIC p=0.25" {
				t.Fatalf("unknown service over gRPC: %s, want the default 0.25", got)
			}
		}
	}

	// No service named: the default strategy, and a header that says why.
	var hdr metadata.MD
	g, err := client.GetSamplingStrategy(ctx, &api_v2.SamplingStrategyParameters{}, grpc.Header(&hdr))
	if err != nil || flatStrategy(g) != "PROBABILISTIC p=0.25" {
		t.Fatalf("empty service: %v %v", g, err)
	}
	if w := hdr.Get(headsampling.WarningHeader); len(w) != 1 || !strings.Contains(w[0], "serviceName is empty") {
		t.Fatalf("empty service: warning header %v", hdr)
	}
	// A message that is not protobuf is refused with the decoder's reason.
	err = conn.Invoke(ctx, "/jaeger.api_v2.SamplingManager/GetSamplingStrategy", []byte{0x0a, 0xff},
		protoadapt.MessageV2Of(&api_v2.SamplingStrategyResponse{}),
		grpc.ForceCodec(rawCodec{}))
	if st, _ := status.FromError(err); err == nil || st.Code() != codes.Internal || !strings.Contains(st.Message(), "unmarshal") {
		t.Fatalf("malformed request: %v", err)
	}
	// The agent endpoint refuses a request without a service as Jaeger's agent does.
	if code, body := httpGet(t, "http://"+s.JaegerSamplingAddr+"/sampling", ""); code != 400 || !strings.Contains(string(body), "service") {
		t.Fatalf("agent endpoint without service: %d %s", code, body)
	}

	// The Go SDK's sampler, pointed at the agent-style endpoint, samples by what it serves: every
	// POST /pay, no GET /health.
	sampler := jaegerremote.New("shop", jaegerremote.WithSamplingServerURL("http://"+s.JaegerSamplingAddr+"/sampling"),
		jaegerremote.WithSamplingRefreshInterval(time.Hour), jaegerremote.WithInitialSampler(sdktrace.TraceIDRatioBased(0.5)))
	defer sampler.Close()
	sampler.UpdateSampler()
	stp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithIDGenerator(&spreadIDs{}))
	defer stp.Shutdown(ctx)
	count := func(op string) int {
		n := 0
		for range 200 {
			_, sp := stp.Tracer("t").Start(ctx, op)
			if sp.SpanContext().IsSampled() {
				n++
			}
			sp.End()
		}
		return n
	}
	if pay, health := count("POST /pay"), count("GET /health"); pay != 200 || health != 0 {
		t.Fatalf("SDK through :5778-style endpoint sampled POST /pay %d/200, GET /health %d/200", pay, health)
	}
}

func TestSamplingManagerRespectsAuthAndTenants(t *testing.T) {
	cfg := authConfig(t.TempDir())
	cfg.JaegerSamplingAddr = "127.0.0.1:0"
	cfg.MultitenancyEnabled = true
	s := startServer(t, cfg)
	ctx := context.Background()
	client, _ := samplingClient(t, s.GRPCAddr)
	call := func(token, tenant string) error {
		md := metadata.MD{}
		if token != "" {
			md.Set("authorization", "Bearer "+token)
		}
		if tenant != "" {
			md.Set("x-scope-orgid", tenant)
		}
		r, err := client.GetSamplingStrategy(metadata.NewOutgoingContext(ctx, md), &api_v2.SamplingStrategyParameters{ServiceName: "shop"})
		if err == nil && flatStrategy(r) != "PROBABILISTIC p=1" {
			t.Fatalf("strategy for tenant %q: %s", tenant, flatStrategy(r))
		}
		return err
	}
	for _, c := range []struct {
		token, tenant string
		want          codes.Code
	}{
		{"", "a", codes.Unauthenticated},
		{"wrong-token-0123456789abcdef", "a", codes.Unauthenticated},
		{tokRead, "a", codes.PermissionDenied}, // a reader's token does not steer senders
		{tokWrite, "", codes.Unauthenticated},  // a tenant must be named (the gate says so)
		{tokWrite, "a", codes.OK},
	} {
		if got := status.Code(call(c.token, c.tenant)); got != c.want {
			t.Errorf("gRPC token %q tenant %q: %v, want %v", c.token, c.tenant, got, c.want)
		}
	}
	url := "http://" + s.JaegerSamplingAddr + "/sampling?service=shop"
	for _, c := range []struct {
		token, tenant string
		want          int
	}{{"", "a", 401}, {tokRead, "a", 403}, {tokWrite, "", 401}, {tokWrite, "a", 200}} {
		req, _ := http.NewRequest("GET", url, nil)
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		if c.tenant != "" {
			req.Header.Set("X-Scope-OrgID", c.tenant)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("agent endpoint token %q tenant %q: %d %s, want %d", c.token, c.tenant, resp.StatusCode, body, c.want)
		}
	}
}
