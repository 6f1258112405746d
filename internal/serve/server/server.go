// Package server assembles a running Ariadne from its parts: the store, the ingester, the OTLP
// receivers and the query API, each on its listener. cmd/ariadne and the end-to-end tests start
// it the same way.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/ariadne-tracing/ariadne/internal/intake/receive"
	"github.com/ariadne-tracing/ariadne/internal/intake/zipkin"
	"github.com/ariadne-tracing/ariadne/internal/pipeline/headsampling"
	"github.com/ariadne-tracing/ariadne/internal/pipeline/ingest"
	"github.com/ariadne-tracing/ariadne/internal/pipeline/remotewrite"
	"github.com/ariadne-tracing/ariadne/internal/pipeline/sampling"
	"github.com/ariadne-tracing/ariadne/internal/pipeline/servicegraph"
	"github.com/ariadne-tracing/ariadne/internal/pipeline/spanmetrics"
	"github.com/ariadne-tracing/ariadne/internal/read/queryscheduler"
	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/auth"
	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/serve/connlimit"
	"github.com/ariadne-tracing/ariadne/internal/serve/tempogrpc"
	"github.com/ariadne-tracing/ariadne/internal/serve/tlsconfig"
	"github.com/ariadne-tracing/ariadne/internal/serve/ui"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
	"github.com/ariadne-tracing/ariadne/internal/storage/store"
	"github.com/ariadne-tracing/ariadne/internal/storage/vfs"
	"github.com/ariadne-tracing/ariadne/internal/storage/wal"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// Server is a running Ariadne.
type Server struct {
	cfg   config.Config
	log   *slog.Logger
	Store *store.Store
	API   *api.Server
	// Queries admits the query API's requests.
	Queries *queryscheduler.Scheduler
	// Registry holds Ariadne's own metrics, served on /metrics.
	Registry *prometheus.Registry
	// HeadSampling adapts the served head-sampling probabilities (nil unless adaptive); tests
	// step it with their own clock.
	HeadSampling *headsampling.Adapter

	grpc      *grpc.Server
	otlpHTTP  *http.Server
	queryHTTP *http.Server
	queryGRPC *grpc.Server // Tempo's streaming API, on queryHTTP's listener (querygrpc.go)

	zipkinHTTP *http.Server
	// samplingHTTP is the Jaeger agent-style sampling endpoint (jaeger_sampling_addr), or nil.
	samplingHTTP *http.Server
	core         *core    // with multi-tenancy off, the one tenant's; on, the empty one
	tenants      *tenants // with multi-tenancy on
	cluster      *cluster // with storage.backend s3 (cluster.go)
	overrides    *overrides
	pusher       *remotewrite.Pusher
	listeners    map[string]*connlimit.Listener // by name, for their metrics

	// Bound addresses (useful when the config asked for port 0).
	GRPCAddr, OTLPHTTPAddr, HTTPAddr, ZipkinAddr, JaegerSamplingAddr string

	errs     chan error
	stopOnce sync.Once
	stopErr  error
}

// consumer adapts the ingester to the receivers' interface; the ingester does not import the
// receivers, since data flows from them to it.
type consumer struct{ in *ingest.Ingester }

func (c consumer) ConsumeTraces(ctx context.Context, body []byte) (receive.Result, error) {
	res, err := c.in.Consume(ctx, receive.Tenant(ctx), body)
	return receive.Result{RejectedSpans: res.RejectedSpans, Message: res.Message}, err
}

// sampledTrace shows a head trace to the sampler, which does not import the head.
func sampledTrace(t *head.Trace) *sampling.Trace {
	return &sampling.Trace{ID: t.ID, Start: t.Start, End: t.End, SpanCount: t.SpanCount, ErrorCount: t.ErrorCount,
		Spans: func(fn func(resource, span []byte)) {
			t.Spans(func(g *otlpwire.Group, raw []byte) { fn(g.Resource, raw) })
		}}
}

