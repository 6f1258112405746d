package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ariadne-tracing/ariadne/internal/intake/receive"
	"github.com/ariadne-tracing/ariadne/internal/pipeline/ingest"
	"github.com/ariadne-tracing/ariadne/internal/read/peerapi"
	"github.com/ariadne-tracing/ariadne/internal/read/query"
	"github.com/ariadne-tracing/ariadne/internal/read/queryscheduler"
	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/auth"
	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/serve/connlimit"
	"github.com/ariadne-tracing/ariadne/internal/serve/tempogrpc"
	"github.com/ariadne-tracing/ariadne/internal/serve/ui"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/blockship"
	"github.com/ariadne-tracing/ariadne/internal/storage/bucketblocks"
	"github.com/ariadne-tracing/ariadne/internal/storage/compactor"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
	"github.com/ariadne-tracing/ariadne/internal/storage/objcache"
	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
	"github.com/ariadne-tracing/ariadne/internal/storage/partial"
	"github.com/ariadne-tracing/ariadne/internal/storage/s3store"
	"github.com/ariadne-tracing/ariadne/internal/storage/store"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// cluster is what a node sharing a bucket runs beside (or instead of) the local store: for
// each tenant, the bucket's blocks for queries and the upload of its own blocks; the
// compactor; the peers.
type cluster struct {
	cfg   config.Config
	log   *slog.Logger
	root  *s3store.Store // the installation's prefix; tenants below
	comp  *compactor.Compactor
	peers *peerapi.Client
	jet   *jetLog // ingest.log: jetstream (ingestlog.go)

	mu    sync.Mutex
	views map[string]*tenantView
}

// tenantView is one tenant's part of the bucket, as this node sees it. Tenants are kept apart
// by prefix (<prefix>/<tenant>/blocks/…, <prefix>/<tenant>/index.json.gz), as on disk by
// directory: each has its own block set, cache, uploads and compaction lease, and peer requests
// name the tenant, so no read of one tenant can open another's blocks.
type tenantView struct {
	name   string
	bucket *s3store.Store
	cache  *objcache.Store
	set    *bucketblocks.Set
	ship   *blockship.Shipper // on ingest nodes, once the tenant's store is open
}

// view returns a tenant's view, opening its cache and starting to poll its block index on
// first use.
func (c *cluster) view(name string) (*tenantView, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := c.views[name]; v != nil {
		return v, nil
	}
	if max := c.cfg.MultitenancyMaxTenants; c.cfg.MultitenancyEnabled && len(c.views) >= max && max > 0 {
		return nil, fmt.Errorf("tenant %q refused: this node already serves %d tenants (multitenancy_max_tenants)", name, max)
	}
	v := &tenantView{name: name, bucket: c.root.Sub(name)}
	var err error
	v.cache, err = objcache.New(v.bucket, objcache.Options{Dir: filepath.Join(c.cfg.DataDir, "cache", name), MaxBytes: c.cfg.Cluster.CacheBytes})
	if err != nil {
		return nil, err
	}
	v.set = bucketblocks.New(bucketblocks.Options{Bucket: v.bucket, Cache: v.cache, Poll: time.Duration(c.cfg.Cluster.PollInterval), Logger: c.log.With("tenant", name)})
	v.set.Start(context.Background())
	c.views[name] = v
	return v, nil
}

// eachView calls fn with every tenant's view.
func (c *cluster) eachView(fn func(*tenantView)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range c.views {
		fn(v)
	}
}

func openCluster(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (*cluster, error) {
	s3c := cfg.Storage.S3
	root, err := s3store.New(s3store.Config{Endpoint: s3c.Endpoint, Bucket: s3c.Bucket, Prefix: s3c.Prefix, Region: s3c.Region,
		Insecure: s3c.Insecure, AccessKey: s3c.AccessKey, SecretKey: s3c.SecretKey})
	if err != nil {
		return nil, err
	}
	// A node must start while the object store is down (ingest keeps acknowledging), so a
	// failure here is a warning; every later request retries.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := root.EnsureBucket(ctx, s3c.Region); err != nil {
		log.Warn("object store not reachable at start; continuing", "err", err)
	}
	cancel()
	c := &cluster{cfg: cfg, log: log, root: root, views: map[string]*tenantView{}}
	if cfg.Ingest.Log == config.IngestLogJetStream {
		if c.jet, err = openJetLog(cfg, log, reg); err != nil {
			return nil, err
		}
	}
	if len(cfg.Cluster.Peers) > 0 || cfg.Cluster.PeersDNS != "" || c.jet != nil {
		c.peers = peerapi.NewClient(cfg.Cluster.Peers, cfg.Cluster.PeersDNS, "")
		c.peers.SetToken(cfg.Cluster.PeerToken)
		if c.jet != nil {
			// The block builders holding heads are listed in the members bucket: query
			// nodes need no peer list.
			c.peers.SetLookup(c.jet.peerAddrs)
		}
	}
	reg.MustRegister(c.collector())
	return c, nil
}

