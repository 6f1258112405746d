package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func fmtNanos(n int64) string {
	d := time.Duration(n)
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	default:
		return d.String()
	}
}

func newWhyCmd() *cobra.Command {
	var client clientOptions
	cmd := &cobra.Command{
		Use:     "why <trace-id> [flags]",
		Short:   "Explain why a trace was slow",
		Long:    "Explains why a trace was slow: the span that held up its critical path.",
		Example: "  ariadne why 4bf92f3577b34da6a3ce929d0e0e4736",
		Args:    traceIDArgs("trace ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return why(cmd, &client, args[0])
		},
	}
	client.register(cmd)
	return cmd
}

func why(cmd *cobra.Command, client *clientOptions, id string) error {
	stdout := cmd.OutOrStdout()
	var a struct {
		WhySlow struct {
			Sentence string
			Top      []struct {
				Label     string
				Service   string
				SelfNanos int64
				Share     float64
			}
		}
		CriticalPath struct {
			Segments []struct {
				Name      string
				Service   string
				SelfNanos int64
				Depth     int
			}
			Adjustments []struct {
				SpanID     string
				ShiftNanos int64
				Reason     string
			}
		}
		Lints []struct {
			Rule, Severity, Message, Fix string
		}
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	if err := client.getJSON(ctx, "/api/analysis/traces/"+url.PathEscape(id), nil, &a); err != nil {
		return err
	}
	fmt.Fprintln(stdout, a.WhySlow.Sentence)
	fmt.Fprintln(stdout, "\nCritical path (self time):")
	for _, s := range a.CriticalPath.Segments {
		if s.SelfNanos == 0 {
			continue
		}
		fmt.Fprintf(stdout, "  %s%-*s %8s  [%s]\n", strings.Repeat("  ", s.Depth), max(1, 40-2*s.Depth), s.Name, fmtNanos(s.SelfNanos), s.Service)
	}
	for _, adj := range a.CriticalPath.Adjustments {
		fmt.Fprintf(stdout, "  clock skew: span %s shifted by %s (%s)\n", adj.SpanID, fmtNanos(adj.ShiftNanos), adj.Reason)
	}
	if len(a.Lints) > 0 {
		fmt.Fprintln(stdout, "\nInstrumentation problems in this trace:")
		for _, l := range a.Lints {
			fmt.Fprintf(stdout, "  %-7s %s: %s\n          fix: %s\n", l.Severity, l.Rule, l.Message, l.Fix)
		}
	}
	return nil
}

func newLintCmd() *cobra.Command {
	var (
		client  clientOptions
		service string
		since   time.Duration
		limit   int
	)
	cmd := &cobra.Command{
		Use:   "lint [flags]",
		Short: "Find instrumentation problems in recent traces",
		Long: "Checks recent traces for instrumentation problems (broken context, unended spans, oversized\n" +
			"or high-cardinality attributes, naming, status) and reports them per service.",
		Example: "  ariadne lint --since 1h --service task-api",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit <= 0 {
				return usageErrorf("--limit %d: want at least 1", limit)
			}
			return lint(cmd, &client, service, since, limit)
		},
	}
	client.register(cmd)
	cmd.Flags().StringVar(&service, "service", "", "only this service")
	cmd.Flags().DurationVar(&since, "since", time.Hour, "how far back to look")
	cmd.Flags().IntVar(&limit, "limit", 500, "most recent traces to examine")
	return cmd
}

func lint(cmd *cobra.Command, client *clientOptions, service string, since time.Duration, limit int) error {
	stdout := cmd.OutOrStdout()
	var rep struct {
		TracesExamined int
		Services       []struct {
			Service  string
			Findings int
			Rules    []struct {
				Rule, Severity string
				Count, Traces  int
				ExampleTraceID string
				Fix            string
			}
		}
	}
	q := url.Values{"since": {since.String()}, "limit": {fmt.Sprint(limit)}}
	if service != "" {
		q.Set("service", service)
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
	defer cancel()
	if err := client.getJSON(ctx, "/api/analysis/lints", q, &rep); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d traces examined from the last %s\n", rep.TracesExamined, since)
	if len(rep.Services) == 0 {
		fmt.Fprintln(stdout, "no instrumentation problems found")
		return nil
	}
	for _, s := range rep.Services {
		fmt.Fprintf(stdout, "\n%s: %d findings\n", s.Service, s.Findings)
		for _, r := range s.Rules {
			fmt.Fprintf(stdout, "  %-7s %-32s %5d in %d traces, e.g. %s\n          fix: %s\n", r.Severity, r.Rule, r.Count, r.Traces, r.ExampleTraceID, r.Fix)
		}
	}
	return nil
}

func newDiffCmd() *cobra.Command {
	var client clientOptions
	cmd := &cobra.Command{
		Use:   "diff <trace-a> <trace-b> [flags]",
		Short: "Compare two traces of the same operation",
		Long:  "Compares two traces of the same operation: spans added or missing, and where latency changed.",
		Args:  traceIDArgs("first trace ID", "second trace ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return diff(cmd, &client, args[0], args[1])
		},
	}
	client.register(cmd)
	return cmd
}

func diff(cmd *cobra.Command, client *clientOptions, a, b string) error {
	stdout := cmd.OutOrStdout()
	var d struct {
		TotalANanos, TotalBNanos int64
		Added, Missing           []string
		Changed                  []struct {
			Path                                       string
			ANanos, BNanos, DeltaNanos, SelfDeltaNanos int64
		}
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	if err := client.getJSON(ctx, "/api/analysis/diff", url.Values{"a": {a}, "b": {b}}, &d); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "total: %s → %s (%+.1f%%)\n", fmtNanos(d.TotalANanos), fmtNanos(d.TotalBNanos),
		100*float64(d.TotalBNanos-d.TotalANanos)/float64(max(1, d.TotalANanos)))
	for _, p := range d.Added {
		fmt.Fprintf(stdout, "  + %s\n", p)
	}
	for _, p := range d.Missing {
		fmt.Fprintf(stdout, "  - %s\n", p)
	}
	shown := 0
	for _, c := range d.Changed {
		if c.DeltaNanos == 0 || shown == 10 {
			continue
		}
		shown++
		fmt.Fprintf(stdout, "  %+9s  %s (%s → %s)\n", fmtNanos(c.DeltaNanos), c.Path, fmtNanos(c.ANanos), fmtNanos(c.BNanos))
	}
	return nil
}