// Option changes how Start assembles the server; the end-to-end tests use them.
type Option func(*options)

type options struct {
	fs      vfs.FS
	cluster *cluster                                  // set by Start with storage.backend s3
	tenant  string                                    // whose core openCore opens ("": the multi-tenant empty core)
	limits  func(tenant string) (rate, burst float64) // per-tenant ingest rate (overrides)
	// queries is the process's one query scheduler, which every core's API shares.
	queries *queryscheduler.Scheduler
	// overrides hold the per-tenant settings; each tenant core is tracked by them.
	overrides *overrides
}

// WithFS makes the write-ahead log and the block store write through fsys instead of the real
// filesystem, so that a test can fail their writes (internal/testkit/faultfs).
func WithFS(fsys vfs.FS) Option { return func(o *options) { o.fs = fsys } }

// core is one tenant's data and everything that reads or derives from it: the store, the
// ingester in front of it, span metrics and the service graph, the query API over it and its
// background linter. With multi-tenancy off the server has one; on, one per tenant, each in its
// own directory with its own metrics (labelled with the tenant), so no read can reach another
// tenant's data.
type core struct {
	Store  *store.Store
	API    *api.Server
	in     *ingest.Ingester
	graph  *servicegraph.Graph
	linter *linter
	// headSampling adapts the probabilities /api/sampling serves; nil unless adaptive.
	headSampling *headsampling.Adapter
	// strategies answer the SDKs' head samplers, on every endpoint that serves them.
	strategies *headsampling.Strategies

	// stream is the tenant's Tempo streaming gRPC API and serve its query port (that API beside
	// the HTTP one), with multi-tenancy on; off, the server's own are used.
	stream *grpc.Server
	serve  http.Handler

	reg prometheus.Registerer
	// sampler decides complete traces under the tenant's tail-sampling policies; nil keeps
	// everything. built is the sampler made for the first policies, reused (Update) when the
	// overrides change, so its metrics are registered once.
	sampler atomic.Pointer[sampling.Sampler]
	built   *sampling.Sampler
}

// apply puts a tenant's settings (its overrides over the configuration's sections) into its
// core's parts. Called when the core opens and after every reload of the overrides.
func (c *core) apply(t config.Tenant) error {
	ic := t.Ingest
	c.in.SetLimits(ingest.Limits{MaxSpansPerTrace: ic.MaxSpansPerTrace, MaxAttributeValueBytes: ic.MaxAttributeValueBytes,
		MaxAttributesPerSpan: ic.MaxAttributesPerSpan, MaxEventsPerSpan: ic.MaxEventsPerSpan, MaxLinksPerSpan: ic.MaxLinksPerSpan})
	c.Store.SetRetention(time.Duration(t.Retention))
	c.API.SetLimits(queryLimits(t.Query))
	if !t.TailSampling.Enabled() {
		c.sampler.Store(nil)
		return nil
	}
	if c.built == nil {
		smp, err := sampling.New(t.TailSampling, c.reg)
		if err != nil {
			return err
		}
		c.built = smp
	} else if err := c.built.Update(t.TailSampling); err != nil {
		return err
	}
	c.sampler.Store(c.built)
	return nil
}

