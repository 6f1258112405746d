// Package servicegraph builds the graph of which service calls which from the spans Ariadne
// ingests, and exports it under the metric names and labels of Tempo's metrics-generator, so
// Grafana's service graph works against Ariadne's /metrics unchanged.
//
// An edge comes from:
//
//   - a CLIENT span and the SERVER span whose parent it is, in another service (connection_type
//     ""); the two may arrive in either order, in different requests;
//   - a PRODUCER span and the CONSUMER span whose parent it is (connection_type
//     "messaging_system");
//   - a CLIENT span with db.system: an edge to a database node named by db.namespace, else
//     db.name, else db.system, recorded at once since databases send no spans
//     (connection_type "database");
//   - a CLIENT or PRODUCER span whose server half never came, when it names its peer with one of
//     Config.PeerAttributes (by default peer.service, messaging.destination.name,
//     messaging.system): an edge to that virtual node on expiry (connection_type
//     "virtual_node");
//   - a root SERVER span: an edge from the virtual node "user", since nothing instrumented
//     called it (connection_type "virtual_node").
//
// Metrics, all labelled client, server, connection_type:
//
//	traces_service_graph_request_total
//	traces_service_graph_request_failed_total (either half has status ERROR)
//	traces_service_graph_request_client_seconds, traces_service_graph_request_server_seconds
//	traces_service_graph_unpaired_spans_total (expired without a pair; the missing side's label is "")
//	traces_service_graph_dropped_spans_total (refused because the store was full)
//
// A latency histogram is observed only for the halves that were seen: a database edge has no
// server time, a "user" edge no client time. Unpaired halves wait at most Config.Wait in a store
// of at most Config.MaxItems entries, and edges are capped at Config.MaxEdges, past which they
// count under client and server "__overflow__" and in ariadne_servicegraph_edges_overflow_total.
package servicegraph

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ariadne-tracing/ariadne/internal/pipeline/spanmetrics"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// Connection types, as the connection_type label carries them.
const (
	ConnectionDirect    = ""
	ConnectionDatabase  = "database"
	ConnectionMessaging = "messaging_system"
	ConnectionVirtual   = "virtual_node"
)

// UserNode is the client of requests that enter the system at a root SERVER span.
const UserNode = "user"

// OverflowValue replaces node names past the limits.
const OverflowValue = "__overflow__"

// Defaults for Config's zero values.
const (
	DefaultMaxItems    = 10000
	DefaultWait        = 10 * time.Second
	DefaultExpireEvery = time.Second
	DefaultMaxEdges    = 10000
)

// DefaultBuckets are Tempo's default service-graph histogram bounds, in seconds.
var DefaultBuckets = []float64{0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8}

// DefaultPeerAttributes name the virtual node of an unpaired client half, first match wins.
var DefaultPeerAttributes = []string{"peer.service", "messaging.destination.name", "messaging.system"}

// Config sets the limits; zero values take the defaults.
type Config struct {
	MaxItems       int           // unpaired halves kept at once
	Wait           time.Duration // how long a half waits for its pair
	ExpireEvery    time.Duration // how often the goroutine of Start expires halves
	MaxEdges       int           // edge series kept
	Buckets        []float64     // latency histogram bounds, seconds, ascending
	PeerAttributes []string
}

type connType uint8

const (
	connDirect connType = iota
	connDatabase
	connMessaging
	connVirtual
)

var connNames = [...]string{ConnectionDirect, ConnectionDatabase, ConnectionMessaging, ConnectionVirtual}

type edgeKey struct {
	client, server string
	conn           connType
}

// edgeSeries counts one (client, server, connection type); atomics let requests on the same edge
// count without a lock.
type edgeSeries struct {
	key                   edgeKey
	requests, failed      atomic.Uint64
	unpaired, dropped     atomic.Uint64
	clientNanos           atomic.Uint64
	serverNanos           atomic.Uint64
	clientHist, serverHis []atomic.Uint64
}

