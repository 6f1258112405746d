package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ariadne-tracing/ariadne/internal/api"
	"github.com/ariadne-tracing/ariadne/internal/config"
	"github.com/ariadne-tracing/ariadne/internal/demo"
	"github.com/ariadne-tracing/ariadne/internal/server"
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
	f.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "query API and UI listen address")
	f.StringVar(&cfg.OTLPGRPCAddr, "otlp-grpc-addr", "127.0.0.1:0", "OTLP/gRPC listen address")
	f.StringVar(&cfg.OTLPHTTPAddr, "otlp-http-addr", "127.0.0.1:0", "OTLP/HTTP listen address")
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
	fmt.Fprintf(stdout, "Ariadne is running: open %s\n", ui)
	fmt.Fprintf(stdout, "OTLP: gRPC %s, HTTP %s; data in %s\n", srv.GRPCAddr, srv.OTLPHTTPAddr, cfg.DataDir)

	var mu sync.Mutex
	shown := map[demo.Story]bool{}
	err = demo.Run(ctx, demo.Config{
		OTLPEndpoint: srv.GRPCAddr,
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
