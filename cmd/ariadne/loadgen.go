package main

import (
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ariadne-tracing/ariadne/internal/serve/tlsconfig"
	"github.com/ariadne-tracing/ariadne/internal/tools/loadgen"
)

func newLoadgenCmd() *cobra.Command {
	var cfg loadgen.Config
	var useTLS bool
	var tlsClient tlsconfig.Client
	cmd := &cobra.Command{
		Use:   "loadgen [flags]",
		Short: "Send OTLP load and report throughput and the server's cost",
		Long:  "Sends OTLP traces with fresh IDs and reports spans/s, latency and, with --pid, the server's cost.",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Requests > 0 {
				cfg.Duration = 0
			}
			cfg.Progress = cmd.ErrOrStderr()
			if useTLS || tlsClient != (tlsconfig.Client{}) {
				cfg.TLS = &tlsClient
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep, err := loadgen.Run(ctx, cfg)
			if err != nil {
				return err
			}
			rep.Print(cmd.OutOrStdout())
			if rep.Spans == 0 {
				return errors.New("no span was acknowledged")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Endpoint, "endpoint", "localhost:4317", "OTLP receiver host:port (4317 for grpc, 4318 for http)")
	f.StringVar(&cfg.Protocol, "protocol", "grpc", "grpc or http")
	f.StringVar(&cfg.Profile, "profile", "small", "small (10-span traces, 2 attributes per span), guide (the guide's shapes, ~500 B/span) or wide (large attributes)")
	f.IntVar(&cfg.Batch, "batch", 512, "spans per request")
	f.IntVar(&cfg.Concurrency, "concurrency", 4, "concurrent exporters")
	f.Float64Var(&cfg.Rate, "rate", 0, "spans per second in total; 0 = as fast as the server acknowledges")
	f.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to send")
	f.Int64Var(&cfg.Requests, "requests", 0, "stop after this many requests (overrides --duration when set)")
	f.IntVar(&cfg.PID, "pid", 0, "the server's process ID, to report its CPU-seconds and peak memory")
	f.StringVar(&cfg.Token, "token", os.Getenv("ARIADNE_TOKEN"), "bearer token for a server with authentication on (write role; admin with --search-url); $ARIADNE_TOKEN sets the default")
	f.BoolVar(&useTLS, "tls", false, "connect with TLS (implied by --ca-file or --cert-file)")
	f.StringVar(&tlsClient.CAFile, "ca-file", os.Getenv("ARIADNE_CA_FILE"), "CA certificate (PEM) to trust for the server; $ARIADNE_CA_FILE sets the default")
	f.StringVar(&tlsClient.CertFile, "cert-file", os.Getenv("ARIADNE_CERT_FILE"), "client certificate (PEM) for mutual TLS")
	f.StringVar(&tlsClient.KeyFile, "key-file", os.Getenv("ARIADNE_KEY_FILE"), "the client certificate's key (PEM)")
	f.StringVar(&cfg.SearchURL, "search-url", "", "the server's query API (e.g. http://localhost:3200): also measure acknowledgement-to-searchable time")
	return cmd
}
