package server_test

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestJaegerUICalls makes the requests today's Jaeger UI makes, shaped as its source builds
// them (packages/jaeger-ui/src/api/v3/client.ts for search, services and traces;
// src/api/jaeger.ts for the Monitor tab), at the root and under the /jaeger base path.
func TestJaegerUICalls(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	traces, _ := exportGuide(t, s, "grpc")
	now := time.Now()
	for _, prefix := range []string{"", "/jaeger"} {
		base := "http://" + s.HTTPAddr + prefix
		get := func(path string, q url.Values, out any) {
			t.Helper()
			u := base + path
			if q != nil {
				u += "?" + q.Encode()
			}
			code, body := httpGet(t, u, "")
			if code != 200 {
				t.Fatalf("GET %s: %d %s", u, code, body)
			}
			if err := json.Unmarshal(body, out); err != nil {
				t.Fatalf("GET %s: %v\n%s", u, err, body)
			}
		}

		var services struct{ Services []string }
		get("/api/v3/services", nil, &services)
		if !strings.Contains(strings.Join(services.Services, ","), "task-api") {
			t.Errorf("%s services: %v", prefix, services.Services)
		}
		var ops struct {
			Operations []struct{ Name, SpanKind string }
		}
		get("/api/v3/operations", url.Values{"service": {"task-api"}}, &ops)
		if len(ops.Operations) == 0 {
			t.Errorf("%s operations: none", prefix)
		}

		// The search form: service, limit, and start/end turned into ISO times by toISOString.
		iso := func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
		var sums struct {
			Summaries []struct {
				TraceID, RootServiceName, RootOperationName string
				MinStartTimeUnixNano, MaxEndTimeUnixNano    string
				SpanCount, ErrorSpanCount, OrphanSpanCount  int
				Services                                    []struct {
					Name                      string
					SpanCount, ErrorSpanCount int
				}
			}
		}
		get("/api/v3/trace-summaries", url.Values{"query.serviceName": {"task-api"}, "query.searchDepth": {"20"},
			"query.startTimeMin": {iso(now.Add(-time.Hour))}, "query.startTimeMax": {iso(now.Add(time.Minute))}}, &sums)
		byID := map[string]int{}
		for i, sm := range sums.Summaries {
			byID[sm.TraceID] = i
		}
		for _, tr := range traces {
			i, ok := byID[tr.TraceID.String()]
			if !ok {
				if tr.RootService == "task-api" {
					t.Errorf("%s trace-summaries lacks %s (%s)", prefix, tr.TraceID, tr.Name)
				}
				continue
			}
			sm := sums.Summaries[i]
			if sm.SpanCount != tr.SpanCount || sm.RootServiceName != tr.RootService || sm.RootOperationName != tr.RootName || sm.RootOperationName == "" ||
				len(sm.Services) == 0 || sm.MinStartTimeUnixNano == "" || atoi(sm.MaxEndTimeUnixNano) <= atoi(sm.MinStartTimeUnixNano) {
				t.Errorf("%s summary of %s: %+v (want %d spans)", prefix, tr.Name, sm, tr.SpanCount)
			}
		}
		var errTraces int
		for _, sm := range sums.Summaries {
			if sm.ErrorSpanCount > 0 {
				errTraces++
			}
		}
		if errTraces == 0 {
			t.Errorf("%s: no summary counts an error span", prefix)
		}
		// With a filter the UI sends as query.attributes JSON.
		var filtered struct{ Summaries []struct{ TraceID string } }
		get("/api/v3/trace-summaries", url.Values{"query.serviceName": {"task-api"}, "query.attributes": {`{"error":"true"}`},
			"query.startTimeMin": {iso(now.Add(-time.Hour))}, "query.startTimeMax": {iso(now.Add(time.Minute))}}, &filtered)
		if len(filtered.Summaries) == 0 || len(filtered.Summaries) != errTraces {
			t.Errorf("%s error=true: %d summaries, want the %d with errors", prefix, len(filtered.Summaries), errTraces)
		}

		// Opening a row reads the whole trace from v3.
		var trace struct {
			Result struct{ ResourceSpans []json.RawMessage }
		}
		get("/api/v3/traces/"+traces[0].TraceID.String(), nil, &trace)
		if len(trace.Result.ResourceSpans) == 0 {
			t.Errorf("%s v3 trace: no resourceSpans", prefix)
		}

		// The Monitor tab, as fetchMetrics builds its query.
		mq := url.Values{"service": {"task-api"}, "endTs": {itoa(now.Add(time.Minute).UnixMilli())}, "lookback": {"3600000"},
			"step": {"60000"}, "ratePer": {"600000"}, "spanKind": {"server"}}
		type metricsResp struct {
			Name    string
			Metrics []struct {
				Labels       []struct{ Name, Value string }
				MetricPoints []struct {
					GaugeValue struct{ DoubleValue *float64 }
					Timestamp  string
				}
			}
		}
		points := func(m metricsResp, op string) []float64 {
			var out []float64
			for _, ser := range m.Metrics {
				match := op == ""
				for _, l := range ser.Labels {
					if l.Name == "operation" && l.Value == op {
						match = true
					}
				}
				if match {
					for _, p := range ser.MetricPoints {
						if p.GaugeValue.DoubleValue != nil {
							out = append(out, *p.GaugeValue.DoubleValue)
						}
						if _, err := time.Parse(time.RFC3339, p.Timestamp); err != nil {
							t.Errorf("timestamp %q: %v", p.Timestamp, err)
						}
					}
				}
			}
			return out
		}
		var calls, lat, errs metricsResp
		get("/api/metrics/calls", mq, &calls)
		if calls.Name != "service_call_rate" || len(points(calls, "")) == 0 {
			t.Errorf("%s calls: %+v", prefix, calls)
		}
		mq.Set("quantile", "0.95")
		mq.Set("groupByOperation", "true")
		get("/api/metrics/latencies", mq, &lat)
		if p := points(lat, "POST /api/tasks"); lat.Name != "service_operation_latencies" || len(p) == 0 || p[0] < 200 || p[0] > 300 {
			t.Errorf("%s latencies of POST /api/tasks (ms): %v in %+v", prefix, p, lat)
		}
		t.Logf("%s p95 latency of POST /api/tasks: %v ms", prefix, points(lat, "POST /api/tasks"))
		get("/api/metrics/errors", mq, &errs)
		t.Logf("%s error rate of DELETE: %v; %d summaries, %d with errors", prefix, points(errs, "DELETE /api/tasks/{id}"), len(sums.Summaries), errTraces)
		if p := points(errs, "DELETE /api/tasks/{id}"); len(p) == 0 || p[0] != 1 {
			t.Errorf("%s error rate of the denied delete: %v in %+v", prefix, p, errs)
		}
		if p := points(errs, "POST /api/tasks"); len(p) == 0 || p[0] != 0 {
			t.Errorf("%s error rate of create: %v", prefix, p)
		}
		var step struct{ Data int64 }
		get("/api/metrics/minstep", nil, &step)
		if step.Data <= 0 {
			t.Errorf("%s minstep: %d", prefix, step.Data)
		}
		code, body := httpGet(t, base+"/api/metrics/calls", "")
		if code != 400 || !strings.Contains(string(body), "service is required") {
			t.Errorf("%s calls without a service: %d %s", prefix, code, body)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func atoi(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }
