package api

import (
	"net/http"
	"sort"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/pipeline/servicegraph"
	"github.com/ariadne-tracing/ariadne/internal/pipeline/spanmetrics"
)

// Generated metrics, read by the service map page and Jaeger's dependencies endpoint.

// GraphSource is the service graph.
type GraphSource interface{ Edges() []servicegraph.Edge }

// OperationsSource is the span metrics' RED view.
type OperationsSource interface {
	Operations(service string) []spanmetrics.OperationStats
}

// SetGenerated gives the API the metrics generator's views; counts are since start.
func (s *Server) SetGenerated(g GraphSource, ops OperationsSource, since time.Time) {
	s.graph, s.ops, s.generatedSince = g, ops, since
}

type edgeJSON struct {
	Client         string  `json:"client"`
	Server         string  `json:"server"`
	ConnectionType string  `json:"connectionType"`
	Requests       uint64  `json:"requests"`
	Failed         uint64  `json:"failed"`
	RatePerSecond  float64 `json:"ratePerSecond"`
	ErrorShare     float64 `json:"errorShare"`
	ClientP95Nanos int64   `json:"clientP95Nanos"`
	ServerP95Nanos int64   `json:"serverP95Nanos"`
}

type nodeJSON struct {
	Name string `json:"name"`
	// Kind is service, database, messaging or user.
	Kind string `json:"kind"`
}

// handleServiceGraph answers the service map: nodes and edges with rate, error share and p95,
// counted since the server started.
func (s *Server) handleServiceGraph(w http.ResponseWriter, r *http.Request) {
	if s.graph == nil {
		writeError(w, http.StatusNotFound, "the metrics generator is disabled (metrics_generator.disabled)")
		return
	}
	secs := max(time.Since(s.generatedSince).Seconds(), 1)
	nodes := map[string]string{}
	out := struct {
		SinceUnix int64      `json:"sinceUnix"`
		Nodes     []nodeJSON `json:"nodes"`
		Edges     []edgeJSON `json:"edges"`
	}{SinceUnix: s.generatedSince.Unix(), Nodes: []nodeJSON{}, Edges: []edgeJSON{}}
	for _, e := range s.graph.Edges() {
		ej := edgeJSON{Client: e.Client, Server: e.Server, ConnectionType: e.ConnectionType, Requests: e.Requests, Failed: e.Failed,
			RatePerSecond: float64(e.Requests) / secs, ClientP95Nanos: int64(e.ClientP95), ServerP95Nanos: int64(e.ServerP95)}
		if e.Requests > 0 {
			ej.ErrorShare = float64(e.Failed) / float64(e.Requests)
		}
		out.Edges = append(out.Edges, ej)
		clientKind, serverKind := "service", "service"
		switch e.ConnectionType {
		case servicegraph.ConnectionDatabase:
			serverKind = "database"
		case servicegraph.ConnectionMessaging:
			serverKind = "messaging"
		}
		if e.Client == servicegraph.UserNode {
			clientKind = "user"
		}
		if _, ok := nodes[e.Client]; !ok || clientKind == "service" {
			nodes[e.Client] = clientKind
		}
		if _, ok := nodes[e.Server]; !ok {
			nodes[e.Server] = serverKind
		}
	}
	for n, k := range nodes {
		out.Nodes = append(out.Nodes, nodeJSON{n, k})
	}
	sort.Slice(out.Nodes, func(i, j int) bool { return out.Nodes[i].Name < out.Nodes[j].Name })
	sort.Slice(out.Edges, func(i, j int) bool {
		if out.Edges[i].Client != out.Edges[j].Client {
			return out.Edges[i].Client < out.Edges[j].Client
		}
		return out.Edges[i].Server < out.Edges[j].Server
	})
	writeJSON(w, http.StatusOK, out)
}

type operationJSON struct {
	SpanName      string  `json:"spanName"`
	SpanKind      string  `json:"spanKind"`
	Calls         uint64  `json:"calls"`
	Errors        uint64  `json:"errors"`
	RatePerSecond float64 `json:"ratePerSecond"`
	ErrorShare    float64 `json:"errorShare"`
	AvgNanos      int64   `json:"avgNanos"`
	P50Nanos      int64   `json:"p50Nanos"`
	P95Nanos      int64   `json:"p95Nanos"`
}

// handleOperations answers a service's RED table: rate, errors and duration per operation.
func (s *Server) handleOperations(w http.ResponseWriter, r *http.Request) {
	if s.ops == nil {
		writeError(w, http.StatusNotFound, "the metrics generator is disabled (metrics_generator.disabled)")
		return
	}
	secs := max(time.Since(s.generatedSince).Seconds(), 1)
	out := struct {
		Service    string          `json:"service"`
		SinceUnix  int64           `json:"sinceUnix"`
		Operations []operationJSON `json:"operations"`
	}{Service: r.PathValue("service"), SinceUnix: s.generatedSince.Unix(), Operations: []operationJSON{}}
	for _, o := range s.ops.Operations(out.Service) {
		oj := operationJSON{SpanName: o.SpanName, SpanKind: o.SpanKind, Calls: o.Calls, Errors: o.Errors,
			RatePerSecond: float64(o.Calls) / secs, P50Nanos: int64(o.P50), P95Nanos: int64(o.P95)}
		if o.Calls > 0 {
			oj.ErrorShare = float64(o.Errors) / float64(o.Calls)
			oj.AvgNanos = int64(o.Total) / int64(o.Calls)
		}
		out.Operations = append(out.Operations, oj)
	}
	writeJSON(w, http.StatusOK, out)
}
