// Package spanmetrics derives request, error and duration (RED) metrics from the spans Ariadne
// ingests, under the names and labels Tempo's metrics-generator uses, so dashboards and alerts
// written for Tempo work unchanged against Ariadne's /metrics.
//
// Series:
//
//	traces_spanmetrics_calls_total{service, span_name, span_kind, status_code, <dimensions>}
//	traces_spanmetrics_latency_bucket / _sum / _count{...} (seconds)
//	traces_spanmetrics_size_total{...} (bytes of the span's OTLP encoding)
//	ariadne_spanmetrics_series_overflow_total (spans folded into the overflow series)
//	ariadne_spanmetrics_active_series
//
// span_kind and status_code carry the OTLP enum names (SPAN_KIND_SERVER, STATUS_CODE_ERROR), as
// Tempo writes them. A dimension is a span or resource attribute key; its label is the key with
// every character outside [A-Za-z0-9_] replaced by an underscore, and when a span and its resource
// both carry the key, the span's value is used. A span without the attribute gets an empty value.
//
// The number of series is capped (Config.MaxSeries). Once the cap is reached, a span that would
// start a new series is counted in a single overflow series whose every label value is
// "__overflow__", and in ariadne_spanmetrics_series_overflow_total; existing series keep counting.
// Memory is therefore bounded by the cap whatever the senders do.
package spanmetrics

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// OverflowValue is the value of every label of the series that counts spans past MaxSeries.
const OverflowValue = "__overflow__"

// DefaultMaxSeries is Config.MaxSeries when left zero.
const DefaultMaxSeries = 10000

// DefaultBuckets are Tempo's default span-metrics histogram bounds, in seconds.
var DefaultBuckets = []float64{0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384}

// Config selects the extra labels and the limits.
type Config struct {
	// Dimensions are attribute keys added as labels, in this order.
	Dimensions []string
	// MaxSeries caps the number of series; zero means DefaultMaxSeries.
	MaxSeries int
	// Buckets are the latency histogram's upper bounds in seconds, ascending; nil means
	// DefaultBuckets.
	Buckets []float64
}

// Label names of the intrinsic labels, in the order series keep their values.
const (
	LabelService    = "service"
	LabelSpanName   = "span_name"
	LabelSpanKind   = "span_kind"
	LabelStatusCode = "status_code"
)

const numIntrinsic = 4

var spanKinds = [...]string{"SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"}

var statusCodes = [...]string{"STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"}

// KindName is the span_kind label value of an OTLP span kind.
func KindName(kind int32) string {
	if kind < 0 || int(kind) >= len(spanKinds) {
		return spanKinds[0]
	}
	return spanKinds[kind]
}

// StatusName is the status_code label value of an OTLP status code.
func StatusName(code int32) string {
	if code < 0 || int(code) >= len(statusCodes) {
		return statusCodes[0]
	}
	return statusCodes[code]
}

// A power of two well above the core count: a flood of new series takes the write lock of one
// shard, and readers of the other shards keep going.
const numShards = 64

// Metrics accumulates span metrics. It is a prometheus.Collector and an ingest observer; all
// methods are safe for concurrent use.
type Metrics struct {
	dimKeys    [][]byte
	labelNames []string
	bounds     []float64
	maxSeries  int64

	seed     maphash.Seed
	shards   [numShards]shard
	nseries  atomic.Int64
	overflow *series
	// overflowed counts spans that landed in the overflow series.
	overflowed atomic.Uint64

	scratch sync.Pool

	callsDesc, latencyDesc, sizeDesc, overflowDesc, activeDesc *prometheus.Desc
}

type shard struct {
	mu sync.RWMutex
	m  map[uint64]*series
}

// series is one label combination. Counters are atomics so that a span that finds its series
// under the read lock never waits for another span of the same series.
type series struct {
	key    []byte
	labels []string
	next   *series // the next series with the same hash

	calls    atomic.Uint64
	sizeSum  atomic.Uint64
	nanosSum atomic.Uint64
	// buckets are per-bucket (not cumulative) counts, the last one for +Inf; the histogram count
	// is their sum, so a scrape racing with an update still sees count == the +Inf bucket.
	buckets  []atomic.Uint64
	lastSeen atomic.Int64
}

