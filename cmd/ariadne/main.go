// Command ariadne is a distributed tracing backend in one binary: OTLP in, a durable embedded
// store, Grafana Tempo's query API, and tools to read traces in the terminal.
//
// The command line is built with cobra: flags go anywhere (before or after the arguments),
// every command has --help, and `ariadne completion bash|zsh|fish` prints shell completion.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Set with -ldflags "-X main.version=..." by release builds.
var (
	version  = "2.9.0-ariadne.dev"
	revision = "unknown"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError is a mistake in how a command was called (a missing argument, an unknown flag):
// it exits 2 and is followed by the command's usage, after the sentence saying what was wrong.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, a ...any) error {
	return &usageError{fmt.Errorf(format, a...)}
}

// run executes the command line args and returns the process exit code: 0 on success, 1 when
// the command failed, 2 when it was called wrongly.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

// runContext is run with a context whose end stops a long-running command (serve, demo) as
// Ctrl-C would.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(args, stdout, stderr)
	root.SetArgs(args)
	root.SetContext(ctx)
	cmd, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	if ue := (*usageError)(nil); errors.As(err, &ue) {
		fmt.Fprintf(stderr, "ariadne: %v\n\n%s", err, cmd.UsageString())
		return 2
	}
	fmt.Fprintln(stderr, "ariadne:", err)
	return 1
}

func newRootCmd(args []string, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "ariadne",
		Short: "Distributed tracing in one binary",
		Long: "Ariadne: distributed tracing in one binary. OTLP in on :4317 (gRPC) and :4318 (HTTP),\n" +
			"a durable embedded store, Grafana Tempo's query API and a UI on :3200, and tools that read\n" +
			"traces in the terminal.\n\n" +
			"Commands that talk to a running Ariadne take --server URL (default: $ARIADNE_SERVER, else\n" +
			"http://localhost:3200).",
		Version:       fmt.Sprintf("%s (revision %s)", version, revision),
		SilenceErrors: true,
		SilenceUsage:  true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				msg := fmt.Sprintf("unknown command %q", args[0])
				if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
					msg += fmt.Sprintf(" (did you mean %q?)", s[0])
				}
				return usageErrorf("%s", msg)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return usageErrorf("no command given")
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("ariadne {{.Version}}\n")
	// Flag mistakes are usage errors in every subcommand (cobra looks this up from the root).
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.AddGroup(&cobra.Group{ID: "server", Title: "Run Ariadne:"}, &cobra.Group{ID: "read", Title: "Read traces from a running Ariadne:"})
	for _, c := range []*cobra.Command{newServeCmd(args), newDemoCmd(), newLoadgenCmd(), newHashTokenCmd()} {
		c.GroupID = "server"
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{newTraceCmd(), newSearchCmd(), newWhyCmd(), newCompareCmd(), newLintCmd(), newDiffCmd(), newStatusCmd()} {
		c.GroupID = "read"
		root.AddCommand(c)
	}
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  exactArgs(),
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "ariadne %s (revision %s)\n", version, revision)
		},
	})
	return root
}

// exactArgs checks that a command got exactly the named positional arguments, and says which
// one is missing or which is extra rather than only counting them.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return usageErrorf("missing %s", strings.Join(names[len(args):], " and "))
		case len(args) > len(names):
			extra := args[len(names)]
			if strings.HasPrefix(extra, "-") {
				return usageErrorf("unexpected argument %q", extra)
			}
			if len(names) == 0 {
				return usageErrorf("unexpected argument %q: this command takes none", extra)
			}
			return usageErrorf("unexpected argument %q after the %s", extra, names[len(names)-1])
		}
		return nil
	}
}

// traceIDArgs checks that the named positional arguments are trace IDs as a user copies them:
// 32 hex digits, or 16 for a 64-bit ID from Zipkin or Jaeger. The server also accepts shorter
// IDs (it pads them, as Tempo does), so without this check a mistyped or cut-off ID would only
// come back as "not found".
func traceIDArgs(names ...string) cobra.PositionalArgs {
	count := exactArgs(names...)
	return func(cmd *cobra.Command, args []string) error {
		if err := count(cmd, args); err != nil {
			return err
		}
		for _, a := range args {
			if (len(a) != 32 && len(a) != 16) || strings.Trim(strings.ToLower(a), "0123456789abcdef") != "" {
				return usageErrorf("invalid trace ID %q: want 32 hex digits (16 for a 64-bit ID), got %d characters", a, len(a))
			}
		}
		return nil
	}
}