// Graph accumulates the service graph. It is a prometheus.Collector and an ingest observer; all
// methods are safe for concurrent use.
type Graph struct {
	wait     time.Duration
	every    time.Duration
	bounds   []float64
	peerKeys [][]byte
	maxEdges int

	store *store
	names interner

	edgesMu      sync.RWMutex
	edges        map[edgeKey]*edgeSeries
	edgeOverflow atomic.Uint64

	scratch sync.Pool

	runMu sync.Mutex
	stop  chan struct{}
	done  chan struct{}

	requestDesc, failedDesc, clientDesc, serverDesc, unpairedDesc, droppedDesc *prometheus.Desc
	overflowDesc, pendingDesc                                                  *prometheus.Desc
}

// New builds the graph and registers it on reg unless reg is nil. Expiry runs only once Start is
// called, or when the caller calls Expire itself.
func New(reg prometheus.Registerer, cfg Config) (*Graph, error) {
	g := &Graph{
		wait: cmp.Or(cfg.Wait, DefaultWait), every: cmp.Or(cfg.ExpireEvery, DefaultExpireEvery),
		bounds: cfg.Buckets, maxEdges: cmp.Or(cfg.MaxEdges, DefaultMaxEdges),
		store: newStore(cmp.Or(cfg.MaxItems, DefaultMaxItems)),
		edges: make(map[edgeKey]*edgeSeries),
	}
	if g.bounds == nil {
		g.bounds = DefaultBuckets
	}
	if len(g.bounds) == 0 || !slices.IsSorted(g.bounds) {
		return nil, errors.New("servicegraph: buckets must be non-empty and ascending")
	}
	if g.wait < 0 || g.every < 0 || g.maxEdges < 0 || g.store.maxItems < 0 {
		return nil, errors.New("servicegraph: limits must not be negative")
	}
	g.bounds = slices.Clone(g.bounds)
	peers := cfg.PeerAttributes
	if peers == nil {
		peers = DefaultPeerAttributes
	}
	for _, p := range peers {
		g.peerKeys = append(g.peerKeys, []byte(p))
	}
	// Names are bounded by the edges they can appear in, plus the halves waiting.
	g.names.init(2*g.maxEdges + int(g.store.maxItems))
	g.scratch.New = func() any { return &scratch{} }

	labels := []string{"client", "server", "connection_type"}
	g.requestDesc = prometheus.NewDesc("traces_service_graph_request_total", "Requests between two nodes.", labels, nil)
	g.failedDesc = prometheus.NewDesc("traces_service_graph_request_failed_total", "Failed requests between two nodes.", labels, nil)
	g.clientDesc = prometheus.NewDesc("traces_service_graph_request_client_seconds", "Request time as the client saw it.", labels, nil)
	g.serverDesc = prometheus.NewDesc("traces_service_graph_request_server_seconds", "Request time as the server saw it.", labels, nil)
	g.unpairedDesc = prometheus.NewDesc("traces_service_graph_unpaired_spans_total", "Spans whose other half did not come in time.", labels, nil)
	g.droppedDesc = prometheus.NewDesc("traces_service_graph_dropped_spans_total", "Spans not paired because the store of unpaired spans was full.", labels, nil)
	g.overflowDesc = prometheus.NewDesc("ariadne_servicegraph_edges_overflow_total", "Edge updates counted under the overflow edge because the edge limit was reached.", nil, nil)
	g.pendingDesc = prometheus.NewDesc("ariadne_servicegraph_pending_spans", "Spans waiting for their other half.", nil, nil)
	if reg != nil {
		if err := reg.Register(g); err != nil {
			return nil, fmt.Errorf("servicegraph: register collector: %w", err)
		}
	}
	return g, nil
}

