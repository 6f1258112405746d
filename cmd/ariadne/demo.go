package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
	"github.com/ariadne-tracing/ariadne/internal/tools/demo"
)

// demoCmd runs Ariadne and the guide's task service side by side with steady traffic, so a
// newcomer sees real traces within a minute without instrumenting anything.
func newDemoCmd() *cobra.Command {
	cfg := config.Default()
	var (
		dataDir string
		rate    float64
		rows    int
	)
	cmd := &cobra.Command{
		Use:   "demo [flags]",
		Short: "Run Ariadne with the guide's task service and steady traffic",
		Long: "Runs Ariadne with the guide's task-api and notification-service, instrumented with the\n" +
			"OpenTelemetry Go SDK, and steady traffic through them. Ctrl-C stops everything.",
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rate <= 0 {
				return usageErrorf("--rate %g: want more than 0 requests per second", rate)
			}
			return demoRun(cmd, &cfg, dataDir, rate, rows)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "", "keep Ariadne's data and the demo database here (default: a temporary folder, removed at exit)")
	f.Float64Var(&rate, "rate", 5, "demo requests per second")
	f.IntVar(&rows, "archive-rows", 0, "rows in the unindexed archive table behind the slow query (default 200000)")
	// The standard ports, so that a user's own service can send to the demo's Ariadne with the
	// usual OTEL_EXPORTER_OTLP_ENDPOINT; one that is taken is replaced by a free port (and said so).
	f.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "query API and UI listen address (a free port instead if taken and not given)")
	f.StringVar(&cfg.OTLPGRPCAddr, "otlp-grpc-addr", cfg.OTLPGRPCAddr, "OTLP/gRPC listen address (a free port instead if taken and not given)")
	f.StringVar(&cfg.OTLPHTTPAddr, "otlp-http-addr", cfg.OTLPHTTPAddr, "OTLP/HTTP listen address (a free port instead if taken and not given)")
	f.StringVar(&cfg.ZipkinAddr, "zipkin-addr", "", "Zipkin v2 JSON listen address; empty disables")
	return cmd
}

func demoRun(cmd *cobra.Command, cfg *config.Config, dataDir string, rate float64, rows int) error {
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	cfg.DataDir = dataDir
	if cfg.DataDir == "" {
		tmp, err := os.MkdirTemp("", "ariadne-demo")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		cfg.DataDir = tmp
	}
	var moved []string
	for _, a := range []struct {
		flag, what string
		addr       *string
	}{{"http-addr", "the UI and query API", &cfg.HTTPAddr}, {"otlp-grpc-addr", "OTLP/gRPC", &cfg.OTLPGRPCAddr},
		{"otlp-http-addr", "OTLP/HTTP", &cfg.OTLPHTTPAddr}} {
		if cmd.Flags().Changed(a.flag) {
			continue
		}
		if free, ok := freeOr(*a.addr); !ok {
			moved = append(moved, fmt.Sprintf("%s is in use, so %s is on a free port instead (--%s sets one)", *a.addr, a.what, a.flag))
			*a.addr = free
		}
	}
	// Short waits so the demo's traces reach blocks while the user watches.
	cfg.Storage.TraceIdle = config.Duration(2 * time.Second)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := server.Start(*cfg, api.BuildInfo{Version: version, Revision: revision}, log)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		srv.Stop(sctx)
	}()
	ui := browserURL(srv.HTTPAddr)
	grpcEndpoint, httpEndpoint := browserURL(srv.GRPCAddr), browserURL(srv.OTLPHTTPAddr)
	fmt.Fprintf(stdout, "Ariadne is running: open %s\n", ui)
	fmt.Fprintf(stdout, "OTLP: gRPC %s, HTTP %s; data in %s\n", grpcEndpoint, httpEndpoint, cfg.DataDir)
	fmt.Fprintf(stdout, "Send your own service's traces here too: OTEL_EXPORTER_OTLP_ENDPOINT=%s\n", grpcEndpoint)
	for _, m := range moved {
		fmt.Fprintf(stdout, "Note: %s\n", m)
	}

	var mu sync.Mutex
	shown := map[demo.Story]bool{}
	err = demo.Run(ctx, demo.Config{
		OTLPEndpoint: strings.TrimPrefix(grpcEndpoint, "http://"),
		DataDir:      dataDir,
		Rate:         rate,
		ArchiveRows:  rows,
		Log:          log,
		OnReady: func(r demo.Ready) {
			fmt.Fprintf(stdout, "task-api on %s, notification-service on %s; traffic at %.0f requests/s\n\n", r.TaskAPIURL, r.NotificationURL, rate)
			fmt.Fprintln(stdout, "Traces worth opening, as they happen (also: ariadne trace <id>, ariadne why <id>):")
		},
		OnTrace: func(t demo.Trace) {
			if !t.Story.Interesting() {
				return
			}
			mu.Lock()
			first := !shown[t.Story]
			shown[t.Story] = true
			mu.Unlock()
			if first {
				fmt.Fprintf(stdout, "  %-24s %s/trace/%s\n  %-24s %s\n", t.Story, ui, t.TraceID, "", t.Story.Description())
			}
		},
	})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintln(stdout, "\nstopped")
	return nil
}

// browserURL is the address a browser on this machine opens for a listener on addr: a wildcard
// ("[::]:3200", ":3200") or loopback host becomes localhost, which every browser resolves.
func browserURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && (ip.IsUnspecified() || ip.IsLoopback()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// freeOr reports whether addr can be listened on now; when it cannot, it returns a loopback
// address with a port the system picks instead.
func freeOr(addr string) (string, bool) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "127.0.0.1:0", false
	}
	l.Close()
	return addr, true
}
