package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/read/queryscheduler"
)

// TenantHeader names a query's tenant, as in Grafana Tempo. The scheduler keeps one queue per
// tenant; requests without the header share DefaultTenant's.
const TenantHeader = "X-Scope-OrgID"

// DefaultTenant is the tenant of requests that name none (the receivers use the same name).
const DefaultTenant = "single-tenant"

// Limits bound what one query may ask for; the zero value of a field is no bound.
type Limits struct {
	// Timeout bounds a query from arrival to answer, queueing included.
	Timeout time.Duration
	// MaxResultLimit caps a search's limit, MaxSpansPerSpanSet its spss.
	MaxResultLimit     int
	MaxSpansPerSpanSet int
	// MaxDuration bounds a search's or tag query's time range, MetricsMaxDuration a metrics
	// query's.
	MaxDuration        time.Duration
	MetricsMaxDuration time.Duration
	// MaxResponseSeries caps the series of a metrics answer.
	MaxResponseSeries int
	// MaxBytesPerTrace caps a trace-by-ID answer (span bytes as stored); a larger trace comes
	// back truncated and marked partial.
	MaxBytesPerTrace int64
	// MaxBytesPerTagValuesQuery caps the values one tag values answer holds.
	MaxBytesPerTagValuesQuery int64
	// MaxTracesPerLintReport caps how many traces a lint report reads, whatever its window.
	MaxTracesPerLintReport int
}

// SetScheduler makes every query wait for a slot in sch. Without one, queries run at once.
func (s *Server) SetScheduler(sch *queryscheduler.Scheduler) { s.sched = sch }

// SetLimits sets the per-query limits; safe while serving (a query already running keeps what
// it read).
func (s *Server) SetLimits(l Limits) { s.limitsP.Store(&l) }

// limits are the per-query limits in force.
func (s *Server) limits() Limits {
	if l := s.limitsP.Load(); l != nil {
		return *l
	}
	return Limits{}
}

// tenantOf is the request's tenant key for the scheduler's fair queues.
func tenantOf(r *http.Request) string {
	if t := strings.TrimSpace(r.Header.Get(TenantHeader)); t != "" {
		return t
	}
	return DefaultTenant
}

// queryCost says whether a request is a query the scheduler admits, and the memory it is
// estimated to hold while it runs. Every path that reads stored traces is one (Tempo's,
// Jaeger's under either prefix, Ariadne's analysis); only answers kept in memory and checks
// that must stay quick under load are not: health, build info, the SDKs' sampling strategies,
// the service graph and dependencies (from the metrics generator), Jaeger's min step. The peer
// API (/internal/v1/traces/) is not either: a peer's call comes from a query already holding a
// slot on its own node, and two nodes asking each other with their slots full would each wait
// for the other until the timeout.
// The estimates are deliberately round: they are what one request of the kind holds at most
// under the limits above (a scan batch and its decoded traces for a search, the merged encoding
// state for a trace, a whole decoded trace and its analysis), and they only need to keep the
// sum of running queries within the budget.
func queryCost(path string) (int64, bool) {
	p := strings.TrimPrefix(path, jaegerBasePath)
	switch {
	case !strings.HasPrefix(p, "/api/"),
		p == "/api/echo", strings.HasPrefix(p, "/api/status/"), p == "/api/sampling",
		p == "/api/servicegraph", p == "/api/dependencies", p == "/api/v3/dependencies", p == "/api/metrics/minstep":
		return 0, false
	case strings.HasPrefix(p, "/api/analysis/"):
		return 32 << 20, true
	case strings.HasPrefix(p, "/api/traces/"), strings.HasPrefix(p, "/api/v2/traces/"), strings.HasPrefix(p, "/api/v3/traces/"):
		return 16 << 20, true
	}
	return 8 << 20, true
}

// admit runs h once the scheduler has a slot for the request, under the query timeout. A full
// queue is answered 429 with Retry-After; a request whose client goes away while it waits
// leaves the queue, and one that runs is cancelled through its context.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, cost int64, h http.Handler) {
	ctx := r.Context()
	timeout := s.limits().Timeout
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	release, err := s.sched.Acquire(ctx, tenantOf(r), cost)
	if err != nil {
		switch {
		case errors.Is(err, queryscheduler.ErrQueueFull):
			w.Header().Set("Retry-After", strconv.Itoa(int(s.sched.RetryAfter()/time.Second)))
			writeError(w, http.StatusTooManyRequests, fmt.Sprintf("too many queries queued for tenant %q; retry later", tenantOf(r)))
		case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
			// Waited the whole timeout in the queue: the server is busy, not broken.
			w.Header().Set("Retry-After", strconv.Itoa(int(s.sched.RetryAfter()/time.Second)))
			writeError(w, http.StatusTooManyRequests, fmt.Sprintf("query waited %v for a slot; retry later", timeout))
		}
		// Otherwise the client went away: there is no one to answer.
		return
	}
	defer release()
	h.ServeHTTP(w, r.WithContext(s.sched.Pace(ctx)))
}

// queryFailed answers a query that returned err: 504 when it ran out of time, nothing when its
// client went away, 500 otherwise.
func (s *Server) queryFailed(w http.ResponseWriter, r *http.Request, what string, err error) {
	if s.sched != nil {
		s.sched.NoteStopped(err)
	}
	switch {
	case r.Context().Err() != nil && errors.Is(err, context.Canceled):
		s.log.Debug(what+": client went away", "err", err)
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusGatewayTimeout, fmt.Sprintf("%s: query timed out", what))
	default:
		s.log.Error(what, "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}
