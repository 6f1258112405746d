// Package ingest checks OTLP trace requests and hands what is valid to the store.
//
// It answers the questions a sender needs answered (is the body protobuf at all, which spans are
// invalid and why, is the server overloaded, is this tenant over its rate) and keeps invalid data
// out of the store: a request with some bad spans is stored without them and answered with a
// partial success. Limits that shape data rather than refuse it (attribute sizes, attributes,
// events and links per span) are applied the way OpenTelemetry SDKs apply them: the excess is
// dropped and counted in the span's dropped-* counts.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ariadne-tracing/ariadne/internal/storage/wal"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// Store is where accepted spans go.
type Store interface {
	// AppendBatch makes a request durable and readable; spans is the request scanned, every
	// span valid. Both may be reused afterwards.
	AppendBatch(payload []byte, spans *otlpwire.Batch) error
	// HeadBytes is the span data held in memory.
	HeadBytes() int64
	// WALPendingBytes is what waits to be written to the WAL.
	WALPendingBytes() int64
	// TraceSpans is how many spans of a trace the head holds now.
	TraceSpans(id [16]byte) int
	// MarkTruncated records that a trace lost spans to the spans-per-trace limit.
	MarkTruncated(id [16]byte)
}

// Observer sees every accepted request once it is durable, before tail sampling: span metrics
// and the service graph count what arrived. It gets the request as ingest scanned it, so that
// no observer reads the wire bytes again. Called synchronously; must be fast and must not keep
// spans or anything they point into past the call.
type Observer interface {
	ObserveSpans(spans *otlpwire.Batch)
}

// Config are the ingest limits. Zero values take the defaults.
type Config struct {
	// MaxHeadBytes: past this much span data in memory, requests are refused as overloaded until
	// blocks catch up (default 48 MiB).
	MaxHeadBytes int64
	// MaxWALPendingBytes: past this much data queued for the WAL, requests are refused as
	// overloaded (default 64 MiB).
	MaxWALPendingBytes int64
	// RetryAfter is what overloaded senders are told to wait (default 1s).
	RetryAfter time.Duration

	MaxSpansPerTrace       int // later spans are refused and the trace marked truncated (default 50000; -1: none)
	MaxAttributeValueBytes int // longer string/bytes values are cut (default 32768; -1: none)
	MaxAttributesPerSpan   int // default 128 (-1: none)
	MaxEventsPerSpan       int // default 128 (-1: none)
	MaxLinksPerSpan        int // default 128 (-1: none)

	// RateLimitSpans is each tenant's ingest rate in spans per second (0: unlimited), with
	// RateBurstSpans of burst (default: one second's worth).
	RateLimitSpans float64
	RateBurstSpans float64
	// TenantLimits, when set, gives each tenant's rate and burst instead (per-tenant overrides);
	// it is asked on every request, so a changed override applies at once.
	TenantLimits func(tenant string) (rate, burst float64)
	// MaxTenants caps how many tenants' rate-limit state is held (default DefaultMaxTenants).
	// Past it a request from a new tenant is refused as rate limited until others go idle.
	MaxTenants int
	// Now is the clock, for tests of the rate limiter (default time.Now).
	Now func() time.Time

	// Backlog, when set, says why data must be refused as retryable for a reason beyond the
	// store's memory (blocks waiting on local disk for an unreachable object store), or "".
	Backlog func() string

	Observers  []Observer
	Registerer prometheus.Registerer
}

func (c *Config) defaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if c.MaxHeadBytes <= 0 {
		c.MaxHeadBytes = 48 << 20
	}
	if c.MaxWALPendingBytes <= 0 {
		c.MaxWALPendingBytes = 64 << 20
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = time.Second
	}
	def(&c.MaxSpansPerTrace, 50000)
	def(&c.MaxAttributeValueBytes, 32<<10)
	def(&c.MaxAttributesPerSpan, 128)
	def(&c.MaxEventsPerSpan, 128)
	def(&c.MaxLinksPerSpan, 128)
	if c.RateBurstSpans <= 0 {
		c.RateBurstSpans = c.RateLimitSpans
	}
}

