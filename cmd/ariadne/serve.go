package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
)

// newServeCmd builds `ariadne serve`. Its flags are config.(*Config).RegisterFlags's Go flags,
// added to cobra through pflag, so a setting added to the config package is a flag here with no
// change in this file. The config file named by --config is read before the flags are bound
// (args is the whole command line), so the file's values become the defaults that flags override.
func newServeCmd(args []string) *cobra.Command {
	cfgPath := configFlagValue(args)
	cfg := config.Default()
	var loadErr error
	if cfgPath != "" && firstCommand(args) == "serve" {
		if cfg, loadErr = config.Load(cfgPath); loadErr != nil {
			cfg = config.Default()
		}
	}
	cmd := &cobra.Command{
		Use:   "serve [flags]",
		Short: "Run the server (OTLP on :4317/:4318, query API and UI on :3200)",
		Long: "Runs Ariadne: the OTLP receivers, the embedded store and the query API.\n\n" +
			"Settings come from the defaults, then the --config YAML file, then flags\n" +
			"(docs/configuration.md lists every one).",
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if loadErr != nil {
				return loadErr
			}
			return serve(cmd, &cfg)
		},
	}
	cmd.Flags().String("config", cfgPath, "YAML config file (see docs/configuration.md)")
	gfs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.RegisterFlags(gfs)
	cmd.Flags().AddGoFlagSet(gfs)
	return cmd
}

func serve(cmd *cobra.Command, cfg *config.Config) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return usageErrorf("--log-level: %v", err)
	}
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
	stopWithParent(log)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv, err := server.Start(*cfg, api.BuildInfo{Version: version, Revision: revision}, log)
	if err != nil {
		return fmt.Errorf("cannot start: %w", err)
	}
	var failed error
	select {
	case <-ctx.Done():
		log.Info("shutting down: flushing the head to a block")
	case err := <-srv.Err():
		failed = fmt.Errorf("server failed: %w", err)
		log.Error("server failed", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.Stop(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return failed
}

// configFlagValue finds --config's value anywhere in args, for the pass that reads the file
// before the other flags are parsed.
func configFlagValue(args []string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		switch {
		case a == "--config" || a == "-config":
			if i+1 < len(args) {
				return args[i+1]
			}
		case strings.HasPrefix(a, "--config="):
			return strings.TrimPrefix(a, "--config=")
		case strings.HasPrefix(a, "-config="):
			return strings.TrimPrefix(a, "-config=")
		}
	}
	return ""
}

// firstCommand is the first argument that is not a flag: the subcommand's name.
func firstCommand(args []string) string {
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			return a
		}
	}
	return ""
}
