package server

import (
	"context"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ariadne-tracing/ariadne/internal/intake/receive"
	"github.com/ariadne-tracing/ariadne/internal/read/queryscheduler"
	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
)

// newQueryScheduler is the process's query scheduler, its state exported on reg. By default half
// the CPUs run queries, each working a quarter of the time while ingest is busy, so ingest keeps most
// of the CPU whatever the query load.
func newQueryScheduler(qc config.Query, reg prometheus.Registerer) *queryscheduler.Scheduler {
	concurrent := qc.MaxConcurrentQueries
	if concurrent <= 0 {
		concurrent = max(1, runtime.GOMAXPROCS(0)/2)
	}
	sch := queryscheduler.New(queryscheduler.Config{MaxConcurrent: concurrent, MaxMemoryBytes: qc.MaxMemoryBytes,
		MaxQueuedPerTenant: qc.MaxOutstandingPerTenant, CPUShare: qc.CPUShare})
	stat := func(f func(queryscheduler.Stats) float64) func() float64 {
		return func() float64 { return f(sch.Stats()) }
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ariadne_query_running", Help: "Queries running."},
			stat(func(s queryscheduler.Stats) float64 { return float64(s.Running) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ariadne_query_queued", Help: "Queries waiting for a slot."},
			stat(func(s queryscheduler.Stats) float64 { return float64(s.Queued) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ariadne_query_reserved_bytes", Help: "Memory estimated for the running queries."},
			stat(func(s queryscheduler.Stats) float64 { return float64(s.ReservedBytes) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ariadne_query_rejected_total", Help: "Queries refused with 429 because their tenant's queue was full."},
			stat(func(s queryscheduler.Stats) float64 { return float64(s.Rejected) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ariadne_query_paused_seconds_total", Help: "Time running queries paused to leave ingest its share of the CPU."},
			stat(func(s queryscheduler.Stats) float64 { return s.Paused.Seconds() })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ariadne_block_page_cache_bytes", Help: "Decoded block pages kept for limited searches, shared by all tenants."},
			func() float64 { return float64(block.PageCacheBytes()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ariadne_query_canceled_total", Help: "Queries that stopped reading because their client went away."},
			stat(func(s queryscheduler.Stats) float64 { return float64(s.Canceled) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ariadne_query_timed_out_total", Help: "Queries stopped at query.timeout while running (HTTP 504, gRPC DeadlineExceeded)."},
			stat(func(s queryscheduler.Stats) float64 { return float64(s.TimedOut) })),
	)
	return sch
}

// admitQueries puts a query API behind the process's scheduler and the per-query limits. Every
// tenant's API must share the one scheduler.
func admitQueries(a *api.Server, sch *queryscheduler.Scheduler, qc config.Query) {
	a.SetScheduler(sch)
	a.SetLimits(queryLimits(qc))
}

// queryLimits are the per-query limits of the query section (or of a tenant's overrides of it).
func queryLimits(qc config.Query) api.Limits {
	return api.Limits{
		Timeout:        time.Duration(qc.Timeout),
		MaxResultLimit: qc.MaxResultLimit, MaxSpansPerSpanSet: qc.MaxSpansPerSpanSet,
		MaxDuration: time.Duration(qc.MaxDuration), MetricsMaxDuration: time.Duration(qc.MetricsMaxDuration),
		MaxResponseSeries: qc.MaxResponseSeries, MaxBytesPerTrace: qc.MaxBytesPerTrace,
		MaxBytesPerTagValuesQuery: qc.MaxBytesPerTagValuesQuery, MaxTracesPerLintReport: qc.MaxTracesPerLintReport,
	}
}

// pacingConsumer tells the scheduler that ingest is busy on every request it hands on, so that
// running queries yield the CPU to it (queryscheduler.Yield).
type pacingConsumer struct {
	next receive.Consumer
	sch  *queryscheduler.Scheduler
}

func (c pacingConsumer) ConsumeTraces(ctx context.Context, body []byte) (receive.Result, error) {
	c.sch.NoteIngest()
	return c.next.ConsumeTraces(ctx, body)
}