// Limits are the limits that refuse or cut a tenant's spans. They start as the Config's and
// change with SetLimits while the ingester runs (per-tenant overrides); each request reads them
// once, so it is judged by one set throughout. Zero values take the defaults, -1 is none.
type Limits struct {
	MaxSpansPerTrace       int
	MaxAttributeValueBytes int
	MaxAttributesPerSpan   int
	MaxEventsPerSpan       int
	MaxLinksPerSpan        int
}

func (l *Limits) defaults() {
	c := Config{MaxSpansPerTrace: l.MaxSpansPerTrace, MaxAttributeValueBytes: l.MaxAttributeValueBytes,
		MaxAttributesPerSpan: l.MaxAttributesPerSpan, MaxEventsPerSpan: l.MaxEventsPerSpan, MaxLinksPerSpan: l.MaxLinksPerSpan}
	c.defaults()
	*l = c.limits()
}

func (c *Config) limits() Limits {
	return Limits{MaxSpansPerTrace: c.MaxSpansPerTrace, MaxAttributeValueBytes: c.MaxAttributeValueBytes,
		MaxAttributesPerSpan: c.MaxAttributesPerSpan, MaxEventsPerSpan: c.MaxEventsPerSpan, MaxLinksPerSpan: c.MaxLinksPerSpan}
}

// SetLimits replaces the span limits; requests already being checked keep the ones they read.
func (in *Ingester) SetLimits(l Limits) {
	l.defaults()
	in.lim.Store(&l)
}

// Ingester implements the receivers' consumer.
type Ingester struct {
	store Store
	cfg   Config
	lim   atomic.Pointer[Limits]
	reqs  sync.Pool // *request
	m     metrics

	limiter *rateLimiter

	quota traceQuota
}

type metrics struct {
	received, accepted prometheus.Counter
	refused            *prometheus.CounterVec // spans, by reason
	refusedRequests    *prometheus.CounterVec // requests refused before they were decoded, by reason
	limited            *prometheus.CounterVec // spans reshaped by a limit, by limit
	invalidUTF8        prometheus.Counter     // spans whose strings had invalid UTF-8 replaced
}

// New returns an Ingester writing to store.
func New(store Store, cfg Config) (*Ingester, error) {
	cfg.defaults()
	in := &Ingester{store: store, cfg: cfg}
	lim := cfg.limits()
	in.lim.Store(&lim)
	limits := cfg.TenantLimits
	if limits == nil {
		limits = func(string) (float64, float64) { return cfg.RateLimitSpans, cfg.RateBurstSpans }
	}
	in.limiter = newRateLimiter(limits, cfg.MaxTenants, cfg.Now)
	in.quota.init()
	in.m = metrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{Name: "ariadne_ingest_spans_received_total",
			Help: "Spans in OTLP requests that decoded."}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Name: "ariadne_ingest_spans_accepted_total",
			Help: "Spans made durable and acknowledged."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ariadne_ingest_spans_refused_total",
			Help: "Spans refused, by reason: invalid_id, max_spans_per_trace, rate_limited, too_many_tenants, overloaded, storage_unavailable."}, []string{"reason"}),
		refusedRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ariadne_ingest_requests_refused_total",
			Help: "Requests refused before their spans could be counted, by reason: too_large, bad_content_type, malformed."}, []string{"reason"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ariadne_ingest_spans_limited_total",
			Help: "Spans stored with data cut by a limit: attribute_value, attributes, events, links."}, []string{"limit"}),
		invalidUTF8: prometheus.NewCounter(prometheus.CounterOpts{Name: "ariadne_ingest_spans_invalid_utf8_total",
			Help: "Spans stored with invalid UTF-8 in their strings (or their resource's or scope's) replaced by U+FFFD; each is flagged with the attribute " + otlpwire.InvalidUTF8Key + "."}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{in.m.received, in.m.accepted, in.m.refused, in.m.refusedRequests, in.m.limited, in.m.invalidUTF8} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("ingest: register metrics: %w", err)
			}
		}
	}
	return in, nil
}

// RefusedRequest counts a request the receivers refused before it reached the ingester.
func (in *Ingester) RefusedRequest(reason string) { in.m.refusedRequests.WithLabelValues(reason).Inc() }

// Result tells the sender what happened to a request that was not refused outright.
type Result struct {
	Accepted      int64
	RejectedSpans int64
	Message       string
}