// openCore opens a tenant's store in dir and builds its pipeline, registering its metrics on reg.
func openCore(cfg config.Config, dir string, build api.BuildInfo, log *slog.Logger, o options, reg prometheus.Registerer) (*core, error) {
	fsync := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ariadne_wal_fsync_duration_seconds",
		Help: "Time each write-ahead log group commit spent in fsync.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)})
	reg.MustRegister(fsync)
	idle := time.Duration(cfg.Storage.TraceIdle)
	s := &core{reg: reg}
	if cfg.TailSampling.Enabled() {
		// A trace is decided when it has been idle for the decision wait.
		idle = cfg.TailSampling.DecisionWait
		if idle <= 0 {
			idle = 10 * time.Second
		}
	}
	// The hook is always there: a tenant's overrides may turn tail sampling on while it runs.
	// Without a sampler it keeps every trace at the cost of one atomic load.
	keep := func(t *head.Trace) (bool, float64) {
		sampler := s.sampler.Load()
		if sampler == nil {
			return true, 1
		}
		d := sampler.Decide(sampledTrace(t))
		return d.Keep, d.Ratio
	}
	extLog, blockWritten := o.cluster.externalLog()
	st, err := store.Open(store.Options{
		Dir:                dir,
		ExternalLog:        extLog,
		BlockWritten:       blockWritten,
		Keep:               keep,
		TraceIdle:          idle,
		TraceMaxAge:        time.Duration(cfg.Storage.TraceMaxAge),
		HeadMaxBytes:       cfg.Storage.HeadCutBytes,
		BlockMaxBytes:      cfg.Storage.BlockMaxBytes,
		BlockMaxWait:       time.Duration(cfg.Storage.BlockMaxWait),
		CompactMinBlocks:   o.cluster.compactMinBlocks(cfg.Storage.CompactMinBlocks),
		CompactTargetBytes: cfg.Storage.CompactTargetBytes,
		CompactWindow:      time.Duration(cfg.Storage.CompactWindow),
		CompactFreshAge:    time.Duration(cfg.Storage.CompactFreshAge),
		CompactFreshBlocks: cfg.Storage.CompactFreshBlocks,
		MaxDiskBytes:       cfg.Storage.MaxDiskBytes,
		WAL: wal.Options{SegmentBytes: cfg.Storage.WALSegment, FS: o.fs,
			ObserveFsync: func(d time.Duration) { fsync.Observe(d.Seconds()) }},
		Retention: time.Duration(cfg.Retention),
		Logger:    log,
	})
	if err != nil {
		return nil, err
	}
	s.Store = st
	view, err := o.cluster.startTenant(o.tenant, dir, st)
	if err != nil {
		st.Close()
		return nil, err
	}
	reg.MustRegister(newStoreCollector(st))
	var observers []ingest.Observer
	var spanMetrics *spanmetrics.Metrics
	if mg := cfg.MetricsGenerator; !mg.Disabled {
		// Span metrics and the service graph see every accepted span before tail sampling, so
		// rates and error ratios stay true whatever is kept.
		if spanMetrics, err = spanmetrics.New(reg, spanmetrics.Config{Dimensions: mg.Dimensions, MaxSeries: mg.MaxSeries}); err != nil {
			st.Close()
			return nil, err
		}
		// Tempo's service-graph buckets start at 100ms, which puts every fast call in the first
		// bucket and every p95 estimate at 95ms; the span-metrics buckets resolve down to 2ms.
		graph, err := servicegraph.New(reg, servicegraph.Config{Wait: time.Duration(mg.ServiceGraphWait), MaxItems: mg.ServiceGraphMaxItems,
			Buckets: spanmetrics.DefaultBuckets})
		if err != nil {
			st.Close()
			return nil, err
		}
		graph.Start()
		s.graph = graph
		observers = append(observers, spanMetrics, graph)
	}
	ic := cfg.Ingest
	in, err := ingest.New(o.cluster.ingestStore(st, o.tenant), ingest.Config{
		MaxHeadBytes: ic.MaxHeadBytes, MaxWALPendingBytes: ic.MaxWALPendingBytes,
		MaxSpansPerTrace: ic.MaxSpansPerTrace, MaxAttributeValueBytes: ic.MaxAttributeValueBytes,
		MaxAttributesPerSpan: ic.MaxAttributesPerSpan, MaxEventsPerSpan: ic.MaxEventsPerSpan, MaxLinksPerSpan: ic.MaxLinksPerSpan,
		RateLimitSpans: ic.RateLimitSpans, RateBurstSpans: ic.RateBurstSpans, MaxTenants: ic.MaxTenants, TenantLimits: o.limits,
		Observers: observers, Registerer: reg, Backlog: view.backlog,
	})
	if err != nil {
		st.Close()
		return nil, err
	}
	s.in = in

	q := o.cluster.querier(st, view)
	s.API = api.New(q, build, log)
	o.cluster.servePeers(s.API, st)
	if o.queries != nil {
		admitQueries(s.API, o.queries, cfg.Query)
	}
	s.API.SetWriteCheck(func() error {
		if !st.Writable() {
			return fmt.Errorf("write-ahead log cannot write: %s", st.WALStats().LastError)
		}
		return nil
	})
	s.linter = newLinter(q, reg, log)
	s.linter.start()
	if spanMetrics != nil {
		s.API.SetTypical(spanMetrics)
		s.API.SetGenerated(s.graph, spanMetrics, time.Now())
	}
	if err := s.serveHeadSampling(cfg.Sampling.Remote, dir, spanMetrics, log); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// serveHeadSampling serves the SDKs' sampling strategies on the core's API; adaptive ones read
// the core's span metrics, so each tenant's probabilities follow its own traffic.
func (c *core) serveHeadSampling(hc headsampling.Config, dir string, spanMetrics *spanmetrics.Metrics, log *slog.Logger) error {
	if err := hc.Validate(); err != nil {
		return err
	}
	if hc.Adaptive.Enabled {
		if spanMetrics == nil {
			return fmt.Errorf("sampling.remote.adaptive needs span metrics: metrics_generator.disabled is set")
		}
		a, err := headsampling.NewAdapter(hc, spanMetrics.CallsBySpanName, dir, log)
		if err != nil {
			return err
		}
		c.headSampling = a
		a.Start()
	}
	c.strategies = headsampling.NewStrategies(hc, c.headSampling)
	c.API.Handle("GET /api/sampling", c.strategies)
	return nil
}

// close stops the core's background work and closes its store.
func (c *core) close() error {
	if c.headSampling != nil {
		c.headSampling.Stop()
	}
	if c.graph != nil {
		c.graph.Stop()
	}
	c.linter.close()
	return c.Store.Close()
}

// Start opens the store (replaying its WAL), binds every listener and starts serving. Errors from
// serving later arrive on Err.
func Start(cfg config.Config, build api.BuildInfo, log *slog.Logger, opts ...Option) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	var o options
	for _, f := range opts {
		f(&o)
	}
	if cfg.MemoryLimit > 0 {
		debug.SetMemoryLimit(cfg.MemoryLimit)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	authn, err := auth.New(cfg.Auth, reg)
	if err != nil {
		return nil, err
	}
	gate := func(listener string) *auth.Gate {
		return &auth.Gate{Auth: authn, Multitenancy: cfg.MultitenancyEnabled, Listener: listener}
	}
	tlsCfgs, err := listenerTLS(cfg.TLS, log)
	if err != nil {
		return nil, err
	}
	if err := cfg.CheckCluster(); err != nil {
		return nil, err
	}
	if cfg.Target == config.TargetQuery || cfg.Target == config.TargetCompact {
		return startStateless(cfg, build, log, reg, gate, tlsCfgs["http"])
	}
	if cfg.Storage.Backend == "s3" {
		if o.cluster, err = openCluster(cfg, log, reg); err != nil {
			return nil, err
		}
	}

	s := &Server{cfg: cfg, log: log, errs: make(chan error, 4), listeners: map[string]*connlimit.Listener{}}
	s.overrides = newOverrides(cfg, log, reg)
	o.overrides = s.overrides
	o.limits = s.overrides.rateFor
	// One scheduler for the process, whatever the number of tenants: CPU and memory are shared.
	s.Queries = newQueryScheduler(cfg.Query, reg)
	o.queries = s.Queries
	var c receive.Consumer
	var consume func(ctx context.Context, tenant string, body []byte) (ingest.Result, error)
	var refused func(reason string)
	if cfg.MultitenancyEnabled {
		ts, err := openTenants(cfg, build, log, o, reg)
		if err != nil {
			s.overrides.close()
			return nil, err
		}
		// The empty core answers /ready and the build info; tenants' cores answer their reads.
		s.tenants, s.core = ts, ts.empty
		c, consume, refused = ts, ts.consume, ts.refusedRequest
	} else {
		o.tenant = auth.DefaultTenant
		co, err := openCore(cfg, cfg.DataDir, build, log, o, reg)
		if err != nil {
			s.overrides.close()
			return nil, err
		}
		s.core = co
		// With multi-tenancy off the one tenant is Tempo's single-tenant, overrides included.
		if err := s.overrides.track(auth.DefaultTenant, co); err != nil {
			co.close()
			s.overrides.close()
			return nil, err
		}
		c, consume, refused = consumer{co.in}, co.in.Consume, co.in.RefusedRequest
	}
	// Queries pace themselves while ingest is busy; every receiver says when it is.
	c = pacingConsumer{next: c, sch: s.Queries}
	consumeAll := consume
	consume = func(ctx context.Context, tenant string, body []byte) (ingest.Result, error) {
		s.Queries.NoteIngest()
		return consumeAll(ctx, tenant, body)
	}
	st := closer{s}
	s.Store, s.API, s.HeadSampling = s.core.Store, s.core.API, s.core.headSampling
	if cl := o.cluster; cl != nil {
		s.cluster = cl
		if cfg.Target == config.TargetAll {
			if err := cl.startCompactor(); err != nil {
				st.Close()
				return nil, err
			}
		}
	}
	if u := cfg.MetricsGenerator.RemoteWriteURL; u != "" && !cfg.MetricsGenerator.Disabled {
		if s.pusher, err = remotewrite.New(remotewrite.Config{URL: u, Interval: time.Duration(cfg.MetricsGenerator.RemoteWriteInterval),
			Logger: log}, reg); err != nil {
			st.Close()
			return nil, err
		}
		s.pusher.Start()
	}
	s.API.Handle("GET /", ui.Handler())
	s.API.Handle("GET /api/status/tenants", s.tenantList(authn))
	if s.cluster != nil && s.cluster.jet != nil {
		// `ariadne status`: the cluster as NATS holds it, the same from any node.
		s.API.Handle("GET /api/status/cluster", s.cluster.jet.log.StatusHandler())
	}
	s.API.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	if cfg.PprofEnabled {
		// Go's profiler, as Prometheus and Tempo expose it: how BENCHMARKS.md's profiles are taken.
		// Lock contention (ingest against queries) is sampled too, one event in 20: cheap, and
		// only while the profiler is on.
		runtime.SetMutexProfileFraction(20)
		s.API.Handle("GET /debug/pprof/", http.HandlerFunc(pprof.Index))
		s.API.Handle("GET /debug/pprof/profile", http.HandlerFunc(pprof.Profile))
		s.API.Handle("GET /debug/pprof/trace", http.HandlerFunc(pprof.Trace))
		s.API.Handle("GET /debug/pprof/symbol", http.HandlerFunc(pprof.Symbol))
	}
	s.Registry = reg

	lg, err := net.Listen("tcp", cfg.OTLPGRPCAddr)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("listen OTLP/gRPC %s: %w", cfg.OTLPGRPCAddr, err)
	}
	lh, err := net.Listen("tcp", cfg.OTLPHTTPAddr)
	if err != nil {
		lg.Close()
		st.Close()
		return nil, fmt.Errorf("listen OTLP/HTTP %s: %w", cfg.OTLPHTTPAddr, err)
	}
	lq, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		lg.Close()
		lh.Close()
		st.Close()
		return nil, fmt.Errorf("listen HTTP %s: %w", cfg.HTTPAddr, err)
	}
	s.GRPCAddr, s.OTLPHTTPAddr, s.HTTPAddr = lg.Addr().String(), lh.Addr().String(), lq.Addr().String()
	if cfg.ZipkinAddr != "" {
		lz, err := net.Listen("tcp", cfg.ZipkinAddr)
		if err != nil {
			lg.Close()
			lh.Close()
			lq.Close()
			st.Close()
			return nil, fmt.Errorf("listen Zipkin %s: %w", cfg.ZipkinAddr, err)
		}
		s.ZipkinAddr = lz.Addr().String()
		mux := http.NewServeMux()
		mux.Handle("/api/v2/spans", gate("zipkin").HTTP(auth.Static(receiveRule), receive.TenantFromHeader(
			zipkin.Handler(func(ctx context.Context, otlp []byte) (int64, error) {
				res, err := consume(ctx, receive.Tenant(ctx), otlp)
				return res.RejectedSpans, err
			}))))
		s.zipkinHTTP = &http.Server{Handler: mux}
		lzc, serve := serveHTTP(s.zipkinHTTP, lz, cfg.Server, tlsCfgs["zipkin"])
		s.listeners["zipkin"] = lzc
		go func() { s.errs <- wrapServe("Zipkin", serve()) }()
	}

	if cfg.JaegerSamplingAddr != "" {
		ls, err := net.Listen("tcp", cfg.JaegerSamplingAddr)
		if err != nil {
			lg.Close()
			lh.Close()
			lq.Close()
			if s.zipkinHTTP != nil {
				s.zipkinHTTP.Close()
			}
			st.Close()
			return nil, fmt.Errorf("listen Jaeger sampling %s: %w", cfg.JaegerSamplingAddr, err)
		}
		s.JaegerSamplingAddr = ls.Addr().String()
		// The SDKs ask with the token they export with, as on /api/sampling.
		s.samplingHTTP = &http.Server{Handler: gate("jaeger_sampling").HTTP(auth.Static(receiveRule),
			headsampling.AgentHandler(func(r *http.Request) *headsampling.Strategies {
				return s.strategiesFor(r.Header.Get(auth.TenantHeader))
			}))}
		lsc, serve := serveHTTP(s.samplingHTTP, ls, cfg.Server, nil)
		s.listeners["jaeger_sampling"] = lsc
		go func() { s.errs <- wrapServe("Jaeger sampling", serve()) }()
	}

	lgc := connlimit.NewListener(lg, cfg.Server.GRPCConnLimit)
	s.grpc = receive.NewGRPCServer(c, receive.GRPCConfig{MaxRecvMsgBytes: int(cfg.Ingest.MaxRequestBytes)},
		append(grpcProtections(cfg.Server, lgc), grpcCreds(tlsCfgs["otlp_grpc"]),
			grpc.ChainUnaryInterceptor(gate("otlp_grpc").UnaryServerInterceptor(receiveRule)))...)
	// Jaeger's collector serves SamplingManager beside its span intake; so does the OTLP port,
	// behind the same gate (a sender's token, acting for one tenant).
	(&headsampling.SamplingManager{Lookup: func(ctx context.Context) *headsampling.Strategies {
		md, _ := metadata.FromIncomingContext(ctx)
		var tenant string
		if v := md.Get(strings.ToLower(auth.TenantHeader)); len(v) > 0 {
			tenant = v[0]
		}
		return s.strategiesFor(tenant)
	}}).Register(s.grpc)
	s.otlpHTTP = &http.Server{Handler: gate("otlp_http").HTTP(auth.Static(receiveRule),
		receive.NewHTTPHandler(c, receive.HTTPConfig{MaxRequestBytes: cfg.Ingest.MaxRequestBytes, Refused: refused}))}
	var query http.Handler = s.withStreamingQuerier(s.API)
	if s.cluster != nil {
		query = withPeerHeads(query)
	}
	if s.tenants != nil {
		// Reads of trace data, Tempo's streaming gRPC API included, go to their tenant's core.
		query = s.tenants.handler(query)
	}
	s.queryHTTP = &http.Server{Handler: ui.SecurityHeaders(gate("http").HTTP(queryRule, query))}
	tempogrpc.EnableH2C(s.queryHTTP) // gRPC clients speak HTTP/2 without TLS (querygrpc.go)
	lhc, serveOTLP := serveHTTP(s.otlpHTTP, lh, cfg.Server, tlsCfgs["otlp_http"])
	lqc, serveQuery := serveHTTP(s.queryHTTP, lq, cfg.Server, tlsCfgs["http"])
	s.listeners["otlp_grpc"], s.listeners["otlp_http"], s.listeners["http"] = lgc, lhc, lqc
	registerConnMetrics(reg, s.listeners)

	go func() { s.errs <- wrapServe("OTLP/gRPC", s.grpc.Serve(lgc)) }()
	go func() { s.errs <- wrapServe("OTLP/HTTP", serveOTLP()) }()
	go func() { s.errs <- wrapServe("query HTTP", serveQuery()) }()
	if s.cluster != nil && s.cluster.jet != nil {
		// Once the query address is bound: it is what the members bucket tells other nodes.
		s.cluster.jet.startBuilder(coreSink{s}, advertise(cfg.NATS.AdvertiseAddr, s.HTTPAddr), cfg.Ingest.MaxHeadBytes)
	}
	s.API.SetReady(true)
	zipkinAddr := s.ZipkinAddr
	if zipkinAddr == "" {
		zipkinAddr = "off"
	}
	log.Info("ariadne ready", "otlp_grpc", s.GRPCAddr, "otlp_http", s.OTLPHTTPAddr, "http", s.HTTPAddr, "zipkin", zipkinAddr, "jaeger_sampling", cmp.Or(s.JaegerSamplingAddr, "off"),
		"data_dir", cfg.DataDir)
	return s, nil
}