// compactMinBlocks is the local store's compaction setting: off on a cluster node, whose
// blocks are merged in the bucket by the compactor.
func (c *cluster) compactMinBlocks(configured int) int {
	if c == nil {
		return configured
	}
	return -1
}

// startTenant uploads the blocks of tenant's store, which keeps them in dir, and returns the
// tenant's view. A nil cluster (one machine) has none.
func (c *cluster) startTenant(tenant, dir string, st *store.Store) (*tenantView, error) {
	if c == nil || tenant == "" {
		return nil, nil // one machine, or the multi-tenant empty core, which is nobody's
	}
	v, err := c.view(tenant)
	if err != nil {
		return nil, err
	}
	local, err := objstore.NewLocal(dir)
	if err != nil {
		return nil, err
	}
	var uploaded func(id string)
	if c.jet != nil {
		// The log's commits wait for the block to be whole in the bucket.
		uploaded = c.jet.pending.Uploaded
	}
	ship, err := blockship.New(blockship.Options{Source: st, Local: local, Bucket: v.bucket,
		StateDir: filepath.Join(dir, "uploaded"), Hold: time.Duration(c.cfg.Cluster.UploadHold),
		QueueBytes: c.cfg.Cluster.UploadQueueBytes, Uploaded: uploaded, Logger: c.log.With("tenant", tenant)})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	v.ship = ship
	c.mu.Unlock()
	ship.Start()
	return v, nil
}

func (c *cluster) startCompactor() error {
	work := filepath.Join(c.cfg.DataDir, "compactor")
	// Scratch files of a merge cut short by a crash: never a block, only disk.
	if err := os.RemoveAll(work); err != nil {
		return fmt.Errorf("compactor: %w", err)
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return fmt.Errorf("compactor: %w", err)
	}
	host, _ := os.Hostname()
	c.comp = compactor.New(compactor.Options{Bucket: c.root, Holder: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), block.NewID(time.Now())),
		WorkDir: work, Interval: time.Duration(c.cfg.Cluster.CompactInterval), LeaseTTL: time.Duration(c.cfg.Cluster.LeaseTTL),
		DeleteGrace: time.Duration(c.cfg.Cluster.DeleteGrace), Retention: time.Duration(c.cfg.Retention),
		MinBlocks: c.cfg.Storage.CompactMinBlocks, TargetBytes: c.cfg.Storage.CompactTargetBytes, Logger: c.log})
	c.comp.Start()
	return nil
}

// backlog refuses the tenant's ingest while too much of it is waiting for the bucket. A nil
// view (one machine) never refuses.
func (v *tenantView) backlog() string {
	if v == nil || v.ship == nil {
		return ""
	}
	return v.ship.Refusal()
}

// stop ends the cluster parts; the stores are closed before, so their last blocks are
// uploaded here.
func (c *cluster) stop(ctx context.Context) error {
	c.eachView(func(v *tenantView) {
		if v.ship != nil {
			if err := v.ship.Stop(ctx); err != nil {
				c.log.Warn("blocks left queued for upload at the next start", "tenant", v.name, "err", err)
			}
		}
		v.set.Close()
	})
	if c.comp != nil {
		c.comp.Stop()
	}
	if c.jet != nil {
		return c.jet.close(ctx)
	}
	return nil
}

// externalLog is the store's setting: no WAL of its own when the JetStream log is the WAL,
// and the hook that holds back the log's commits until blocks are in the bucket.
func (c *cluster) externalLog() (bool, func(id string, minSeq uint64)) {
	if c == nil || c.jet == nil {
		return false, nil
	}
	return true, c.jet.pending.BlockWritten
}