// MalformedError means the request body is not a valid OTLP protobuf message.
type MalformedError struct{ Err error }

func (e *MalformedError) Error() string   { return "request does not decode: " + e.Err.Error() }
func (e *MalformedError) Unwrap() error   { return e.Err }
func (e *MalformedError) Malformed() bool { return true }

// OverloadError means the server cannot take the request now; the sender should retry.
type OverloadError struct {
	Reason string
	After  time.Duration
	// Limited marks a per-tenant rate limit rather than the server as a whole being full.
	Limited bool
	// Err is the cause, when there is one (the disk error behind "storage unavailable").
	Err error
}

func (e *OverloadError) Error() string {
	if e.Err != nil {
		return "overloaded: " + e.Reason + ": " + e.Err.Error()
	}
	return "overloaded: " + e.Reason
}
func (e *OverloadError) Unwrap() error             { return e.Err }
func (e *OverloadError) RetryAfter() time.Duration { return e.After }
func (e *OverloadError) RateLimited() bool         { return e.Limited }

// request is the reusable state of one Consume: the request scanned once, and the buffer a
// rewritten request is encoded into.
type request struct {
	batch   otlpwire.Batch
	rewrite []byte
}

// scan is what one pass over a request found.
type scan struct {
	spans, invalid, overTrace int
	lim                       *Limits // the limits this request is judged by
	reshape                   bool    // some span needs a limit applied
	firstInvalid              string
	// traceCounts counts the valid spans per trace in this request, only when the
	// spans-per-trace limit is on.
	traceCounts map[[16]byte]int
	// granted is how many of each trace's spans the quota let in: rewrite keeps exactly the
	// first granted spans of each trace.
	granted   map[[16]byte]int
	truncated map[[16]byte]bool
}