// strategiesFor are the head-sampling strategies of tenant ("" for the default tenant, or
// with multi-tenancy off); a tenant with no data yet gets the defaults.
func (s *Server) strategiesFor(tenant string) *headsampling.Strategies {
	if s.tenants != nil {
		return s.tenants.reader(tenant).strategies
	}
	return s.core.strategies
}

// listenerTLS loads each listener's certificate; a listener without one is absent (plain text).
func listenerTLS(c config.TLS, log *slog.Logger) (map[string]*tls.Config, error) {
	out := map[string]*tls.Config{}
	for name, sc := range map[string]tlsconfig.Server{"otlp_grpc": c.OTLPGRPC, "otlp_http": c.OTLPHTTP, "http": c.HTTP, "zipkin": c.Zipkin} {
		if !sc.Enabled() {
			continue
		}
		r, err := tlsconfig.New(sc, log)
		if err != nil {
			return nil, fmt.Errorf("tls.%s: %w", name, err)
		}
		out[name] = r.Config()
	}
	return out, nil
}

func grpcCreds(tc *tls.Config) grpc.ServerOption {
	if tc == nil {
		return grpc.EmptyServerOption{}
	}
	return grpc.Creds(credentials.NewTLS(tc))
}

// closeData closes every store.
func (s *Server) closeData() error {
	if s.tenants != nil {
		return s.tenants.closeAll()
	}
	return s.core.close()
}

