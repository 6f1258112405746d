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

	"github.com/ariadne-tracing/ariadne/internal/api"
	"github.com/ariadne-tracing/ariadne/internal/auth"
	"github.com/ariadne-tracing/ariadne/internal/block"
	"github.com/ariadne-tracing/ariadne/internal/blockship"
	"github.com/ariadne-tracing/ariadne/internal/bucketblocks"
	"github.com/ariadne-tracing/ariadne/internal/compactor"
	"github.com/ariadne-tracing/ariadne/internal/config"
	"github.com/ariadne-tracing/ariadne/internal/connlimit"
	"github.com/ariadne-tracing/ariadne/internal/head"
	"github.com/ariadne-tracing/ariadne/internal/objcache"
	"github.com/ariadne-tracing/ariadne/internal/objstore"
	"github.com/ariadne-tracing/ariadne/internal/partial"
	"github.com/ariadne-tracing/ariadne/internal/peerapi"
	"github.com/ariadne-tracing/ariadne/internal/query"
	"github.com/ariadne-tracing/ariadne/internal/receive"
	"github.com/ariadne-tracing/ariadne/internal/s3store"
	"github.com/ariadne-tracing/ariadne/internal/store"
	"github.com/ariadne-tracing/ariadne/internal/ui"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// cluster is what a node sharing a bucket runs beside (or instead of) the local store: the
// bucket's blocks for queries, the upload of its own blocks, the compactor, the peers.
type cluster struct {
	cfg    config.Config
	log    *slog.Logger
	root   *s3store.Store // the installation's prefix; tenants below
	bucket *s3store.Store // this node's tenant
	cache  *objcache.Store
	set    *bucketblocks.Set
	ship   *blockship.Shipper
	comp   *compactor.Compactor
	peers  *peerapi.Client
}

// tenant is the one tenant nodes serve until stores are per tenant: the receivers' default.
const tenant = receive.DefaultTenant

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
	c := &cluster{cfg: cfg, log: log, root: root, bucket: root.Sub(tenant)}
	c.cache, err = objcache.New(c.bucket, objcache.Options{Dir: filepath.Join(cfg.DataDir, "cache"), MaxBytes: cfg.Cluster.CacheBytes})
	if err != nil {
		return nil, err
	}
	c.set = bucketblocks.New(bucketblocks.Options{Bucket: c.bucket, Cache: c.cache, Poll: time.Duration(cfg.Cluster.PollInterval), Logger: log})
	if len(cfg.Cluster.Peers) > 0 || cfg.Cluster.PeersDNS != "" {
		c.peers = peerapi.NewClient(cfg.Cluster.Peers, cfg.Cluster.PeersDNS, "")
		c.peers.SetToken(cfg.Cluster.PeerToken)
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

// startIngest uploads the store's blocks, starts polling the bucket and, for target all, the
// compactor.
func (c *cluster) startIngest(st *store.Store, compact bool) error {
	local, err := objstore.NewLocal(c.cfg.DataDir)
	if err != nil {
		return err
	}
	c.ship, err = blockship.New(blockship.Options{Source: st, Local: local, Bucket: c.bucket,
		StateDir: filepath.Join(c.cfg.DataDir, "uploaded"), Hold: time.Duration(c.cfg.Cluster.UploadHold),
		QueueBytes: c.cfg.Cluster.UploadQueueBytes, Logger: c.log})
	if err != nil {
		return err
	}
	c.ship.Start()
	c.set.Start(context.Background())
	if compact {
		return c.startCompactor()
	}
	return nil
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

// backlog refuses ingest while too much is waiting for the bucket. A nil cluster (one
// machine) never refuses.
func (c *cluster) backlog() string {
	if c == nil || c.ship == nil {
		return ""
	}
	return c.ship.Refusal()
}

// stop ends the cluster parts; the store is closed before, so its last block is uploaded here.
func (c *cluster) stop(ctx context.Context) error {
	var err error
	if c.ship != nil {
		err = c.ship.Stop(ctx)
		if err != nil {
			c.log.Warn("blocks left queued for upload at the next start", "err", err)
			err = nil
		}
	}
	if c.comp != nil {
		c.comp.Stop()
	}
	c.set.Close()
	return err
}

// source is what a cluster node queries: its own store (nil on a query node) and the bucket's
// blocks, each block once. A block this node uploaded is both local and in the bucket for
// its hold; the local copy is read.
type source struct {
	st    *store.Store
	head  *head.Head
	set   *bucketblocks.Set
	peers *peerapi.Client // nil: no peers to ask
}

// peerHeadsKey holds a request's merged head (withPeerHeads).
type peerHeadsKey struct{}

// peerHeads is one request's merged head, built on first use.
type peerHeads struct {
	once sync.Once
	h    *head.Head
}

// withPeerHeads gives each request of next a place for the head that search, tag discovery
// and TraceQL metrics read (source.HeadFor), so that one request reads the peers once however
// often the engine asks (it asks again for every trace it judges whole).
func withPeerHeads(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), peerHeadsKey{}, &peerHeads{})))
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
	ph, _ := ctx.Value(peerHeadsKey{}).(*peerHeads)
	if ph == nil {
		ph = &peerHeads{} // a caller outside the HTTP API: read the peers on each call
	}
	ph.once.Do(func() {
		h := head.New()
		if s.st != nil {
			if err := peerapi.CopyHead(h, s.st.Head(), 0); err != nil {
				partial.Note(ctx, "this node's head: "+err.Error())
			}
		}
		if err := s.peers.Heads(ctx, tenant, 0, h); err != nil {
			partial.Note(ctx, "ingest nodes' heads: "+err.Error())
		}
		ph.h = h
	})
	return ph.h
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

