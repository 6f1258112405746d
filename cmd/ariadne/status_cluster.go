package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/ariadne-tracing/ariadne/internal/storage/ingestlog"
)

// jetStreamMode is whether the server's ingest log is JetStream (its metrics are registered
// only then).
func jetStreamMode(fams map[string]*dto.MetricFamily) bool {
	return fams["ariadne_ingestlog_published_messages_total"] != nil
}

// printIngestLog is this node's part in the JetStream log, from its own metrics.
func printIngestLog(w io.Writer, fams map[string]*dto.MetricFamily) {
	fmt.Fprintln(w, "Ingest log (JetStream), this node")
	p50, p99 := histQuantile(fams["ariadne_ingestlog_publish_duration_seconds"], 0.5), histQuantile(fams["ariadne_ingestlog_publish_duration_seconds"], 0.99)
	fmt.Fprintf(w, "  published %.0f request parts (publish p50 %s, p99 %s), %.0f requests not acknowledged\n",
		total(fams, "ariadne_ingestlog_published_messages_total"), fmtSeconds(p50), fmtSeconds(p99), total(fams, "ariadne_ingestlog_publish_errors_total"))
	fmt.Fprintf(w, "  consumed %.0f messages into the head; owns %.0f partitions; rebalances: %s\n",
		total(fams, "ariadne_ingestlog_consumed_messages_total"), total(fams, "ariadne_ingestlog_partitions_owned"),
		byLabel(fams, "ariadne_ingestlog_rebalances_total", "change"))
}

// histQuantile estimates a quantile of a histogram family (its first sample) as Prometheus's
// histogram_quantile does: linear within the bucket holding it. NaN when it is empty.
func histQuantile(f *dto.MetricFamily, q float64) float64 {
	if f == nil || len(f.Metric) == 0 || f.Metric[0].Histogram == nil {
		return math.NaN()
	}
	h := f.Metric[0].Histogram
	n := float64(h.GetSampleCount())
	if n == 0 {
		return math.NaN()
	}
	rank, prevUpper, prevCount := q*n, 0.0, 0.0
	for _, b := range h.Bucket {
		c := float64(b.GetCumulativeCount())
		if c >= rank {
			if math.IsInf(b.GetUpperBound(), 1) {
				return prevUpper
			}
			if c == prevCount {
				return b.GetUpperBound()
			}
			return prevUpper + (b.GetUpperBound()-prevUpper)*(rank-prevCount)/(c-prevCount)
		}
		prevUpper, prevCount = b.GetUpperBound(), c
	}
	return prevUpper
}

func fmtSeconds(s float64) string {
	if math.IsNaN(s) {
		return "-"
	}
	return time.Duration(s * float64(time.Second)).Round(10 * time.Microsecond).String()
}

// printCluster draws the cluster as NATS holds it: the stream and its servers, the members and
// the partitions each owns, and each partition's backlog.
func printCluster(w io.Writer, st ingestlog.Status, now time.Time) error {
	fmt.Fprintf(w, "Cluster (JetStream stream %s", st.Stream)
	if st.Cluster != "" {
		fmt.Fprintf(w, " in NATS cluster %s", st.Cluster)
	}
	fmt.Fprintln(w, ")")
	fmt.Fprintf(w, "  %d partitions, %d replicas; %d messages, %s, sequences %d-%d\n",
		st.Partitions, st.Replicas, st.Messages, mib(float64(st.Bytes)), st.FirstSeq, st.LastSeq)
	if len(st.Servers) > 0 {
		var servers []string
		for _, s := range st.Servers {
			state := "current"
			switch {
			case s.Leader:
				state = "leader"
			case s.Offline:
				state = "OFFLINE"
			case !s.Current:
				state = fmt.Sprintf("behind by %d", s.Lag)
			}
			servers = append(servers, s.Name+" "+state)
		}
		fmt.Fprintf(w, "  stream servers: %s\n", strings.Join(servers, ", "))
	}
	owned := map[string][]int{}
	for _, ps := range st.Parts {
		if ps.Owner != "" {
			owned[ps.Owner] = append(owned[ps.Owner], ps.Partition)
		}
	}
	fmt.Fprintf(w, "Members (%d)\n", len(st.Members))
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tADDR\tOWNS\tHOLDS DATA OF\tHEARTBEAT")
	for _, m := range st.Members {
		ago := now.Sub(time.UnixMilli(m.Heartbeat)).Round(100 * time.Millisecond)
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s ago\n", m.ID, orDash(m.Addr), partList(owned[m.ID]), partList(m.Partitions), ago)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "Partitions")
	tw = tabwriter.NewWriter(w, 0, 2, 2, ' ', tabwriter.AlignRight)
	// Right-aligned numbers; the owner last, so its width does not push them apart.
	fmt.Fprintln(tw, "  PART\tMESSAGES\tCOMMITTED\tUNCOMMITTED\tLAG\t  OWNER")
	for _, ps := range st.Parts {
		owner := ps.Owner
		switch {
		case owner == "":
			owner = "(none)"
		case !ps.OwnerLive:
			owner += " (gone: taken over once a member sees it)"
		}
		lag := "-"
		if ps.Lag >= 0 {
			lag = strconv.FormatInt(ps.Lag, 10)
		}
		fmt.Fprintf(tw, "  %d\t%d\t%d\t%d\t%s\t  %s\n", ps.Partition, ps.Messages, ps.Committed, ps.Uncommitted, lag, owner)
	}
	return tw.Flush()
}

// partList writes partitions compactly: "0-3 7 9".
func partList(ps []int) string {
	if len(ps) == 0 {
		return "-"
	}
	ps = append([]int(nil), ps...)
	sort.Ints(ps)
	var out []string
	for i := 0; i < len(ps); {
		j := i
		for j+1 < len(ps) && ps[j+1] == ps[j]+1 {
			j++
		}
		if j > i {
			out = append(out, fmt.Sprintf("%d-%d", ps[i], ps[j]))
		} else {
			out = append(out, strconv.Itoa(ps[i]))
		}
		i = j + 1
	}
	return strings.Join(out, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