// Start runs Expire every Config.ExpireEvery until Stop.
func (g *Graph) Start() {
	g.runMu.Lock()
	defer g.runMu.Unlock()
	if g.stop != nil {
		return
	}
	g.stop, g.done = make(chan struct{}), make(chan struct{})
	go func(stop, done chan struct{}) {
		defer close(done)
		t := time.NewTicker(g.every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				g.Expire(now)
			}
		}
	}(g.stop, g.done)
}

// Stop ends the goroutine of Start and waits for it. Halves still waiting stay in the store.
func (g *Graph) Stop() {
	g.runMu.Lock()
	defer g.runMu.Unlock()
	if g.stop == nil {
		return
	}
	close(g.stop)
	<-g.done
	g.stop, g.done = nil, nil
}

// scratch is per-request working memory, pooled so that steady-state ingest allocates nothing.
type scratch struct {
	now   int64
	attrs []byte
	done  entry
}

// Span kinds from opentelemetry/proto/trace/v1.
const (
	kindServer   = 2
	kindClient   = 3
	kindProducer = 4
	kindConsumer = 5
)

// ObserveTraces takes the spans of an OTLP ExportTraceServiceRequest into the graph. Spans of
// other kinds cost a field comparison; malformed input is ignored from the damage on, since ingest
// has validated the request already.
func (g *Graph) ObserveTraces(payload []byte) {
	var b otlpwire.Batch
	_ = b.Scan(payload)
	g.ObserveSpans(&b)
}

// ObserveSpans takes the spans of a request ingest has scanned into the graph.
func (g *Graph) ObserveSpans(b *otlpwire.Batch) {
	sc := g.scratch.Get().(*scratch)
	sc.now = time.Now().UnixNano()
	for i := range b.Spans {
		g.observe(sc, b.Group(i), &b.Spans[i])
	}
	g.scratch.Put(sc)
}

func (g *Graph) observe(sc *scratch, gr *otlpwire.Group, s *otlpwire.Span) {
	if s.Kind < kindServer || s.Kind > kindConsumer || len(s.TraceID) != 16 || len(s.SpanID) != 8 {
		return
	}
	var nanos uint64
	if s.End > s.Start {
		nanos = s.End - s.Start
	}
	h := half{nanos: nanos, failed: s.StatusCode == otlpwire.StatusError, messaging: s.Kind == kindProducer || s.Kind == kindConsumer}
	var k pendingKey
	copy(k[:16], s.TraceID)
	isClient := s.Kind == kindClient || s.Kind == kindProducer
	if isClient {
		copy(k[16:], s.SpanID)
		h.service = g.names.get(gr.ServiceName)
		db, peer := g.clientAttributes(sc, s)
		if db != nil {
			e := g.edge(h.service, g.names.get(db), connDatabase)
			e.record(h.failed)
			observe(e.clientHist, &e.clientNanos, g.bounds, nanos)
			return
		}
		if peer != nil {
			h.peer = g.names.get(peer)
		}
	} else {
		h.service = g.names.get(gr.ServiceName)
		if len(s.ParentID) != 8 {
			if s.Kind == kindServer {
				e := g.edge(UserNode, h.service, connVirtual)
				e.record(h.failed)
				observe(e.serverHis, &e.serverNanos, g.bounds, nanos)
			}
			return
		}
		copy(k[16:], s.ParentID)
	}
	switch g.store.upsert(&k, isClient, h, sc.now+int64(g.wait), &sc.done) {
	case paired:
		g.complete(&sc.done)
	case dropped:
		g.halfEdge(h, isClient).dropped.Add(1)
	}
}

