package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ariadne-tracing/ariadne/internal/insight/analyze"
	"github.com/ariadne-tracing/ariadne/internal/read/query"
)

// linter checks recent traces for instrumentation problems in the background and counts the
// findings per rule and service on /metrics, so a dashboard or alert can watch instrumentation
// quality without anyone opening a trace.
type linter struct {
	q        *query.Querier
	log      *slog.Logger
	every    time.Duration
	perRound int
	findings *prometheus.CounterVec
	traces   prometheus.Counter
	stop     chan struct{}
	done     chan struct{}
}

func newLinter(q *query.Querier, reg prometheus.Registerer, log *slog.Logger) *linter {
	l := &linter{q: q, log: log, every: time.Minute, perRound: 200,
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ariadne_lint_findings_total",
			Help: "Instrumentation problems found in recent traces, by rule and service (see ariadne lint)."}, []string{"rule", "service"}),
		traces: prometheus.NewCounter(prometheus.CounterOpts{Name: "ariadne_lint_traces_examined_total",
			Help: "Traces the background linter has examined."}),
		stop: make(chan struct{}), done: make(chan struct{})}
	reg.MustRegister(l.findings, l.traces)
	return l
}

func (l *linter) start() {
	go func() {
		defer close(l.done)
		since := time.Now()
		t := time.NewTicker(l.every)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-t.C:
				now := time.Now()
				if err := l.round(since, now); err != nil {
					l.log.Warn("background lint", "err", err)
				}
				since = now
			}
		}
	}()
}

// round lints the traces that started in [from, to), at most perRound of them (newest first),
// whose findings are then counted once.
func (l *linter) round(from, to time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), l.every/2)
	defer cancel()
	// Recent holds about twice perRound summaries; Summaries would hold one for every trace of
	// the minute (a million at 100k spans/s of small traces, 119 MiB measured) to keep 200.
	sums, err := l.q.Recent(ctx, query.TimeRange{Start: from, End: to}, l.perRound)
	if err != nil {
		return err
	}
	for _, s := range sums {
		td, err := l.q.FindTrace(ctx, s.ID, query.TimeRange{})
		if err != nil {
			return err
		}
		if td == nil {
			continue
		}
		l.traces.Inc()
		for _, f := range analyze.Lint(td, analyze.LintConfig{}) {
			l.findings.WithLabelValues(f.Rule, f.Service).Add(float64(max(f.Count, 1)))
		}
	}
	return nil
}

func (l *linter) close() {
	close(l.stop)
	<-l.done
}
