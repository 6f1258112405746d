// Command ariadne is a distributed tracing backend in one binary: OTLP in, a durable embedded
// store, Grafana Tempo's query API, and tools to read traces in the terminal.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/api"
	"github.com/ariadne-tracing/ariadne/internal/config"
	"github.com/ariadne-tracing/ariadne/internal/loadgen"
	"github.com/ariadne-tracing/ariadne/internal/server"
	"github.com/ariadne-tracing/ariadne/internal/treeview"
)

// Set with -ldflags "-X main.version=..." by release builds.
var (
	version  = "2.9.0-ariadne.dev"
	revision = "unknown"
)

const usage = `Ariadne: distributed tracing in one binary.

Usage:
  ariadne serve [flags]           run the server (OTLP on :4317/:4318, query API on :3200)
  ariadne demo [flags]            run Ariadne with the guide's task service and traffic
  ariadne trace [flags] <id>      print a trace as a tree
  ariadne search [flags] '<q>'    find traces with TraceQL
  ariadne why [flags] <id>        explain why a trace was slow
  ariadne lint [flags]            find instrumentation problems in recent traces
  ariadne diff [flags] <a> <b>    compare two traces of the same operation
  ariadne status [flags]          summarise a running server's ingest, memory, WAL, blocks and sampling
  ariadne loadgen [flags]         send OTLP load and report throughput and server cost
  ariadne version                 print the version

Run 'ariadne <command> -h' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "trace":
		return traceCmd(args[1:], stdout, stderr)
	case "demo":
		return demoCmd(args[1:], stdout, stderr)
	case "search":
		return searchCmd(args[1:], stdout, stderr)
	case "why":
		return whyCmd(args[1:], stdout, stderr)
	case "lint":
		return lintCmd(args[1:], stdout, stderr)
	case "diff":
		return diffCmd(args[1:], stdout, stderr)
	case "status":
		return statusCmd(args[1:], stdout, stderr)
	case "loadgen":
		return loadgenCmd(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "ariadne %s (revision %s)\n", version, revision)
		return 0
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "ariadne: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func serve(args []string, stderr io.Writer) int {
	// The config file is read first so that flags given on the command line override it.
	pre := flag.NewFlagSet("serve", flag.ContinueOnError)
	pre.SetOutput(io.Discard)
	cfgPath := pre.String("config", "", "")
	pre.Parse(filterConfigFlag(args))

	cfg := config.Default()
	if *cfgPath != "" {
		var err error
		if cfg, err = config.Load(*cfgPath); err != nil {
			fmt.Fprintln(stderr, "ariadne:", err)
			return 1
		}
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", *cfgPath, "YAML config file (see docs/configuration.md)")
	cfg.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: ariadne serve [flags]\n\nRuns Ariadne: OTLP receivers, the embedded store and the query API.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		fmt.Fprintln(stderr, "ariadne: --log-level:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv, err := server.Start(cfg, api.BuildInfo{Version: version, Revision: revision}, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	code := 0
	select {
	case <-ctx.Done():
		log.Info("shutting down: flushing the head to a block")
	case err := <-srv.Err():
		log.Error("server failed", "err", err)
		code = 1
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.Stop(sctx); err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	log.Info("stopped")
	return code
}

// filterConfigFlag keeps only --config from args so the first pass ignores every other flag.
func filterConfigFlag(args []string) []string {
	for i, a := range args {
		switch {
		case a == "--config" || a == "-config":
			if i+1 < len(args) {
				return []string{a, args[i+1]}
			}
		case len(a) > 9 && (a[:9] == "--config=" || a[:8] == "-config="):
			return []string{a}
		}
	}
	return nil
}

func traceCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	srv := fs.String("server", envOr("ARIADNE_SERVER", "http://localhost:3200"), "Ariadne query API address")
	attrs := fs.Bool("attributes", false, "show each span's attributes")
	events := fs.Bool("events", false, "show each span's events with their offsets")
	color := fs.String("color", "auto", "colour output: auto, always or never")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: ariadne trace [flags] <trace-id>\n\nPrints a trace as a tree of spans.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	td, err := treeview.Fetch(ctx, http.DefaultClient, *srv, fs.Arg(0), 0, 0)
	if err != nil {
		fmt.Fprintln(stderr, "ariadne:", err)
		return 1
	}
	useColor := *color == "always" || (*color == "auto" && isTerminal(stdout))
	if err := treeview.Render(stdout, td, treeview.Options{Attributes: *attrs, Events: *events, Color: useColor}); err != nil {
		fmt.Fprintln(stderr, "ariadne:", err)
		return 1
	}
	return 0
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func loadgenCmd(args []string, stdout, stderr io.Writer) int {
	var cfg loadgen.Config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Endpoint, "endpoint", "localhost:4317", "OTLP receiver host:port (4317 for grpc, 4318 for http)")
	fs.StringVar(&cfg.Protocol, "protocol", "grpc", "grpc or http")
	fs.StringVar(&cfg.Profile, "profile", "small", "small (10-span traces, 2 attributes per span), guide (the guide's shapes, ~500 B/span) or wide (large attributes)")
	fs.IntVar(&cfg.Batch, "batch", 512, "spans per request")
	fs.IntVar(&cfg.Concurrency, "concurrency", 4, "concurrent exporters")
	fs.Float64Var(&cfg.Rate, "rate", 0, "spans per second in total; 0 = as fast as the server acknowledges")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to send")
	fs.Int64Var(&cfg.Requests, "requests", 0, "stop after this many requests (overrides --duration when set)")
	fs.IntVar(&cfg.PID, "pid", 0, "the server's process ID, to report its CPU-seconds and peak memory")
	fs.StringVar(&cfg.SearchURL, "search-url", "", "the server's query API (e.g. http://localhost:3200): also measure acknowledgement-to-searchable time")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: ariadne loadgen [flags]\n\nSends OTLP traces with fresh IDs and reports spans/s, latency and, with --pid, the server's cost.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if cfg.Requests > 0 {
		cfg.Duration = 0
	}
	cfg.Progress = stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := loadgen.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "ariadne:", err)
		return 1
	}
	rep.Print(stdout)
	if rep.Spans == 0 {
		return 1
	}
	return 0
}