// New builds the collector and registers it on reg unless reg is nil.
func New(reg prometheus.Registerer, cfg Config) (*Metrics, error) {
	m := &Metrics{seed: maphash.MakeSeed(), maxSeries: int64(cfg.MaxSeries)}
	if m.maxSeries <= 0 {
		m.maxSeries = DefaultMaxSeries
	}
	m.bounds = cfg.Buckets
	if m.bounds == nil {
		m.bounds = DefaultBuckets
	}
	if !slices.IsSorted(m.bounds) || len(m.bounds) == 0 {
		return nil, errors.New("spanmetrics: buckets must be non-empty and ascending")
	}
	m.bounds = slices.Clone(m.bounds)
	m.labelNames = []string{LabelService, LabelSpanName, LabelSpanKind, LabelStatusCode}
	for _, d := range cfg.Dimensions {
		name := LabelName(d)
		if d == "" || slices.Contains(m.labelNames, name) || strings.HasPrefix(name, "__") {
			return nil, fmt.Errorf("spanmetrics: dimension %q: label %q is empty, reserved or already used", d, name)
		}
		m.labelNames = append(m.labelNames, name)
		m.dimKeys = append(m.dimKeys, []byte(d))
	}
	for i := range m.shards {
		m.shards[i].m = make(map[uint64]*series)
	}
	overflowLabels := make([]string, len(m.labelNames))
	for i := range overflowLabels {
		overflowLabels[i] = OverflowValue
	}
	m.overflow = m.newSeries(nil, overflowLabels)
	m.scratch.New = func() any { return &scratch{} }

	m.callsDesc = prometheus.NewDesc("traces_spanmetrics_calls_total", "Spans received, by operation.", m.labelNames, nil)
	m.latencyDesc = prometheus.NewDesc("traces_spanmetrics_latency", "Span durations in seconds, by operation.", m.labelNames, nil)
	m.sizeDesc = prometheus.NewDesc("traces_spanmetrics_size_total", "Bytes of the spans' OTLP encoding, by operation.", m.labelNames, nil)
	m.overflowDesc = prometheus.NewDesc("ariadne_spanmetrics_series_overflow_total", "Spans counted in the overflow series because the series limit was reached.", nil, nil)
	m.activeDesc = prometheus.NewDesc("ariadne_spanmetrics_active_series", "Span-metrics series currently kept, the overflow series excluded.", nil, nil)
	if reg != nil {
		if err := reg.Register(m); err != nil {
			return nil, fmt.Errorf("spanmetrics: register collector: %w", err)
		}
	}
	return m, nil
}

// LabelName turns an attribute key into the label name used for it.
func LabelName(key string) string {
	b := []byte(key)
	for i, c := range b {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' && i > 0) {
			b[i] = '_'
		}
	}
	return string(b)
}

func (m *Metrics) newSeries(key []byte, labels []string) *series {
	return &series{key: key, labels: labels, buckets: make([]atomic.Uint64, len(m.bounds)+1)}
}

// scratch is the per-request working memory, pooled so that steady-state ingest allocates
// nothing.
type scratch struct {
	key  []byte
	vals []byte
	// spanDims and resDims hold [start, end) offsets into vals and res; end < 0 means absent.
	spanDims [][2]int
	resDims  [][2]int
	res      []byte
	// resFor identifies the Resource message resDims were read from, so a request's spans
	// scan their shared resource once.
	resFor []byte
	now    int64
}

// ObserveTraces counts the spans of an OTLP ExportTraceServiceRequest. Malformed input counts the
// spans before the damage: ingest has validated the request already, so that cannot happen in
// practice, and an observer has no way to report it.
func (m *Metrics) ObserveTraces(payload []byte) {
	var b otlpwire.Batch
	_ = b.Scan(payload)
	m.ObserveSpans(&b)
}