// clientAttributes finds the database node name (nil unless db.system is set) and the first peer
// attribute of a client span, copying both into sc.attrs.
func (g *Graph) clientAttributes(sc *scratch, s *otlpwire.Span) (db, peer []byte) {
	buf := sc.attrs[:0]
	var system, namespace, name, peerVal [2]int
	peerRank := len(g.peerKeys)
	_ = otlpwire.SpanAttributes(s.Raw, func(key []byte, v otlpwire.AttrValue) bool {
		var dst *[2]int
		switch string(key) {
		case "db.system", "db.system.name":
			dst = &system
		case "db.namespace":
			dst = &namespace
		case "db.name":
			dst = &name
		default:
			for i, pk := range g.peerKeys[:peerRank] {
				if string(key) == string(pk) {
					peerRank, dst = i, &peerVal
					break
				}
			}
		}
		if dst != nil {
			start := len(buf)
			buf = v.AppendText(buf)
			*dst = [2]int{start, len(buf)}
		}
		return true
	})
	sc.attrs = buf
	if system[1] > system[0] {
		switch {
		case namespace[1] > namespace[0]:
			db = buf[namespace[0]:namespace[1]]
		case name[1] > name[0]:
			db = buf[name[0]:name[1]]
		default:
			db = buf[system[0]:system[1]]
		}
	}
	if peerVal[1] > peerVal[0] {
		peer = buf[peerVal[0]:peerVal[1]]
	}
	return db, peer
}

// complete records a request whose two halves met.
func (g *Graph) complete(e *entry) {
	conn := connDirect
	if e.client.messaging || e.server.messaging {
		conn = connMessaging
	}
	s := g.edge(e.client.service, e.server.service, conn)
	s.record(e.client.failed || e.server.failed)
	observe(s.clientHist, &s.clientNanos, g.bounds, e.client.nanos)
	observe(s.serverHis, &s.serverNanos, g.bounds, e.server.nanos)
}

// halfEdge is the series a lone half is counted under: its own side named, the other empty.
func (g *Graph) halfEdge(h half, isClient bool) *edgeSeries {
	conn := connDirect
	if h.messaging {
		conn = connMessaging
	}
	if isClient {
		return g.edge(h.service, "", conn)
	}
	return g.edge("", h.service, conn)
}

// Expire gives up on the halves that have waited their time by now: a client half that names its
// peer becomes a request to that virtual node, any other is counted as unpaired.
func (g *Graph) Expire(now time.Time) {
	g.store.expire(now.UnixNano(), func(e *entry) {
		switch {
		case e.hasClient && e.client.peer != "":
			s := g.edge(e.client.service, e.client.peer, connVirtual)
			s.record(e.client.failed)
			observe(s.clientHist, &s.clientNanos, g.bounds, e.client.nanos)
		case e.hasClient:
			g.halfEdge(e.client, true).unpaired.Add(1)
		default:
			g.halfEdge(e.server, false).unpaired.Add(1)
		}
	})
}

func (s *edgeSeries) record(failed bool) {
	s.requests.Add(1)
	if failed {
		s.failed.Add(1)
	}
}

func observe(hist []atomic.Uint64, sum *atomic.Uint64, bounds []float64, nanos uint64) {
	secs := float64(nanos) / 1e9
	i := 0
	for i < len(bounds) && secs > bounds[i] {
		i++
	}
	hist[i].Add(1)
	sum.Add(nanos)
}

// edge finds or creates the series of an edge; past MaxEdges new edges share one overflow series.
func (g *Graph) edge(client, server string, conn connType) *edgeSeries {
	k := edgeKey{client, server, conn}
	g.edgesMu.RLock()
	s := g.edges[k]
	g.edgesMu.RUnlock()
	if s != nil {
		return s
	}
	g.edgesMu.Lock()
	defer g.edgesMu.Unlock()
	if s = g.edges[k]; s != nil {
		return s
	}
	if len(g.edges) >= g.maxEdges {
		g.edgeOverflow.Add(1)
		k = edgeKey{OverflowValue, OverflowValue, conn}
		if s = g.edges[k]; s != nil {
			return s
		}
	}
	s = &edgeSeries{key: k, clientHist: make([]atomic.Uint64, len(g.bounds)+1), serverHis: make([]atomic.Uint64, len(g.bounds)+1)}
	g.edges[k] = s
	return s
}

