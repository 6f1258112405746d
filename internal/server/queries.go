package server

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ariadne-tracing/ariadne/internal/api"
	"github.com/ariadne-tracing/ariadne/internal/config"
	"github.com/ariadne-tracing/ariadne/internal/queryscheduler"
)

// newQueryScheduler is the process's query scheduler, its state exported on reg. By default half
// the CPUs run queries, so ingest keeps the rest whatever the query load.
func newQueryScheduler(qc config.Query, reg prometheus.Registerer) *queryscheduler.Scheduler {
	concurrent := qc.MaxConcurrentQueries
	if concurrent <= 0 {
		concurrent = max(1, runtime.GOMAXPROCS(0)/2)
	}
	sch := queryscheduler.New(queryscheduler.Config{MaxConcurrent: concurrent, MaxMemoryBytes: qc.MaxMemoryBytes,
		MaxQueuedPerTenant: qc.MaxOutstandingPerTenant})
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
