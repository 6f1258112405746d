package demo_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/tools/demo"
	"github.com/ariadne-tracing/ariadne/internal/tools/demo/taskapi"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitHealthy(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never became healthy: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStandaloneFromEnvironment runs each service on its own, configured only through OTEL_*
// variables (OTLP/HTTP this time), and checks that a notify request is one trace across both.
func TestStandaloneFromEnvironment(t *testing.T) {
	s := startAriadne(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+s.OTLPHTTPAddr)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
	t.Setenv(demo.ArchiveRowsEnv, "2000")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	notifyAddr, apiAddr := freeAddr(t), freeAddr(t)
	errs := make(chan error, 2)
	go func() { errs <- demo.RunNotification(ctx, notifyAddr) }()
	go func() { errs <- demo.RunTaskAPI(ctx, apiAddr, "http://"+notifyAddr, "") }()
	waitHealthy(t, "http://"+notifyAddr)
	waitHealthy(t, "http://"+apiAddr)

	resp, err := http.Post("http://"+apiAddr+"/api/tasks", "application/json",
		strings.NewReader(`{"title":"Implement feature X","priority":"high"}`))
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		ID string `json:"id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || err != nil || created.ID == "" {
		t.Fatalf("create: %d %v", resp.StatusCode, err)
	}

	nr, err := http.Post("http://"+apiAddr+"/api/tasks/"+created.ID+"/notify", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	nr.Body.Close()
	if nr.StatusCode != http.StatusOK {
		t.Fatalf("notify: %d", nr.StatusCode)
	}
	traceID := strings.Split(nr.Header.Get(taskapi.TraceResponseHeader), "-")[1]

	// Stopping flushes both SDKs.
	cancel()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("service: %v", err)
		}
	}
	tr := fetch(t, s, traceID, 7)
	services := map[string]bool{}
	for _, sp := range tr.spans {
		services[sp.service] = true
	}
	if !services["task-api"] || !services["notification-service"] {
		t.Fatalf("services in the notify trace: %v", services)
	}
	var pair []string
	for _, sp := range tr.named("POST /api/notify") {
		pair = append(pair, sp.service+"/"+sp.Kind.String())
	}
	if strings.Join(pair, ",") != "task-api/SPAN_KIND_CLIENT,notification-service/SPAN_KIND_SERVER" &&
		strings.Join(pair, ",") != "notification-service/SPAN_KIND_SERVER,task-api/SPAN_KIND_CLIENT" {
		t.Errorf("POST /api/notify spans: %v", pair)
	}
}