// ingestStore is where tenant's ingester writes: its store, or the JetStream log.
func (c *cluster) ingestStore(st *store.Store, tenant string) ingest.Store {
	if c == nil || c.jet == nil {
		return st
	}
	return publishStore{log: c.jet.log, tenant: tenant}
}

// source is what a cluster node queries: its own store (nil on a query node) and the bucket's
// blocks, each block once. A block this node uploaded is both local and in the bucket for
// its hold; the local copy is read.
type source struct {
	st     *store.Store
	head   *head.Head
	set    *bucketblocks.Set
	peers  *peerapi.Client // nil: no peers to ask
	tenant string          // what peers are asked for
}

// peerHeadsKey holds a request's merged head (withPeerHeads).
type peerHeadsKey struct{}

// peerHeads are one request's merged heads, one per tenant (a federated read a|b asks for
// each), each built on first use.
type peerHeads struct {
	mu sync.Mutex
	m  map[string]*tenantHead
}

type tenantHead struct {
	once sync.Once
	h    *head.Head
}

func (p *peerHeads) of(tenant string) *tenantHead {
	p.mu.Lock()
	defer p.mu.Unlock()
	th := p.m[tenant]
	if th == nil {
		th = &tenantHead{}
		p.m[tenant] = th
	}
	return th
}

// withPeerHeads gives each request of next a place for the head that search, tag discovery
// and TraceQL metrics read (source.HeadFor), so that one request reads the peers once however
// often the engine asks (it asks again for every trace it judges whole).
func withPeerHeads(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), peerHeadsKey{}, &peerHeads{m: map[string]*tenantHead{}})))
	})
}

// HeadFor is the head one search reads: this node's own head and every peer's, merged into a
// head of the request's own. A trace with spans on several nodes is one trace there, and every
// trace in it is unchecked for splits, so the engine looks for its other parts in the bucket's
// blocks and judges it whole, as on one node. A peer that does not answer makes the answer
// partial.
func (s source) HeadFor(ctx context.Context) *head.Head {
	if s.peers == nil {
		return s.Head()
	}
	th := &tenantHead{} // a caller outside the HTTP API: read the peers on each call
	if ph, _ := ctx.Value(peerHeadsKey{}).(*peerHeads); ph != nil {
		th = ph.of(s.tenant)
	}
	th.once.Do(func() {
		h := head.New()
		if s.st != nil {
			if err := peerapi.CopyHead(h, s.st.Head(), 0); err != nil {
				partial.Note(ctx, "this node's head: "+err.Error())
			}
		}
		if err := s.peers.Heads(ctx, s.tenant, 0, h); err != nil {
			partial.Note(ctx, "ingest nodes' heads: "+err.Error())
		}
		th.h = h
	})
	return th.h
}

func (s source) Head() *head.Head {
	if s.st != nil {
		return s.st.Head()
	}
	return s.head
}

func (s source) AcquireBlocks() ([]*block.Reader, func()) {
	remote, releaseRemote := s.set.AcquireBlocks()
	if s.st == nil {
		return remote, releaseRemote
	}
	local, releaseLocal := s.st.AcquireBlocks()
	seen := make(map[string]bool, len(local))
	for _, r := range local {
		seen[r.Meta().ID] = true
	}
	all := local
	for _, r := range remote {
		if !seen[r.Meta().ID] {
			all = append(all, r)
		}
	}
	return all, func() { releaseLocal(); releaseRemote() }
}

// Stale tells queries their view of the bucket may be behind (query.NoteStale).
func (s source) Stale() error { return s.set.Stale() }

// peerRemote asks the ingest nodes for their parts of a tenant's trace.
type peerRemote struct {
	c      *peerapi.Client
	tenant string
}

func (p peerRemote) FindTrace(ctx context.Context, id [16]byte) ([]*tracepb.ResourceSpans, error) {
	return p.c.FindTrace(ctx, p.tenant, id)
}

// localFinder answers peers from this node's own store only: never from the bucket or other
// peers, which the asking node reads itself.
type localFinder struct{ q *query.Querier }

func (f localFinder) FindTrace(ctx context.Context, id [16]byte) (*tracepb.TracesData, error) {
	return f.q.FindTrace(ctx, id, query.TimeRange{})
}