// Consume checks and stores one ExportTraceServiceRequest in protobuf wire form for tenant.
func (in *Ingester) Consume(ctx context.Context, tenant string, body []byte) (Result, error) {
	req, _ := in.reqs.Get().(*request)
	if req == nil {
		req = new(request)
	}
	defer func() {
		req.batch.Release()
		in.reqs.Put(req)
	}()
	sc, err := in.scan(&req.batch, body)
	if err == nil && !req.batch.ValidUTF8 {
		// Kept, not refused: the sender's data is worth more than its encoding mistake, and
		// after this nothing downstream can fail to decode it. The scan found it on its way;
		// the repaired request is another byte sequence, scanned again.
		if fixed, n, serr := otlpwire.SanitizeUTF8(nil, body); serr == nil {
			body = fixed
			in.m.invalidUTF8.Add(float64(n))
			sc, err = in.scan(&req.batch, body)
		}
	}
	if err != nil {
		in.m.refusedRequests.WithLabelValues("malformed").Inc()
		return Result{}, &MalformedError{Err: err}
	}
	in.m.received.Add(float64(sc.spans))
	if sc.spans == 0 {
		return Result{}, nil
	}
	switch d, wait := in.limiter.take(tenant, float64(sc.spans)); d {
	case limitOverRate:
		in.m.refused.WithLabelValues("rate_limited").Add(float64(sc.spans))
		rate, _ := in.limiter.limits(tenant)
		return Result{}, &OverloadError{Reason: fmt.Sprintf("tenant %q is over its ingest rate of %.0f spans/s", tenant, rate),
			After: max(wait, time.Second), Limited: true}
	case limitTooManyTenants:
		in.m.refused.WithLabelValues("too_many_tenants").Add(float64(sc.spans))
		return Result{}, &OverloadError{Reason: fmt.Sprintf("tenant %q refused: this server already tracks the rate of %d active tenants (ingest.max_tenants)",
			tenant, in.limiter.maxTenants), After: max(wait, time.Second), Limited: true}
	}
	if hb := in.store.HeadBytes(); hb > in.cfg.MaxHeadBytes {
		in.m.refused.WithLabelValues("overloaded").Add(float64(sc.spans))
		return Result{}, &OverloadError{Reason: fmt.Sprintf("%d MiB of spans waiting to be written to blocks", hb>>20), After: in.cfg.RetryAfter}
	}
	if wp := in.store.WALPendingBytes(); wp > in.cfg.MaxWALPendingBytes {
		in.m.refused.WithLabelValues("overloaded").Add(float64(sc.spans))
		return Result{}, &OverloadError{Reason: fmt.Sprintf("%d MiB waiting for the write-ahead log", wp>>20), After: in.cfg.RetryAfter}
	}
	if in.cfg.Backlog != nil {
		if reason := in.cfg.Backlog(); reason != "" {
			in.m.refused.WithLabelValues("overloaded").Add(float64(sc.spans))
			return Result{}, &OverloadError{Reason: reason, After: in.cfg.RetryAfter}
		}
	}

	if sc.traceCounts != nil {
		in.reserve(&sc)
		// The reservation stands until the spans are in the head (or refused), so that
		// concurrent requests for the same trace cannot all see room for themselves.
		defer in.releaseQuota(&sc)
	}
	res := Result{Accepted: int64(sc.spans - sc.invalid - sc.overTrace), RejectedSpans: int64(sc.invalid + sc.overTrace)}
	var msgs []string
	if sc.invalid > 0 {
		in.m.refused.WithLabelValues("invalid_id").Add(float64(sc.invalid))
		msgs = append(msgs, fmt.Sprintf("%d spans with invalid IDs (first: %s)", sc.invalid, sc.firstInvalid))
	}
	if sc.overTrace > 0 {
		in.m.refused.WithLabelValues("max_spans_per_trace").Add(float64(sc.overTrace))
		msgs = append(msgs, fmt.Sprintf("%d spans past the limit of %d spans per trace", sc.overTrace, sc.lim.MaxSpansPerTrace))
	}
	if len(msgs) > 0 {
		res.Message = fmt.Sprintf("%d of %d spans rejected: %s", res.RejectedSpans, sc.spans, joinMsgs(msgs))
	}
	if res.Accepted == 0 {
		return res, nil
	}

	payload := body
	if sc.invalid > 0 || sc.overTrace > 0 || sc.reshape {
		req.rewrite, err = in.rewrite(req.rewrite[:0], body, sc)
		if err != nil {
			return Result{}, &MalformedError{Err: err}
		}
		payload = req.rewrite
		// The rare path: the rewritten request is another byte sequence, scanned again.
		if err := req.batch.Scan(payload); err != nil {
			return Result{}, &MalformedError{Err: err}
		}
	}
	if err := in.store.AppendBatch(payload, &req.batch); err != nil {
		if errors.Is(err, wal.ErrUnavailable) {
			// The disk is full or failing. Nothing of the request is acknowledged; SDKs retry
			// an Unavailable/503 with its delay, so the spans are not lost while it lasts.
			in.m.refused.WithLabelValues("storage_unavailable").Add(float64(res.Accepted))
			return Result{}, &OverloadError{Reason: "storage unavailable", After: in.cfg.RetryAfter, Err: err}
		}
		return Result{}, fmt.Errorf("storing %d spans: %w", res.Accepted, err)
	}
	for id := range sc.truncated {
		in.store.MarkTruncated(id)
	}
	in.m.accepted.Add(float64(res.Accepted))
	for _, o := range in.cfg.Observers {
		o.ObserveSpans(&req.batch)
	}
	return res, nil
}

func joinMsgs(m []string) string {
	out := m[0]
	for _, s := range m[1:] {
		out += "; " + s
	}
	return out
}

// scan reads body into b, the one scan of the request that every later step uses, and checks
// its spans.
func (in *Ingester) scan(b *otlpwire.Batch, body []byte) (scan, error) {
	sc := scan{lim: in.lim.Load()}
	if err := b.Scan(body); err != nil {
		return sc, err
	}
	perTrace := sc.lim.MaxSpansPerTrace > 0
	for i := range b.Spans {
		s := &b.Spans[i]
		sc.spans++
		if ok, why := s.Valid(); !ok {
			sc.invalid++
			if sc.firstInvalid == "" {
				sc.firstInvalid = why
			}
			continue
		}
		if perTrace {
			if sc.traceCounts == nil {
				sc.traceCounts = map[[16]byte]int{}
			}
			sc.traceCounts[[16]byte(s.TraceID)]++
		}
		if !sc.reshape {
			sc.reshape = needsReshape(s, sc.lim)
		}
	}
	return sc, nil
}
