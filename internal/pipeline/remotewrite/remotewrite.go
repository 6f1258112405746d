// Package remotewrite pushes Ariadne's generated metrics (span metrics, service graph) to a
// Prometheus remote-write endpoint, for setups where nothing scrapes Ariadne.
//
// Every interval it gathers the registry, keeps the metric families named by the prefixes, and
// sends them as one Remote-Write 2.0 request through the Prometheus client library's remote-write
// client (which handles snappy, headers and retries). Histograms go as classic series
// (_bucket{le}, _sum, _count), which every receiver understands.
package remotewrite

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/exp/api/remote"
	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Config says where and what to push.
type Config struct {
	URL      string        // e.g. http://prometheus:9090/api/v1/write
	Interval time.Duration // default 15s
	Prefixes []string      // metric name prefixes to send; default traces_
	Logger   *slog.Logger
}

// Pusher sends a registry's metrics on a schedule.
type Pusher struct {
	cfg  Config
	g    prometheus.Gatherer
	api  *remote.API
	stop chan struct{}
	done chan struct{}
}

// New checks the configuration and builds the client.
func New(cfg Config, g prometheus.Gatherer) (*Pusher, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = 15 * time.Second
	}
	if len(cfg.Prefixes) == 0 {
		cfg.Prefixes = []string{"traces_"}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("remotewrite: invalid URL %q", cfg.URL)
	}
	path := strings.TrimPrefix(u.Path, "/")
	u.Path = ""
	api, err := remote.NewAPI(u.String(), remote.WithAPIPath(path), remote.WithAPILogger(cfg.Logger))
	if err != nil {
		return nil, fmt.Errorf("remotewrite: %w", err)
	}
	return &Pusher{cfg: cfg, g: g, api: api, stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Start pushes every interval until Stop.
func (p *Pusher) Start() {
	go func() {
		defer close(p.done)
		t := time.NewTicker(p.cfg.Interval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Interval)
				if err := p.Push(ctx); err != nil {
					p.cfg.Logger.Warn("remote write failed", "url", p.cfg.URL, "err", err)
				}
				cancel()
			}
		}
	}()
}

// Stop ends the schedule, after one last push so the final counts are not lost.
func (p *Pusher) Stop() {
	close(p.stop)
	<-p.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Push(ctx); err != nil {
		p.cfg.Logger.Warn("final remote write failed", "url", p.cfg.URL, "err", err)
	}
}

// Push gathers and sends once.
func (p *Pusher) Push(ctx context.Context) error {
	fams, err := p.g.Gather()
	if err != nil {
		return fmt.Errorf("remotewrite: gather: %w", err)
	}
	req := p.build(fams, time.Now().UnixMilli())
	if len(req.Timeseries) == 0 {
		return nil
	}
	if _, err := p.api.Write(ctx, remote.WriteV2MessageType, req); err != nil {
		return fmt.Errorf("remotewrite: %w", err)
	}
	return nil
}

func (p *Pusher) wanted(name string) bool {
	for _, pre := range p.cfg.Prefixes {
		if strings.HasPrefix(name, pre) {
			return true
		}
	}
	return false
}

func (p *Pusher) build(fams []*dto.MetricFamily, ts int64) *writev2.Request {
	st := writev2.NewSymbolTable()
	req := &writev2.Request{}
	add := func(name string, base []*dto.LabelPair, extra []string, v float64, typ writev2.Metadata_MetricType, help uint32) {
		lbls := []string{"__name__", name}
		for _, l := range base {
			lbls = append(lbls, l.GetName(), l.GetValue())
		}
		lbls = append(lbls, extra...)
		req.Timeseries = append(req.Timeseries, &writev2.TimeSeries{
			LabelsRefs: st.SymbolizeLabels(lbls, nil),
			Samples:    []*writev2.Sample{{Value: v, Timestamp: ts}},
			Metadata:   &writev2.Metadata{Type: typ, HelpRef: help},
		})
	}
	for _, f := range fams {
		name := f.GetName()
		if !p.wanted(name) {
			continue
		}
		help := st.Symbolize(f.GetHelp())
		for _, m := range f.Metric {
			switch {
			case m.Counter != nil:
				add(name, m.Label, nil, m.Counter.GetValue(), writev2.Metadata_METRIC_TYPE_COUNTER, help)
			case m.Gauge != nil:
				add(name, m.Label, nil, m.Gauge.GetValue(), writev2.Metadata_METRIC_TYPE_GAUGE, help)
			case m.Histogram != nil:
				h := m.Histogram
				for _, b := range h.Bucket {
					add(name+"_bucket", m.Label, []string{"le", formatLe(b.GetUpperBound())}, float64(b.GetCumulativeCount()), writev2.Metadata_METRIC_TYPE_HISTOGRAM, help)
				}
				add(name+"_bucket", m.Label, []string{"le", "+Inf"}, float64(h.GetSampleCount()), writev2.Metadata_METRIC_TYPE_HISTOGRAM, help)
				add(name+"_sum", m.Label, nil, h.GetSampleSum(), writev2.Metadata_METRIC_TYPE_HISTOGRAM, help)
				add(name+"_count", m.Label, nil, float64(h.GetSampleCount()), writev2.Metadata_METRIC_TYPE_HISTOGRAM, help)
			}
		}
	}
	req.Symbols = st.Symbols()
	return req
}

func formatLe(v float64) string {
	if math.IsInf(v, 1) {
		return "+Inf"
	}
	return fmt.Sprint(v)
}