// querier reads st (nil on a query node) and, on a cluster node, the tenant's blocks in the
// bucket and the peers.
func (c *cluster) querier(st *store.Store, v *tenantView) *query.Querier {
	if c == nil || v == nil {
		return query.New(st)
	}
	q := query.New(source{st: st, head: head.New(), set: v.set, peers: c.peers, tenant: v.name})
	if c.peers != nil {
		q.SetRemote(peerRemote{c.peers, v.name})
	}
	return q
}

// servePeers answers the other nodes' requests for what st holds (on every core of a node
// with a store, the multi-tenant empty one included, so a tenant unknown here answers empty
// rather than failing).
func (c *cluster) servePeers(a *api.Server, st *store.Store) {
	if c == nil {
		return
	}
	a.Handle("GET "+peerapi.Path+"{id}", peerapi.Handler(localFinder{query.New(st)}))
	a.Handle("GET "+peerapi.HeadPath, peerapi.HeadHandler(func(*http.Request) (*head.Head, error) { return st.Head(), nil }))
}

func (c *cluster) collector() prometheus.Collector {
	return &clusterCollector{c: c}
}

type clusterCollector struct{ c *cluster }

var (
	descS3Requests   = prometheus.NewDesc("ariadne_objstore_requests_total", "Requests made to the object store.", nil, nil)
	descS3Errors     = prometheus.NewDesc("ariadne_objstore_request_errors_total", "Object store requests that failed (transport or 5xx).", nil, nil)
	descS3Read       = prometheus.NewDesc("ariadne_objstore_read_bytes_total", "Bytes read from the object store.", nil, nil)
	descS3Written    = prometheus.NewDesc("ariadne_objstore_written_bytes_total", "Bytes written to the object store.", nil, nil)
	descCacheHits    = prometheus.NewDesc("ariadne_cache_hits_total", "Block reads served by the on-disk cache.", nil, nil)
	descCacheMisses  = prometheus.NewDesc("ariadne_cache_misses_total", "Block reads that needed an object store request.", nil, nil)
	descCacheBytes   = prometheus.NewDesc("ariadne_cache_bytes", "Bytes held by the on-disk cache.", nil, nil)
	descUploadQueue  = prometheus.NewDesc("ariadne_upload_queue_bytes", "Blocks on local disk waiting for upload.", nil, nil)
	descUploaded     = prometheus.NewDesc("ariadne_uploaded_blocks_total", "Blocks uploaded to the object store.", nil, nil)
	descUploadFails  = prometheus.NewDesc("ariadne_upload_failures_total", "Failed block uploads (retried with backoff).", nil, nil)
	descBucketBlocks = prometheus.NewDesc("ariadne_bucket_blocks", "Blocks of the bucket open for queries.", nil, nil)
)

func (cc *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descS3Requests, descS3Errors, descS3Read, descS3Written, descCacheHits, descCacheMisses,
		descCacheBytes, descUploadQueue, descUploaded, descUploadFails, descBucketBlocks} {
		ch <- d
	}
}

func (cc *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	c := cc.c
	s := c.root.Stats()
	var cs objcache.Stats
	var ss blockship.Stats
	blocks := 0
	c.eachView(func(v *tenantView) {
		st := v.cache.Stats()
		cs.Hits, cs.Misses, cs.Bytes = cs.Hits+st.Hits, cs.Misses+st.Misses, cs.Bytes+st.Bytes
		blocks += len(v.set.Blocks())
		if v.ship != nil {
			st := v.ship.Stats()
			ss.QueuedBytes, ss.Uploaded, ss.Failures = ss.QueuedBytes+st.QueuedBytes, ss.Uploaded+st.Uploaded, ss.Failures+st.Failures
		}
	})
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter(descS3Requests, float64(s.Requests))
	counter(descS3Errors, float64(s.Errors))
	counter(descS3Read, float64(s.BytesRead))
	counter(descS3Written, float64(s.BytesWritten))
	counter(descCacheHits, float64(cs.Hits))
	counter(descCacheMisses, float64(cs.Misses))
	gauge(descCacheBytes, float64(cs.Bytes))
	gauge(descUploadQueue, float64(ss.QueuedBytes))
	counter(descUploaded, float64(ss.Uploaded))
	counter(descUploadFails, float64(ss.Failures))
	gauge(descBucketBlocks, float64(blocks))
}

