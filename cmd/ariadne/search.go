package main

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// newSearchCmd runs a TraceQL search and prints a table whose first column pastes into
// `ariadne trace`.
func newSearchCmd() *cobra.Command {
	var (
		client clientOptions
		since  time.Duration
		limit  int
	)
	cmd := &cobra.Command{
		Use:     "search '<TraceQL>' [flags]",
		Short:   "Find traces with TraceQL, newest first",
		Example: `  ariadne search '{ resource.service.name = "task-api" && status = error }' --since 1h`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageErrorf("got %d arguments; quote the TraceQL query so the shell passes it as one", len(args))
			}
			return exactArgs("TraceQL query")(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit <= 0 {
				return usageErrorf("--limit %d: want at least 1", limit)
			}
			return search(cmd, &client, args[0], since, limit)
		},
	}
	client.register(cmd)
	cmd.Flags().DurationVar(&since, "since", time.Hour, "how far back to search")
	cmd.Flags().IntVar(&limit, "limit", 20, "most traces to list")
	return cmd
}

func search(cmd *cobra.Command, client *clientOptions, query string, since time.Duration, limit int) error {
	now := time.Now()
	q := url.Values{"q": {query}, "limit": {strconv.Itoa(limit)},
		"start": {strconv.FormatInt(now.Add(-since).Unix(), 10)}, "end": {strconv.FormatInt(now.Unix()+1, 10)}}
	var res struct {
		Traces []struct {
			TraceID           string
			RootServiceName   string
			RootTraceName     string
			StartTimeUnixNano string
			DurationMs        float64
			DurationNanos     string // Ariadne's: exact where durationMs is whole milliseconds
			SpanSets          []struct{ Matched int }
			SpanSet           *struct{ Matched int }
		}
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
	defer cancel()
	if err := client.getJSON(ctx, "/api/search", q, &res); err != nil {
		return err
	}
	stdout := cmd.OutOrStdout()
	if len(res.Traces) == 0 {
		fmt.Fprintf(stdout, "no traces match in the last %s\n", since)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "TRACE ID\tROOT SERVICE\tROOT NAME\tSTART\tDURATION\tMATCHED")
	for _, t := range res.Traces {
		ns, _ := strconv.ParseInt(t.StartTimeUnixNano, 10, 64)
		dur := int64(t.DurationMs * 1e6)
		if d, err := strconv.ParseInt(t.DurationNanos, 10, 64); err == nil {
			dur = d
		}
		matched := 0
		for _, ss := range t.SpanSets {
			matched += ss.Matched
		}
		if len(t.SpanSets) == 0 && t.SpanSet != nil {
			matched = t.SpanSet.Matched
		}
		root := t.RootServiceName
		if root == "" {
			root = "<root not yet received>"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", t.TraceID, root, t.RootTraceName,
			time.Unix(0, ns).Local().Format("2006-01-02 15:04:05.000"), fmtNanos(dur), matched)
	}
	return tw.Flush()
}