// closer lets Start's error paths close whatever data it opened with st.Close().
type closer struct{ s *Server }

func (c closer) Close() error {
	c.s.overrides.close()
	return c.s.closeData()
}

// receiveRule is what the receivers require: a write token, acting for one tenant.
var receiveRule = auth.Rule{Need: auth.RoleWrite, Tenant: true}

// queryRule is what each path of the query port requires. Health checks are open; /metrics has
// its own role, so a scraper's token reads nothing else; the profiler is admin's; trace data is
// read for a tenant (or several, a|b); the UI's pages and files are open, anything else needs a
// read token.
func queryRule(r *http.Request) auth.Rule {
	p := r.URL.Path
	switch {
	case p == "/ready" || p == "/live" || p == "/api/echo":
		return auth.Rule{Open: true}
	case p == "/metrics":
		return auth.Rule{Need: auth.RoleMetrics}
	case strings.HasPrefix(p, "/debug/"):
		return auth.Rule{Need: auth.RoleAdmin}
	case p == "/api/sampling":
		// Asked by the SDKs, which hold a sender's (write) token.
		return auth.Rule{Need: auth.RoleWrite, Tenant: true}
	case strings.HasPrefix(p, "/internal/"):
		// Other nodes of the cluster (peerapi), acting for the tenant they name.
		return auth.Rule{Need: auth.RoleInternal, Tenant: true}
	case p == "/api/status/buildinfo", p == "/api/status/cluster":
		// The cluster view names nodes and partitions, no tenant's data.
		return auth.Rule{Need: auth.RoleRead}
	case p == "/api/status/tenants":
		// The tenants the caller may read, for the UI's picker: no tenant's data.
		return auth.Rule{Need: auth.RoleRead}
	case ui.Shell(p):
		// The UI's pages and files are the same for everyone; its login form must load before
		// there is a token. What it shows comes from the API, checked above and below.
		return auth.Rule{Open: true}
	case strings.HasPrefix(p, "/"+tempogrpc.ServiceName+"/"):
		// Tempo's streaming gRPC API reads one tenant's data (x-scope-orgid metadata).
		return auth.Rule{Need: auth.RoleRead, Tenant: true}
	case strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/jaeger/"):
		return auth.Rule{Need: auth.RoleRead, Tenant: true, Federated: true}
	default:
		return auth.Rule{Need: auth.RoleRead}
	}
}