// startStateless runs a query or compact node: no receivers, no WAL, no store; the query API
// over the bucket's blocks and the ingest nodes' heads, and on compact nodes the compactor.
func startStateless(cfg config.Config, build api.BuildInfo, log *slog.Logger, reg *prometheus.Registry,
	gate func(listener string) *auth.Gate, tlsCfg *tls.Config) (*Server, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	cl, err := openCluster(cfg, log, reg)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, errs: make(chan error, 4), Registry: reg, cluster: cl, listeners: map[string]*connlimit.Listener{}}
	// With multi-tenancy the default tenant's API answers only what names no tenant (health,
	// UI, /metrics); every read goes to its tenant's (tenantAPIs).
	root, err := cl.view(receive.DefaultTenant)
	if err != nil {
		return nil, err
	}
	if cfg.Target == config.TargetCompact {
		if err := cl.startCompactor(); err != nil {
			cl.stop(context.Background())
			return nil, err
		}
	}
	s.API = api.New(cl.querier(nil, root), build, log)
	// Queries are admitted here as on any node: a query node's memory and CPU are as finite.
	s.Queries = newQueryScheduler(cfg.Query, reg)
	admitQueries(s.API, s.Queries, cfg.Query)
	s.API.Handle("GET /", ui.Handler())
	s.API.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	var h http.Handler = s.API
	if cfg.MultitenancyEnabled {
		h = &tenantAPIs{c: cl, build: build, log: log, root: s.API, apis: map[string]*api.Server{}, queries: s.Queries, qc: cfg.Query}
	}
	lq, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		cl.stop(context.Background())
		return nil, fmt.Errorf("listen HTTP %s: %w", cfg.HTTPAddr, err)
	}
	s.HTTPAddr = lq.Addr().String()
	if !cfg.MultitenancyEnabled {
		// Tempo's streaming gRPC API over the one tenant's engine; with tenants it is left to
		// single nodes, whose tenant cores each serve their own.
		h = s.withStreamingQuerier(h)
	}
	s.queryHTTP = &http.Server{Handler: ui.SecurityHeaders(gate("http").HTTP(queryRule, withPeerHeads(h)))}
	tempogrpc.EnableH2C(s.queryHTTP)
	lqc, serveQuery := serveHTTP(s.queryHTTP, lq, cfg.Server, tlsCfg)
	s.listeners["http"] = lqc
	registerConnMetrics(reg, s.listeners)
	go func() { s.errs <- wrapServe("query HTTP", serveQuery()) }()
	s.API.SetReady(true)
	log.Info("ariadne ready", "target", cfg.Target, "http", s.HTTPAddr, "bucket", cfg.Storage.S3.Bucket)
	return s, nil
}

// tenantAPIs routes a stateless node's reads to a query API per tenant, each over its tenant's
// blocks and asking the peers for that tenant only, opened on the tenant's first read; reads
// of several tenants (a|b) are joined as on a single node (federatedRead).
type tenantAPIs struct {
	c     *cluster
	build api.BuildInfo
	log   *slog.Logger
	root  http.Handler

	// queries admits every tenant's reads, as the node's one scheduler (fair between tenants).
	queries *queryscheduler.Scheduler
	qc      config.Query

	mu   sync.Mutex
	apis map[string]*api.Server
}

func (t *tenantAPIs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !queryRule(r).Tenant {
		t.root.ServeHTTP(w, r)
		return
	}
	names := auth.Tenants(r.Header.Get(auth.TenantHeader))
	if len(names) == 1 {
		t.get(names[0]).ServeHTTP(w, r)
		return
	}
	federatedRead(w, r, names, t.get)
}

func (t *tenantAPIs) get(name string) http.Handler {
	t.mu.Lock()
	defer t.mu.Unlock()
	if a := t.apis[name]; a != nil {
		return a
	}
	v, err := t.c.view(name)
	if err != nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "60")
			http.Error(w, err.Error(), http.StatusTooManyRequests)
		})
	}
	a := api.New(t.c.querier(nil, v), t.build, t.log.With("tenant", name))
	admitQueries(a, t.queries, t.qc)
	a.SetReady(true)
	t.apis[name] = a
	return a
}
