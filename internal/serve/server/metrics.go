package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ariadne-tracing/ariadne/internal/storage/store"
)

// storeCollector reads the store's sizes and counters at scrape time, so self-monitoring costs
// nothing on the ingest path.
type storeCollector struct {
	st *store.Store

	headTraces, headSpans, headBytes     *prometheus.Desc
	walRecords, walBytes, walFsyncs      *prometheus.Desc
	walDisk, walSegments                 *prometheus.Desc
	blocks, blockBytes                   *prometheus.Desc
	blocksWritten, tracesFlushed         *prometheus.Desc
	spansFlushed, tracesDropped, deleted *prometheus.Desc
	replayed                             *prometheus.Desc
	compactions, compacted               *prometheus.Desc

	walWritable, walWriteErrors, walSealed   *prometheus.Desc
	replayLostRecords, replayLostBytes       *prometheus.Desc
	replayDamaged, replayTorn, replayRecords *prometheus.Desc
	compactErrors, quarantined, degraded     *prometheus.Desc
	swept, budgetDeleted                     *prometheus.Desc
}

func newStoreCollector(st *store.Store) *storeCollector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &storeCollector{st: st,
		headTraces:    d("ariadne_head_traces", "Traces held in memory, live or waiting for a block."),
		headSpans:     d("ariadne_head_spans", "Spans held in memory."),
		headBytes:     d("ariadne_head_bytes", "Span bytes held in memory."),
		walRecords:    d("ariadne_wal_records_total", "Requests written to the write-ahead log."),
		walBytes:      d("ariadne_wal_bytes_written_total", "Bytes written to the write-ahead log."),
		walFsyncs:     d("ariadne_wal_fsyncs_total", "Group commits (one fsync each)."),
		walDisk:       d("ariadne_wal_disk_bytes", "Size of the write-ahead log's segments on disk."),
		walSegments:   d("ariadne_wal_segments", "Write-ahead log segment files."),
		blocks:        d("ariadne_blocks", "Blocks open for queries."),
		blockBytes:    d("ariadne_block_disk_bytes", "Size of the blocks on disk."),
		blocksWritten: d("ariadne_blocks_written_total", "Blocks written since start."),
		tracesFlushed: d("ariadne_block_traces_flushed_total", "Traces written into blocks since start."),
		spansFlushed:  d("ariadne_block_spans_flushed_total", "Spans written into blocks since start."),
		tracesDropped: d("ariadne_sampling_traces_dropped_total", "Complete traces dropped by tail sampling since start."),
		deleted:       d("ariadne_blocks_deleted_total", "Blocks deleted by retention since start."),
		replayed:      d("ariadne_wal_replayed_spans", "Spans replayed from the write-ahead log at start."),
		compactions:   d("ariadne_compactions_total", "Merged blocks written by compaction since start."),
		compacted:     d("ariadne_blocks_compacted_total", "Blocks merged away by compaction since start."),

		walWritable:       d("ariadne_wal_writable", "1 while the write-ahead log can take appends; 0 from a failed disk write until it has written again."),
		walWriteErrors:    d("ariadne_wal_write_errors_total", "Group commits that failed on the disk (write, fsync or new segment); their requests were refused as retryable."),
		walSealed:         d("ariadne_wal_segments_sealed_total", "Segments cut back to their last good record and closed after a failed write or fsync."),
		replayRecords:     d("ariadne_wal_replayed_records", "Records replayed from the write-ahead log at start."),
		replayLostRecords: d("ariadne_wal_replay_lost_records", "Records lost to damage in the middle of write-ahead log segments, found at start."),
		replayLostBytes:   d("ariadne_wal_replay_lost_bytes", "Bytes of the write-ahead log that replay could not use at start (damage and cut-off tails)."),
		replayDamaged:     d("ariadne_wal_replay_damaged_segments", "Segments with damage before an intact record, found at start (copied to wal/quarantine)."),
		replayTorn:        d("ariadne_wal_replay_torn_tails", "Segments whose last write was incomplete or damaged, cut off at start (copied to wal/quarantine)."),

		compactErrors: d("ariadne_compaction_failures_total", "Compaction attempts that failed since start (each followed by a growing wait)."),
		quarantined:   d("ariadne_blocks_quarantined_total", "Damaged blocks moved to quarantine since start, at open or when a read found the damage."),
		degraded:      d("ariadne_blocks_degraded_total", "Blocks opened without a sound bloom filter since start, served from their trace-ID index."),
		swept:         d("ariadne_block_staging_swept_total", "Leftovers of interrupted block writes removed at start."),
		budgetDeleted: d("ariadne_blocks_deleted_for_disk_budget_total", "Blocks deleted, oldest data first, to keep the store under storage.max_disk_bytes."),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.headTraces, c.headSpans, c.headBytes, c.walRecords, c.walBytes, c.walFsyncs,
		c.walDisk, c.walSegments, c.blocks, c.blockBytes, c.blocksWritten, c.tracesFlushed, c.spansFlushed, c.tracesDropped,
		c.deleted, c.replayed, c.compactions, c.compacted, c.walWritable, c.walWriteErrors, c.walSealed,
		c.replayRecords, c.replayLostRecords, c.replayLostBytes, c.replayDamaged, c.replayTorn,
		c.compactErrors, c.quarantined, c.degraded, c.swept, c.budgetDeleted} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	k := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	hs := c.st.Head().Stats()
	g(c.headTraces, float64(hs.Traces))
	g(c.headSpans, float64(hs.Spans))
	g(c.headBytes, float64(hs.Bytes))
	ws := c.st.WALStats()
	k(c.walRecords, float64(ws.Records))
	k(c.walBytes, float64(ws.Bytes))
	k(c.walFsyncs, float64(ws.Fsyncs))
	g(c.walDisk, float64(ws.BytesOnDisk))
	g(c.walSegments, float64(ws.Segments))
	writable := 0.0
	if ws.Writable {
		writable = 1
	}
	g(c.walWritable, writable)
	k(c.walWriteErrors, float64(ws.WriteErrors))
	k(c.walSealed, float64(ws.Sealed))
	rs := c.st.ReplayStats()
	g(c.replayRecords, float64(rs.Records))
	g(c.replayLostRecords, float64(rs.LostRecords))
	g(c.replayLostBytes, float64(rs.LostBytes))
	g(c.replayDamaged, float64(rs.Damaged))
	g(c.replayTorn, float64(rs.TornTails))
	// Stats reads atomics: a scrape never waits for a flush or a compaction.
	ss := c.st.Stats()
	g(c.blocks, float64(ss.Blocks))
	g(c.blockBytes, float64(ss.BlockBytes))
	k(c.blocksWritten, float64(ss.BlocksWritten))
	k(c.tracesFlushed, float64(ss.TracesFlushed))
	k(c.spansFlushed, float64(ss.SpansFlushed))
	k(c.tracesDropped, float64(ss.TracesDropped))
	k(c.deleted, float64(ss.BlocksDeleted))
	g(c.replayed, float64(ss.ReplayedSpans))
	k(c.compactions, float64(ss.Compactions))
	k(c.compacted, float64(ss.BlocksCompacted))
	k(c.compactErrors, float64(ss.CompactErrors))
	k(c.quarantined, float64(ss.BlocksQuarantined))
	k(c.degraded, float64(ss.BlocksDegraded))
	k(c.swept, float64(ss.StagingSwept))
	k(c.budgetDeleted, float64(ss.BudgetDeleted))
}