// peerRemote asks the ingest nodes for their parts of a trace.
type peerRemote struct{ c *peerapi.Client }

func (p peerRemote) FindTrace(ctx context.Context, id [16]byte) ([]*tracepb.ResourceSpans, error) {
	return p.c.FindTrace(ctx, tenant, id)
}

// localFinder answers peers from this node's own store only: never from the bucket or other
// peers, which the asking node reads itself.
type localFinder struct{ q *query.Querier }

func (f localFinder) FindTrace(ctx context.Context, id [16]byte) (*tracepb.TracesData, error) {
	return f.q.FindTrace(ctx, id, query.TimeRange{})
}

// querier reads st and, on a cluster node, the bucket's blocks and the peers.
func (c *cluster) querier(st *store.Store) *query.Querier {
	if c == nil {
		return query.New(st)
	}
	q := query.New(source{st: st, head: head.New(), set: c.set, peers: c.peers})
	if c.peers != nil {
		q.SetRemote(peerRemote{c.peers})
	}
	return q
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
	cs := c.cache.Stats()
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
	if c.ship != nil {
		ss := c.ship.Stats()
		gauge(descUploadQueue, float64(ss.QueuedBytes))
		counter(descUploaded, float64(ss.Uploaded))
		counter(descUploadFails, float64(ss.Failures))
	} else {
		gauge(descUploadQueue, 0)
		counter(descUploaded, 0)
		counter(descUploadFails, 0)
	}
	gauge(descBucketBlocks, float64(len(c.set.Blocks())))
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
	cl.set.Start(context.Background())
	if cfg.Target == config.TargetCompact {
		if err := cl.startCompactor(); err != nil {
			cl.stop(context.Background())
			return nil, err
		}
	}
	q := cl.querier(nil)
	s.API = api.New(q, build, log)
	s.API.Handle("GET /", ui.Handler())
	s.API.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	lq, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		cl.stop(context.Background())
		return nil, fmt.Errorf("listen HTTP %s: %w", cfg.HTTPAddr, err)
	}
	s.HTTPAddr = lq.Addr().String()
	s.queryHTTP = &http.Server{Handler: ui.SecurityHeaders(gate("http").HTTP(queryRule, withPeerHeads(s.API)))}
	lqc, serveQuery := serveHTTP(s.queryHTTP, lq, cfg.Server, tlsCfg)
	s.listeners["http"] = lqc
	registerConnMetrics(reg, s.listeners)
	go func() { s.errs <- wrapServe("query HTTP", serveQuery()) }()
	s.API.SetReady(true)
	log.Info("ariadne ready", "target", cfg.Target, "http", s.HTTPAddr, "bucket", cfg.Storage.S3.Bucket)
	return s, nil
}
