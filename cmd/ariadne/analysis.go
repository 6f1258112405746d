package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// getJSON calls the query API and decodes a JSON answer, turning HTTP errors into the server's
// message.
func getJSON(ctx context.Context, server, path string, q url.Values, out any) error {
	u := strings.TrimRight(server, "/") + path
	if !strings.Contains(server, "://") {
		u = "http://" + u
	}
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach Ariadne at %s: %w", server, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s", strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, out)
}

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

// analysisFlags parses the flags every analysis command shares.
func analysisFlags(name, usage string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (*flag.FlagSet, string, int) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	srv := fs.String("server", envOr("ARIADNE_SERVER", "http://localhost:3200"), "Ariadne query API address")
	if extra != nil {
		extra(fs)
	}
	fs.Usage = func() {
		fmt.Fprintln(stderr, usage+"\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, "", 0
		}
		return nil, "", 2
	}
	return fs, *srv, -1
}

func whyCmd(args []string, stdout, stderr io.Writer) int {
	fs, srv, code := analysisFlags("why", "Usage: ariadne why [flags] <trace-id>\n\nExplains why a trace was slow: the span that held up its critical path.", args, stderr, nil)
	if code >= 0 {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := getJSON(ctx, srv, "/api/analysis/traces/"+url.PathEscape(fs.Arg(0)), nil, &a); err != nil {
		fmt.Fprintln(stderr, "ariadne:", err)
		return 1
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
	return 0
}

func lintCmd(args []string, stdout, stderr io.Writer) int {
	var service string
	var since time.Duration
	var limit int
	_, srv, code := analysisFlags("lint", "Usage: ariadne lint [flags]\n\nChecks recent traces for instrumentation problems (broken context, unended spans, oversized\nor high-cardinality attributes, naming, status) and reports them per service.", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&service, "service", "", "only this service")
		fs.DurationVar(&since, "since", time.Hour, "how far back to look")
		fs.IntVar(&limit, "limit", 500, "most recent traces to examine")
	})
	if code >= 0 {
		return code
	}
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
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := getJSON(ctx, srv, "/api/analysis/lints", q, &rep); err != nil {
		fmt.Fprintln(stderr, "ariadne:", err)
		return 1
	}
	fmt.Fprintf(stdout, "%d traces examined from the last %s\n", rep.TracesExamined, since)
	if len(rep.Services) == 0 {
		fmt.Fprintln(stdout, "no instrumentation problems found")
		return 0
	}
	for _, s := range rep.Services {
		fmt.Fprintf(stdout, "\n%s: %d findings\n", s.Service, s.Findings)
		for _, r := range s.Rules {
			fmt.Fprintf(stdout, "  %-7s %-32s %5d in %d traces, e.g. %s\n          fix: %s\n", r.Severity, r.Rule, r.Count, r.Traces, r.ExampleTraceID, r.Fix)
		}
	}
	return 0
}

func diffCmd(args []string, stdout, stderr io.Writer) int {
	fs, srv, code := analysisFlags("diff", "Usage: ariadne diff [flags] <trace-a> <trace-b>\n\nCompares two traces of the same operation: spans added or missing, and where latency changed.", args, stderr, nil)
	if code >= 0 {
		return code
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return 2
	}
	var d struct {
		TotalANanos, TotalBNanos int64
		Added, Missing           []string
		Changed                  []struct {
			Path                                       string
			ANanos, BNanos, DeltaNanos, SelfDeltaNanos int64
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := getJSON(ctx, srv, "/api/analysis/diff", url.Values{"a": {fs.Arg(0)}, "b": {fs.Arg(1)}}, &d); err != nil {
		fmt.Fprintln(stderr, "ariadne:", err)
		return 1
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
	return 0
}
