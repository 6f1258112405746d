package server_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
)

// TestStartupLogListsEveryListener: the ready line names each address Ariadne listens on,
// the Zipkin receiver's included, and says when Zipkin is off.
func TestStartupLogListsEveryListener(t *testing.T) {
	for _, zipkin := range []string{"127.0.0.1:0", ""} {
		var buf bytes.Buffer
		cfg := testConfig(t.TempDir())
		cfg.ZipkinAddr = zipkin
		s, err := server.Start(cfg, api.BuildInfo{Version: "test"}, slog.New(slog.NewTextHandler(&buf, nil)))
		if err != nil {
			t.Fatal(err)
		}
		s.Stop(context.Background())
		var ready string
		for _, l := range strings.Split(buf.String(), "\n") {
			if strings.Contains(l, "ariadne ready") {
				ready = l
			}
		}
		want := "zipkin=off"
		if zipkin != "" {
			want = "zipkin=" + s.ZipkinAddr
		}
		for _, w := range []string{"otlp_grpc=" + s.GRPCAddr, "otlp_http=" + s.OTLPHTTPAddr, "http=" + s.HTTPAddr, want} {
			if !strings.Contains(ready, w) {
				t.Errorf("ready line %q lacks %q", ready, w)
			}
		}
	}
}
