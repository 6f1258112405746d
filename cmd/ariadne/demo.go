package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/api"
	"github.com/ariadne-tracing/ariadne/internal/config"
	"github.com/ariadne-tracing/ariadne/internal/demo"
	"github.com/ariadne-tracing/ariadne/internal/server"
)

// demoCmd runs Ariadne and the guide's task service side by side with steady traffic, so a
// newcomer sees real traces within a minute without instrumenting anything.
func demoCmd(args []string, stdout, stderr io.Writer) int {
	cfg := config.Default()
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "keep Ariadne's data and the demo database here (default: a temporary folder, removed at exit)")
	rate := fs.Float64("rate", 5, "demo requests per second")
	rows := fs.Int("archive-rows", 0, "rows in the unindexed archive table behind the slow query (default 200000)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "query API and UI listen address")
	fs.StringVar(&cfg.OTLPGRPCAddr, "otlp-grpc-addr", "127.0.0.1:0", "OTLP/gRPC listen address")
	fs.StringVar(&cfg.OTLPHTTPAddr, "otlp-http-addr", "127.0.0.1:0", "OTLP/HTTP listen address")
	fs.StringVar(&cfg.ZipkinAddr, "zipkin-addr", "", "Zipkin v2 JSON listen address; empty disables")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: ariadne demo [flags]\n\nRuns Ariadne with the guide's task-api and notification-service, instrumented with the\nOpenTelemetry Go SDK, and steady traffic through them. Ctrl-C stops everything.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg.DataDir = *dataDir
	if cfg.DataDir == "" {
		tmp, err := os.MkdirTemp("", "ariadne-demo")
		if err != nil {
			fmt.Fprintln(stderr, "ariadne:", err)
			return 1
		}
		defer os.RemoveAll(tmp)
		cfg.DataDir = tmp
	}
	// Short waits so the demo's traces reach blocks while the user watches.
	cfg.Storage.TraceIdle = config.Duration(2 * time.Second)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := server.Start(cfg, api.BuildInfo{Version: version, Revision: revision}, log)
	if err != nil {
		fmt.Fprintln(stderr, "ariadne:", err)
		return 1
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		srv.Stop(sctx)
	}()
	ui := "http://" + srv.HTTPAddr
	fmt.Fprintf(stdout, "Ariadne is running: open %s\n", ui)
	fmt.Fprintf(stdout, "OTLP: gRPC %s, HTTP %s; data in %s\n", srv.GRPCAddr, srv.OTLPHTTPAddr, cfg.DataDir)

	var mu sync.Mutex
	shown := map[demo.Story]bool{}
	err = demo.Run(ctx, demo.Config{
		OTLPEndpoint: srv.GRPCAddr,
		DataDir:      *dataDir,
		Rate:         *rate,
		ArchiveRows:  *rows,
		Log:          log,
		OnReady: func(r demo.Ready) {
			fmt.Fprintf(stdout, "task-api on %s, notification-service on %s; traffic at %.0f requests/s\n\n", r.TaskAPIURL, r.NotificationURL, *rate)
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
		fmt.Fprintln(stderr, "ariadne: demo:", err)
		return 1
	}
	fmt.Fprintln(stdout, "\nstopped")
	return 0
}