// ObserveSpans counts the spans of a request ingest has scanned.
func (m *Metrics) ObserveSpans(b *otlpwire.Batch) {
	sc := m.scratch.Get().(*scratch)
	sc.now = time.Now().UnixNano()
	sc.resFor = nil
	for i := range b.Spans {
		m.observe(sc, b.Group(i), &b.Spans[i])
	}
	sc.resFor = nil
	m.scratch.Put(sc)
}

func (m *Metrics) observe(sc *scratch, g *otlpwire.Group, s *otlpwire.Span) {
	key := appendValue(sc.key[:0], g.ServiceName)
	key = appendValue(key, s.Name)
	kind, status := s.Kind, s.StatusCode
	if kind < 0 || int(kind) >= len(spanKinds) {
		kind = 0
	}
	if status < 0 || int(status) >= len(statusCodes) {
		status = 0
	}
	key = append(key, byte(kind), byte(status))
	if len(m.dimKeys) > 0 {
		key = m.appendDims(sc, key, g, s)
	}
	sc.key = key

	se := m.lookup(key)
	if se == m.overflow {
		m.overflowed.Add(1)
	}
	var nanos uint64
	if s.End > s.Start {
		nanos = s.End - s.Start
	}
	secs := float64(nanos) / 1e9
	i := 0
	for i < len(m.bounds) && secs > m.bounds[i] {
		i++
	}
	se.buckets[i].Add(1)
	se.calls.Add(1)
	se.nanosSum.Add(nanos)
	se.sizeSum.Add(uint64(len(s.Raw)))
	if se.lastSeen.Load() != sc.now {
		se.lastSeen.Store(sc.now)
	}
}

// appendValue length-prefixes v so that no two label combinations share a key.
func appendValue(dst, v []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	return append(dst, v...)
}

func (m *Metrics) appendDims(sc *scratch, key []byte, g *otlpwire.Group, s *otlpwire.Span) []byte {
	n := len(m.dimKeys)
	if cap(sc.spanDims) < n {
		sc.spanDims = make([][2]int, n)
		sc.resDims = make([][2]int, n)
	}
	sc.spanDims, sc.resDims = sc.spanDims[:n], sc.resDims[:n]
	sc.vals = findDims(sc.vals[:0], sc.spanDims, m.dimKeys, s.Raw, otlpwire.SpanAttributes)
	if !sameBytes(sc.resFor, g.Resource) {
		sc.res = findDims(sc.res[:0], sc.resDims, m.dimKeys, g.Resource, otlpwire.ResourceAttributes)
		sc.resFor = g.Resource
	}
	for i := range n {
		switch d, r := sc.spanDims[i], sc.resDims[i]; {
		case d[1] >= 0:
			key = appendValue(key, sc.vals[d[0]:d[1]])
		case r[1] >= 0:
			key = appendValue(key, sc.res[r[0]:r[1]])
		default:
			key = appendValue(key, nil)
		}
	}
	return key
}

// sameBytes reports whether a and b are the same slice of the same request, which is cheaper and
// stricter than comparing contents.
func sameBytes(a, b []byte) bool {
	if len(a) != len(b) || a == nil || b == nil {
		return false
	}
	return len(a) == 0 || &a[0] == &b[0]
}

func findDims(buf []byte, out [][2]int, keys [][]byte, msg []byte,
	each func([]byte, func([]byte, otlpwire.AttrValue) bool) error,
) []byte {
	for i := range out {
		out[i] = [2]int{0, -1}
	}
	if len(msg) == 0 {
		return buf
	}
	_ = each(msg, func(k []byte, v otlpwire.AttrValue) bool {
		for i, want := range keys {
			if out[i][1] < 0 && bytes.Equal(k, want) {
				start := len(buf)
				buf = v.AppendText(buf)
				out[i] = [2]int{start, len(buf)}
			}
		}
		return true
	})
	return buf
}

func (m *Metrics) lookup(key []byte) *series {
	h := maphash.Bytes(m.seed, key)
	sh := &m.shards[h%numShards]
	sh.mu.RLock()
	for se := sh.m[h]; se != nil; se = se.next {
		if bytes.Equal(se.key, key) {
			sh.mu.RUnlock()
			return se
		}
	}
	sh.mu.RUnlock()
	if m.nseries.Load() >= m.maxSeries {
		// Skips the write lock: past the limit a flood of new names would otherwise serialise.
		return m.overflow
	}
	return m.create(sh, h, key)
}

