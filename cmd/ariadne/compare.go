package main

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// newCompareCmd asks what sets a selection of spans apart (GET /api/analysis/compare) and
// prints the significant differences as tables whose example column pastes into `ariadne trace`.
func newCompareCmd() *cobra.Command {
	var (
		client   clientOptions
		baseline string
		since    time.Duration
		limit    int
		all      bool
	)
	cmd := &cobra.Command{
		Use:   "compare '<TraceQL selection>' [flags]",
		Short: "Show what sets a selection of spans apart from the rest",
		Long: "Compares the spans a TraceQL filter selects with a baseline (by default the other spans of the same\n" +
			"span names in the range) and lists the attribute values the selection has far more often, and the\n" +
			"numeric attributes whose distribution shifts, with a significance score and example traces.",
		Example: "  ariadne compare '{ duration > 500ms }' --since 1h\n" +
			"  ariadne compare '{ status = error }' --baseline '{ kind = server }'",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageErrorf("got %d arguments; quote the TraceQL selection so the shell passes it as one", len(args))
			}
			return exactArgs("TraceQL selection")(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit <= 0 {
				return usageErrorf("--limit %d: want at least 1", limit)
			}
			if since <= 0 {
				return usageErrorf("--since %s: want a positive duration", since)
			}
			return compareSpans(cmd, &client, args[0], baseline, since, limit, all)
		},
	}
	client.register(cmd)
	cmd.Flags().StringVar(&baseline, "baseline", "", "TraceQL filter of the spans to compare with (default: the other spans of the same span names)")
	cmd.Flags().DurationVar(&since, "since", time.Hour, "how far back to look")
	cmd.Flags().IntVar(&limit, "limit", 20, "most values and most numeric attributes to list")
	cmd.Flags().BoolVar(&all, "all", false, "list values and shifts that are not significant too")
	return cmd
}

type compareQuantiles struct {
	Count         int64
	P50, P90, P99 float64
}

func compareSpans(cmd *cobra.Command, client *clientOptions, sel, baseline string, since time.Duration, limit int, all bool) error {
	now := time.Now()
	q := url.Values{"q": {sel}, "limit": {strconv.Itoa(limit)},
		"start": {strconv.FormatInt(now.Add(-since).Unix(), 10)}, "end": {strconv.FormatInt(now.Unix()+1, 10)}}
	if baseline != "" {
		q.Set("baseline", baseline)
	}
	var res struct {
		SelectionSpans, BaselineSpans int64
		Values                        []struct {
			Key, Text                 string
			Selection, Baseline       int64
			SelectionPct, BaselinePct float64
			Score                     float64
			Significant               bool
			ExampleTraceIDs           []string
		}
		Shifts []struct {
			Key                 string
			Selection, Baseline compareQuantiles
			D, Score            float64
			Significant         bool
			ExampleTraceIDs     []string
		}
		HighCardinality, Tested []string
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
	defer cancel()
	if err := client.getJSON(ctx, "/api/analysis/compare", q, &res); err != nil {
		return err
	}
	stdout := cmd.OutOrStdout()
	against := "the other spans of the same span names"
	if baseline != "" {
		against = "the other spans of " + baseline
	}
	fmt.Fprintf(stdout, "Selection: %d spans of %s, last %s. Baseline: %d spans, %s.\n", res.SelectionSpans, sel, since, res.BaselineSpans, against)
	if res.SelectionSpans == 0 {
		fmt.Fprintln(stdout, "No spans match the selection in the range.")
		return nil
	}
	example := func(ids []string) string {
		if len(ids) == 0 {
			return "-"
		}
		return ids[0]
	}
	shown := 0
	tw := tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
	for _, v := range res.Values {
		if !v.Significant && !all {
			continue
		}
		if shown == 0 {
			fmt.Fprintln(stdout, "\nAttribute values more common in the selection:")
			fmt.Fprintln(tw, "ATTRIBUTE\tVALUE\tSELECTION\tBASELINE\tSCORE\tEXAMPLE TRACE")
		}
		shown++
		mark := ""
		if !v.Significant {
			mark = " (not significant)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f%% (%d)\t%.1f%% (%d)\t%.1f%s\t%s\n", v.Key, v.Text, v.SelectionPct, v.Selection,
			v.BaselinePct, v.Baseline, v.Score, mark, example(v.ExampleTraceIDs))
	}
	tw.Flush()
	num := func(key string, f float64) string {
		if key == "duration" {
			return fmtNanos(int64(f))
		}
		return strconv.FormatFloat(f, 'g', 6, 64)
	}
	shifts := 0
	tw = tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
	for _, s := range res.Shifts {
		if !s.Significant && !all {
			continue
		}
		if shifts == 0 {
			fmt.Fprintln(stdout, "\nNumeric attributes whose distribution shifts:")
			fmt.Fprintln(tw, "ATTRIBUTE\tSELECTION p50 / p90\tBASELINE p50 / p90\tGAP (KS D)\tSCORE\tEXAMPLE TRACE")
		}
		shifts++
		mark := ""
		if !s.Significant {
			mark = " (not significant)"
		}
		fmt.Fprintf(tw, "%s\t%s / %s\t%s / %s\t%.2f\t%.1f%s\t%s\n", s.Key, num(s.Key, s.Selection.P50), num(s.Key, s.Selection.P90),
			num(s.Key, s.Baseline.P50), num(s.Key, s.Baseline.P90), s.D, s.Score, mark, example(s.ExampleTraceIDs))
	}
	tw.Flush()
	if shown+shifts == 0 {
		fmt.Fprintln(stdout, "\nNothing sets the selection apart significantly: no attribute value is much more common in it, and no numeric attribute shifts.")
	}
	if len(res.HighCardinality) > 0 {
		fmt.Fprintf(stdout, "\nLeft out as identifiers (nearly every span has its own value): %s\n", strings.Join(res.HighCardinality, ", "))
	}
	if len(res.Tested) > 0 {
		fmt.Fprintf(stdout, "Left out as tested by the selection: %s\n", strings.Join(res.Tested, ", "))
	}
	return nil
}
