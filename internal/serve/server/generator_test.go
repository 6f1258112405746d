package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// TestMetricsGenerator sends the guide's traces through the real SDK and reads the RED metrics and
// the service graph back from /metrics with Prometheus' parser.
func TestMetricsGenerator(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	exportGuide(t, s, "grpc")
	fams := scrape(t, s)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"traces_spanmetrics_calls_total", map[string]string{"service": "task-api", "span_name": "pymongo.insert_one", "span_kind": "SPAN_KIND_CLIENT"}, 1},
		{"traces_spanmetrics_calls_total", map[string]string{"service": "task-api", "span_name": "check_authorization", "status_code": "STATUS_CODE_ERROR"}, 1},
		{"traces_spanmetrics_calls_total", map[string]string{"service": "task-api", "span_name": "process_single_task"}, 5},
		{"traces_spanmetrics_calls_total", map[string]string{"service": "notification-service"}, 2},
		{"traces_service_graph_request_total", map[string]string{"client": "task-api", "server": "notification-service"}, 1},
		{"traces_service_graph_request_total", map[string]string{"client": "task-api", "server": "mongodb", "connection_type": "database"}, 1},
	} {
		if got := metricValue(fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Why-slow now knows the operation's usual duration from span metrics.
	code, body := httpGet(t, fmt.Sprintf("http://%s/api/analysis/traces/4bf92f3577b34da6a3ce929d0e0e4736", s.HTTPAddr), "")
	if code != 200 || !bytes.Contains(body, []byte(`"typicalNanos":`)) {
		t.Fatalf("analysis: %d %s", code, body)
	}
}

// TestZipkinIngest posts Zipkin v2 JSON and reads the trace back through Tempo's API.
func TestZipkinIngest(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	start := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
	body := fmt.Sprintf(`[
	  {"traceId":"5af7183fb1d4cf5f","id":"6b221d5bc9e6496c","name":"get /api/tasks","kind":"SERVER","timestamp":%d,"duration":150000,
	   "localEndpoint":{"serviceName":"frontend"},"tags":{"http.method":"GET"}},
	  {"traceId":"5af7183fb1d4cf5f","id":"352bff9a74ca9ad2","parentId":"6b221d5bc9e6496c","name":"query","kind":"CLIENT",
	   "timestamp":%d,"duration":50000,"localEndpoint":{"serviceName":"frontend"},"tags":{"error":"timeout"},
	   "annotations":[{"timestamp":%d,"value":"retry"}]}
	]`, start.UnixMicro(), start.UnixMicro()+10000, start.UnixMicro()+20000)
	resp, err := http.Post("http://"+s.ZipkinAddr+"/api/v2/spans", "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("zipkin POST: %d", resp.StatusCode)
	}
	tid := mustHex("00000000000000005af7183fb1d4cf5f")
	res := &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: sv("frontend")}}}
	got := fetchTrace(t, s, tid)
	if len(got) != 2 {
		t.Fatalf("%d spans read back, want 2", len(got))
	}
	resBytes, _ := proto.MarshalOptions{Deterministic: true}.Marshal(res)
	for _, fs := range got {
		if fs.resource != string(resBytes) {
			t.Errorf("span %s: resource is not service.name=frontend", fs.span.Name)
		}
		switch fs.span.Name {
		case "get /api/tasks":
			if fs.span.Kind != tracepb.Span_SPAN_KIND_SERVER || fs.span.EndTimeUnixNano-fs.span.StartTimeUnixNano != 150e6 ||
				uint64(start.UnixNano()) != fs.span.StartTimeUnixNano {
				t.Errorf("server span: %v", fs.span)
			}
		case "query":
			if fs.span.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || len(fs.span.Events) != 1 || fs.span.Events[0].Name != "retry" ||
				fmt.Sprintf("%x", fs.span.ParentSpanId) != "6b221d5bc9e6496c" {
				t.Errorf("client span: %v", fs.span)
			}
		default:
			t.Errorf("unexpected span %q", fs.span.Name)
		}
	}
}

func TestServiceGraphAndOperationsAPI(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	exportGuide(t, s, "grpc")
	code, body := httpGet(t, "http://"+s.HTTPAddr+"/api/servicegraph", "")
	var g struct {
		Nodes []struct{ Name, Kind string }
		Edges []struct {
			Client, Server, ConnectionType string
			Requests                       int
			ClientP95Nanos                 int64
		}
	}
	if code != 200 || json.Unmarshal(body, &g) != nil {
		t.Fatalf("servicegraph: %d %s", code, body)
	}
	kinds := map[string]string{}
	for _, n := range g.Nodes {
		kinds[n.Name] = n.Kind
	}
	if kinds["task-api"] != "service" || kinds["notification-service"] != "service" || kinds["mongodb"] != "database" {
		t.Errorf("nodes %v", g.Nodes)
	}
	found := false
	for _, e := range g.Edges {
		if e.Client == "task-api" && e.Server == "mongodb" && e.ConnectionType == "database" && e.Requests == 1 && e.ClientP95Nanos > 0 {
			found = true
		}
	}
	if !found {
		t.Errorf("no task-api → mongodb edge in %s", body)
	}
	code, body = httpGet(t, "http://"+s.HTTPAddr+"/api/services/task-api/operations", "")
	var ops struct {
		Operations []struct {
			SpanName      string
			Calls, Errors int
			P95Nanos      int64
		}
	}
	if code != 200 || json.Unmarshal(body, &ops) != nil {
		t.Fatalf("operations: %d %s", code, body)
	}
	byName := map[string]int{}
	for _, o := range ops.Operations {
		byName[o.SpanName] = o.Calls
		if o.SpanName == "process_single_task" && (o.Calls != 5 || o.Errors != 2) {
			t.Errorf("process_single_task: %+v", o)
		}
	}
	if byName["pymongo.insert_one"] != 1 {
		t.Errorf("operations %s", body)
	}
}