func (m *Metrics) create(sh *shard, h uint64, key []byte) *series {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for se := sh.m[h]; se != nil; se = se.next {
		if bytes.Equal(se.key, key) {
			return se
		}
	}
	for {
		n := m.nseries.Load()
		if n >= m.maxSeries {
			return m.overflow
		}
		if m.nseries.CompareAndSwap(n, n+1) {
			break
		}
	}
	se := m.newSeries(bytes.Clone(key), m.decodeLabels(key))
	se.next = sh.m[h]
	sh.m[h] = se
	return se
}

// decodeLabels turns a series key back into label values, replacing invalid UTF-8 because the
// exposition format rejects it.
func (m *Metrics) decodeLabels(key []byte) []string {
	labels := make([]string, 0, len(m.labelNames))
	next := func() string {
		n, w := binary.Uvarint(key)
		v := key[w : w+int(n)]
		key = key[w+int(n):]
		return strings.ToValidUTF8(string(v), "\uFFFD")
	}
	labels = append(labels, next(), next())
	labels = append(labels, spanKinds[key[0]], statusCodes[key[1]])
	key = key[2:]
	for len(labels) < len(m.labelNames) {
		labels = append(labels, next())
	}
	return labels
}

// Prune forgets the series that received no span since before and returns how many it dropped,
// freeing room under MaxSeries for the operations that are still alive. Prometheus sees a pruned
// series end; if it comes back it starts again from zero, which rate() handles as a reset.
func (m *Metrics) Prune(before time.Time) int {
	cut := before.UnixNano()
	dropped := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for h, head := range sh.m {
			var keep *series
			for se := head; se != nil; {
				next := se.next
				if se.lastSeen.Load() < cut {
					dropped++
				} else {
					se.next = keep
					keep = se
				}
				se = next
			}
			if keep == nil {
				delete(sh.m, h)
			} else {
				sh.m[h] = keep
			}
		}
		sh.mu.Unlock()
	}
	m.nseries.Add(-int64(dropped))
	return dropped
}

// each calls fn for every series, the overflow series last and only once it has counted.
func (m *Metrics) each(fn func(*series)) {
	var all []*series
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.RLock()
		for _, head := range sh.m {
			for se := head; se != nil; se = se.next {
				all = append(all, se)
			}
		}
		sh.mu.RUnlock()
	}
	for _, se := range all {
		fn(se)
	}
	if m.overflow.calls.Load() > 0 {
		fn(m.overflow)
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.callsDesc
	ch <- m.latencyDesc
	ch <- m.sizeDesc
	ch <- m.overflowDesc
	ch <- m.activeDesc
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	counts := make([]uint64, len(m.bounds)+1)
	m.each(func(se *series) {
		count := se.snapshot(counts)
		cum := make(map[float64]uint64, len(m.bounds))
		var c uint64
		for i, b := range m.bounds {
			c += counts[i]
			cum[b] = c
		}
		ch <- prometheus.MustNewConstMetric(m.callsDesc, prometheus.CounterValue, float64(se.calls.Load()), se.labels...)
		ch <- prometheus.MustNewConstHistogram(m.latencyDesc, count, float64(se.nanosSum.Load())/1e9, cum, se.labels...)
		ch <- prometheus.MustNewConstMetric(m.sizeDesc, prometheus.CounterValue, float64(se.sizeSum.Load()), se.labels...)
	})
	ch <- prometheus.MustNewConstMetric(m.overflowDesc, prometheus.CounterValue, float64(m.overflowed.Load()))
	ch <- prometheus.MustNewConstMetric(m.activeDesc, prometheus.GaugeValue, float64(m.nseries.Load()))
}

// snapshot copies the bucket counts into counts and returns their sum.
func (se *series) snapshot(counts []uint64) uint64 {
	var total uint64
	for i := range se.buckets {
		counts[i] = se.buckets[i].Load()
		total += counts[i]
	}
	return total
}