// Edge is one arrow of the service map, with counts since start.
type Edge struct {
	Client, Server string
	ConnectionType string
	Requests       uint64
	Failed         uint64
	// ClientP95 and ServerP95 are estimated from the histograms, so within a bucket's precision;
	// zero when that side was never seen.
	ClientP95, ServerP95 time.Duration
}

// Edges lists the edges that carried requests, ordered by client, server and connection type.
func (g *Graph) Edges() []Edge {
	var out []Edge
	counts := make([]uint64, len(g.bounds)+1)
	for _, s := range g.series() {
		n := s.requests.Load()
		if n == 0 {
			continue
		}
		out = append(out, Edge{
			Client: s.key.client, Server: s.key.server, ConnectionType: connNames[s.key.conn],
			Requests: n, Failed: s.failed.Load(),
			ClientP95: g.p95(s.clientHist, counts), ServerP95: g.p95(s.serverHis, counts),
		})
	}
	slices.SortFunc(out, func(a, b Edge) int {
		return cmp.Or(cmp.Compare(a.Client, b.Client), cmp.Compare(a.Server, b.Server), cmp.Compare(a.ConnectionType, b.ConnectionType))
	})
	return out
}

func (g *Graph) p95(hist []atomic.Uint64, counts []uint64) time.Duration {
	for i := range hist {
		counts[i] = hist[i].Load()
	}
	return time.Duration(spanmetrics.Quantile(0.95, g.bounds, counts) * 1e9)
}

func (g *Graph) series() []*edgeSeries {
	g.edgesMu.RLock()
	defer g.edgesMu.RUnlock()
	out := make([]*edgeSeries, 0, len(g.edges))
	for _, s := range g.edges {
		out = append(out, s)
	}
	return out
}

// Describe implements prometheus.Collector.
func (g *Graph) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{g.requestDesc, g.failedDesc, g.clientDesc, g.serverDesc, g.unpairedDesc, g.droppedDesc, g.overflowDesc, g.pendingDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A series appears only for the metrics its edge has
// counted, so a lone unpaired half does not show as an edge with zero requests.
func (g *Graph) Collect(ch chan<- prometheus.Metric) {
	for _, s := range g.series() {
		labels := []string{s.key.client, s.key.server, connNames[s.key.conn]}
		if n := s.requests.Load(); n > 0 {
			ch <- prometheus.MustNewConstMetric(g.requestDesc, prometheus.CounterValue, float64(n), labels...)
			ch <- prometheus.MustNewConstMetric(g.failedDesc, prometheus.CounterValue, float64(s.failed.Load()), labels...)
		}
		if h := g.histogram(g.clientDesc, s.clientHist, &s.clientNanos, labels); h != nil {
			ch <- h
		}
		if h := g.histogram(g.serverDesc, s.serverHis, &s.serverNanos, labels); h != nil {
			ch <- h
		}
		if n := s.unpaired.Load(); n > 0 {
			ch <- prometheus.MustNewConstMetric(g.unpairedDesc, prometheus.CounterValue, float64(n), labels...)
		}
		if n := s.dropped.Load(); n > 0 {
			ch <- prometheus.MustNewConstMetric(g.droppedDesc, prometheus.CounterValue, float64(n), labels...)
		}
	}
	ch <- prometheus.MustNewConstMetric(g.overflowDesc, prometheus.CounterValue, float64(g.edgeOverflow.Load()))
	ch <- prometheus.MustNewConstMetric(g.pendingDesc, prometheus.GaugeValue, float64(g.store.size.Load()))
}

func (g *Graph) histogram(d *prometheus.Desc, hist []atomic.Uint64, sum *atomic.Uint64, labels []string) prometheus.Metric {
	cum := make(map[float64]uint64, len(g.bounds))
	var c uint64
	for i := range hist {
		c += hist[i].Load()
		if i < len(g.bounds) {
			cum[g.bounds[i]] = c
		}
	}
	if c == 0 {
		return nil
	}
	return prometheus.MustNewConstHistogram(d, c, float64(sum.Load())/1e9, cum, labels...)
}
