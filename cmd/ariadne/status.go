package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spf13/cobra"

	"github.com/ariadne-tracing/ariadne/internal/storage/ingestlog"
)

// statusCmd prints a summary of a running server's own metrics: the same figures /metrics gives
// Prometheus, for a person at a terminal.
func newStatusCmd() *cobra.Command {
	var client clientOptions
	cmd := &cobra.Command{
		Use:   "status [flags]",
		Short: "Summarise a running server's ingest, memory, WAL, blocks and sampling, and its cluster",
		Long: "Summarises a running Ariadne: ingest, refusals, memory, write-ahead log, blocks and sampling. " +
			"With ingest.log: jetstream, also the cluster as NATS holds it: the stream and its servers, the members " +
			"and the partitions each owns, and per partition the messages, the committed offset, the backlog after " +
			"it (what a new owner would replay) and the owner's lag.",
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			body, err := client.get(ctx, "/metrics", nil)
			if err != nil {
				return err
			}
			p := expfmt.NewTextParser(model.UTF8Validation)
			fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
			if err != nil {
				return fmt.Errorf("reading %s/metrics: %w", client.baseURL(), err)
			}
			w := cmd.OutOrStdout()
			printStatus(w, fams)
			if !jetStreamMode(fams) {
				return nil
			}
			var st ingestlog.Status
			if err := client.getJSON(ctx, "/api/status/cluster", nil, &st); err != nil {
				return err
			}
			return printCluster(w, st, time.Now())
		},
	}
	client.register(cmd)
	return cmd
}

func sample(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

func total(fams map[string]*dto.MetricFamily, name string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	t := 0.0
	for _, m := range f.Metric {
		t += sample(m)
	}
	return t
}

// byLabel sums a family's samples per value of one label.
func byLabel(fams map[string]*dto.MetricFamily, name, label string) string {
	f := fams[name]
	if f == nil {
		return "none"
	}
	sums := map[string]float64{}
	for _, m := range f.Metric {
		var key []string
		for _, l := range m.Label {
			if l.GetName() == label || label == "*" {
				key = append(key, l.GetValue())
			}
		}
		sums[strings.Join(key, "/")] += sample(m)
	}
	var parts []string
	for k, v := range sums {
		if v > 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f", k, v))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

func printStatus(w io.Writer, fams map[string]*dto.MetricFamily) {
	fmt.Fprintln(w, "Ingest")
	fmt.Fprintf(w, "  spans received %.0f, accepted %.0f\n", total(fams, "ariadne_ingest_spans_received_total"), total(fams, "ariadne_ingest_spans_accepted_total"))
	fmt.Fprintf(w, "  spans refused: %s\n", byLabel(fams, "ariadne_ingest_spans_refused_total", "reason"))
	fmt.Fprintf(w, "  requests refused: %s\n", byLabel(fams, "ariadne_ingest_requests_refused_total", "reason"))
	fmt.Fprintf(w, "  spans cut by limits: %s\n", byLabel(fams, "ariadne_ingest_spans_limited_total", "limit"))
	fmt.Fprintln(w, "Memory")
	fmt.Fprintf(w, "  head: %.0f traces, %.0f spans, %s; process RSS %s\n", total(fams, "ariadne_head_traces"), total(fams, "ariadne_head_spans"),
		mib(total(fams, "ariadne_head_bytes")), mib(total(fams, "process_resident_memory_bytes")))
	if jetStreamMode(fams) {
		// The stream is the write-ahead log: this node has none of its own.
		printIngestLog(w, fams)
	} else {
		printWAL(w, fams)
	}
	printBlocks(w, fams)
}

func printWAL(w io.Writer, fams map[string]*dto.MetricFamily) {
	fmt.Fprintln(w, "Write-ahead log")
	fsyncs := total(fams, "ariadne_wal_fsyncs_total")
	avg := 0.0
	if h := fams["ariadne_wal_fsync_duration_seconds"]; h != nil && len(h.Metric) > 0 && h.Metric[0].Histogram != nil && h.Metric[0].Histogram.GetSampleCount() > 0 {
		avg = h.Metric[0].Histogram.GetSampleSum() / float64(h.Metric[0].Histogram.GetSampleCount())
	}
	fmt.Fprintf(w, "  %.0f records, %s written in %.0f group commits (fsync avg %.2fms); %.0f segments, %s on disk\n",
		total(fams, "ariadne_wal_records_total"), mib(total(fams, "ariadne_wal_bytes_written_total")), fsyncs, avg*1000,
		total(fams, "ariadne_wal_segments"), mib(total(fams, "ariadne_wal_disk_bytes")))
}

func printBlocks(w io.Writer, fams map[string]*dto.MetricFamily) {
	fmt.Fprintln(w, "Blocks")
	fmt.Fprintf(w, "  %.0f blocks, %s on disk; written since start: %.0f blocks, %.0f traces, %.0f spans; deleted by retention %.0f\n",
		total(fams, "ariadne_blocks"), mib(total(fams, "ariadne_block_disk_bytes")), total(fams, "ariadne_blocks_written_total"),
		total(fams, "ariadne_block_traces_flushed_total"), total(fams, "ariadne_block_spans_flushed_total"), total(fams, "ariadne_blocks_deleted_total"))
	fmt.Fprintf(w, "  compaction: %.0f merged blocks written from %.0f smaller ones\n",
		total(fams, "ariadne_compactions_total"), total(fams, "ariadne_blocks_compacted_total"))
	fmt.Fprintln(w, "Tail sampling")
	if fams["ariadne_sampling_decisions_total"] == nil {
		fmt.Fprintln(w, "  off: every trace is kept")
	} else {
		fmt.Fprintf(w, "  decisions: %s\n", byLabel(fams, "ariadne_sampling_decisions_total", "*"))
		fmt.Fprintf(w, "  late parts: %s\n", byLabel(fams, "ariadne_sampling_late_traces_total", "decision"))
	}
}
