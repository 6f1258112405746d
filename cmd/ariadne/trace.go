package main

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ariadne-tracing/ariadne/internal/insight/treeview"
)

func newTraceCmd() *cobra.Command {
	var (
		client        clientOptions
		attrs, events bool
		color         string
	)
	cmd := &cobra.Command{
		Use:     "trace <trace-id> [flags]",
		Short:   "Print a trace as a tree of spans",
		Example: "  ariadne trace 4bf92f3577b34da6a3ce929d0e0e4736 --events",
		Args:    traceIDArgs("trace ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if color != "auto" && color != "always" && color != "never" {
				return usageErrorf("--color %q: want auto, always or never", color)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			td, err := treeview.Fetch(ctx, client.httpClient(), client.baseURL(), args[0], 0, 0)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			useColor := color == "always" || (color == "auto" && isTerminal(out))
			return treeview.Render(out, td, treeview.Options{Attributes: attrs, Events: events, Color: useColor})
		},
	}
	client.register(cmd)
	cmd.Flags().BoolVar(&attrs, "attributes", false, "show each span's attributes")
	cmd.Flags().BoolVar(&events, "events", false, "show each span's events with their offsets")
	cmd.Flags().StringVar(&color, "color", "auto", "colour output: auto, always or never")
	return cmd
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
