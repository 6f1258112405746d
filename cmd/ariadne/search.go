package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"
)

// searchCmd runs a TraceQL search and prints a table whose first column pastes into
// `ariadne trace`.
func searchCmd(args []string, stdout, stderr io.Writer) int {
	var since time.Duration
	var limit int
	fs, srv, code := analysisFlags("search", "Usage: ariadne search [flags] '<TraceQL>'\n\nFinds traces with TraceQL, newest first, e.g.\n  ariadne search '{ resource.service.name = \"task-api\" && status = error }' --since 1h", args, stderr, func(fs *flag.FlagSet) {
		fs.DurationVar(&since, "since", time.Hour, "how far back to search")
		fs.IntVar(&limit, "limit", 20, "most traces to list")
	})
	if code >= 0 {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	now := time.Now()
	q := url.Values{"q": {fs.Arg(0)}, "limit": {strconv.Itoa(limit)},
		"start": {strconv.FormatInt(now.Add(-since).Unix(), 10)}, "end": {strconv.FormatInt(now.Unix()+1, 10)}}
	var res struct {
		Traces []struct {
			TraceID           string
			RootServiceName   string
			RootTraceName     string
			StartTimeUnixNano string
			DurationMs        float64
			SpanSets          []struct{ Matched int }
			SpanSet           *struct{ Matched int }
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := getJSON(ctx, srv, "/api/search", q, &res); err != nil {
		fmt.Fprintln(stderr, "ariadne:", err)
		return 1
	}
	if len(res.Traces) == 0 {
		fmt.Fprintf(stdout, "no traces match in the last %s\n", since)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "TRACE ID\tROOT SERVICE\tROOT NAME\tSTART\tDURATION\tMATCHED")
	for _, t := range res.Traces {
		ns, _ := strconv.ParseInt(t.StartTimeUnixNano, 10, 64)
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
			time.Unix(0, ns).Local().Format("2006-01-02 15:04:05.000"), fmtNanos(int64(t.DurationMs*1e6)), matched)
	}
	tw.Flush()
	return 0
}
