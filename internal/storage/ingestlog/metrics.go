package ingestlog

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	published      prometheus.Counter
	publishErrors  prometheus.Counter
	publishLatency prometheus.Histogram
	consumed       prometheus.Counter
	lag            *prometheus.GaugeVec // messages after the last consumed one, per partition owned
	uncommitted    *prometheus.GaugeVec // consumed, not yet committed: what a new owner would replay
	committed      *prometheus.GaugeVec // last committed stream sequence, per partition
	rebalances     *prometheus.CounterVec
	owned          prometheus.Gauge
	members        prometheus.Gauge
	owner          *prometheus.GaugeVec // 1 for (partition, node) as this node last saw them
	partLabels     []string
}

func newMetrics(reg prometheus.Registerer, partitions int) (*metrics, error) {
	m := &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "ariadne_ingestlog_published_messages_total",
			Help: "Request parts (one per trace-ID partition) acknowledged by JetStream."}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "ariadne_ingestlog_publish_errors_total",
			Help: "Requests not fully acknowledged by JetStream (the sender is told to retry)."}),
		publishLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ariadne_ingestlog_publish_duration_seconds",
			Help:    "Time from the start of a request's publish to the last PubAck of its parts.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		consumed: prometheus.NewCounter(prometheus.CounterOpts{Name: "ariadne_ingestlog_consumed_messages_total",
			Help: "Messages consumed into this node's head."}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ariadne_ingestlog_consumer_lag_messages",
			Help: "Messages in a partition this node owns that it has not consumed yet (not counting the consumer's read-ahead while consumption is paused)."}, []string{"partition"}),
		uncommitted: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ariadne_ingestlog_uncommitted_messages",
			Help: "Messages this node consumed whose offset is not committed yet (in its head or in blocks not yet in the bucket): what the partition's next owner would replay."}, []string{"partition"}),
		committed: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ariadne_ingestlog_committed_sequence",
			Help: "Last stream sequence this node committed for a partition (everything before it is in the bucket)."}, []string{"partition"}),
		rebalances: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ariadne_ingestlog_rebalances_total",
			Help: "Partitions this node took (taken), handed over to their assigned member (released) or found taken by another node (lost)."}, []string{"change"}),
		owned: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ariadne_ingestlog_partitions_owned",
			Help: "Partitions this node consumes now."}),
		members: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ariadne_ingestlog_members",
			Help: "Block builders listed in the members bucket."}),
		owner: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ariadne_ingestlog_partition_owner",
			Help: "1 for each partition and the node that owns it, as this node last read the owners bucket."}, []string{"partition", "node", "addr"}),
	}
	for _, c := range []string{"taken", "released", "lost"} {
		m.rebalances.WithLabelValues(c) // listed at 0, so a rate() sees the first change
	}
	for p := 0; p < partitions; p++ {
		m.partLabels = append(m.partLabels, strconv.Itoa(p))
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.published, m.publishErrors, m.publishLatency, m.consumed, m.lag, m.uncommitted, m.committed,
			m.rebalances, m.owned, m.members, m.owner} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("ingestlog: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