func wrapServe(what string, err error) error {
	if err == nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return fmt.Errorf("%s server: %w", what, err)
}

// Err delivers the first serving error.
func (s *Server) Err() <-chan error { return s.errs }

// Stop stops taking data (letting requests in flight finish), flushes the head into a block and
// closes the store.
func (s *Server) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.API.SetReady(false)
		if s.Store == nil {
			// A query or compact node: only the query API and the cluster parts.
			if s.queryGRPC != nil { // none on a multi-tenant query node
				s.queryGRPC.Stop()
			}
			qerr := s.queryHTTP.Shutdown(ctx)
			s.stopErr = errors.Join(qerr, s.cluster.stop(ctx))
			return
		}
		done := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.grpc.Stop()
		}
		herr := s.otlpHTTP.Shutdown(ctx)
		if s.zipkinHTTP != nil {
			herr = errors.Join(herr, s.zipkinHTTP.Shutdown(ctx))
		}
		if s.samplingHTTP != nil {
			herr = errors.Join(herr, s.samplingHTTP.Shutdown(ctx))
		}
		if s.pusher != nil {
			s.pusher.Stop()
		}
		s.queryGRPC.Stop() // ends open streams, which would hold the query listener's Shutdown
		if s.tenants != nil {
			s.tenants.stopStreaming()
		}
		qerr := s.queryHTTP.Shutdown(ctx)
		if s.cluster != nil {
			// Nothing more into the head: the store's close writes it into its last block.
			s.cluster.jet.stopConsuming()
		}
		serr := s.closeData()
		if s.cluster != nil {
			// After the store's close wrote its last block: upload it too.
			serr = errors.Join(serr, s.cluster.stop(ctx))
		}
		s.overrides.close()
		s.stopErr = errors.Join(herr, serr, qerr)
	})
	return s.stopErr
}
