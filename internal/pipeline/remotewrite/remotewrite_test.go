package remotewrite

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/exp/api/remote"
	writev2 "github.com/prometheus/client_golang/exp/api/remote/genproto/v2"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
)

// store is a remote-write receiver's storage, behind the client library's own write handler.
type store struct {
	mu     sync.Mutex
	series map[string]float64 // name{sorted labels} → value
}

func (s *store) Store(r *http.Request, msgType remote.WriteMessageType) (*remote.WriteResponse, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	var req writev2.Request
	if err := proto.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ts := range req.Timeseries {
		key := ""
		for i := 0; i+1 < len(ts.LabelsRefs); i += 2 {
			n, v := req.Symbols[ts.LabelsRefs[i]], req.Symbols[ts.LabelsRefs[i+1]]
			if n == "__name__" {
				key = v + key
			} else {
				key += "," + n + "=" + v
			}
		}
		s.series[key] = ts.Samples[0].Value
	}
	return remote.NewWriteResponse(), nil
}

func TestPushToARemoteWriteReceiver(t *testing.T) {
	st := &store{series: map[string]float64{}}
	srv := httptest.NewServer(remote.NewWriteHandler(st, remote.MessageTypes{remote.WriteV2MessageType}))
	defer srv.Close()

	reg := prometheus.NewRegistry()
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "traces_spanmetrics_calls_total", Help: "calls"}, []string{"service"})
	lat := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "traces_spanmetrics_latency", Help: "latency", Buckets: []float64{0.1, 1}})
	other := prometheus.NewCounter(prometheus.CounterOpts{Name: "ariadne_unrelated_total", Help: "not pushed"})
	reg.MustRegister(calls, lat, other)
	calls.WithLabelValues("task-api").Add(3)
	lat.Observe(0.05)
	lat.Observe(0.5)
	other.Inc()

	p, err := New(Config{URL: srv.URL + "/api/v1/write"}, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Push(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"traces_spanmetrics_calls_total,service=task-api": 3,
		"traces_spanmetrics_latency_bucket,le=0.1":        1,
		"traces_spanmetrics_latency_bucket,le=1":          2,
		"traces_spanmetrics_latency_bucket,le=+Inf":       2,
		"traces_spanmetrics_latency_count":                2,
		"traces_spanmetrics_latency_sum":                  0.55,
	}
	for k, v := range want {
		if got, ok := st.series[k]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if len(st.series) != len(want) {
		t.Errorf("received %d series, want %d: %v", len(st.series), len(want), st.series)
	}
	if _, err := New(Config{URL: "not a url"}, reg); err == nil {
		t.Error("bad URL accepted")
	}
}
