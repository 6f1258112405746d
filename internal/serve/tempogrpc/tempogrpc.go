// Package tempogrpc serves Grafana Tempo's streaming query API, the gRPC service
// tempopb.StreamingQuerier, from Ariadne's TraceQL engine: Search streams the traces found so far
// after the head and after each block, as Grafana's Tempo data source shows them while a search
// runs; MetricsQueryRange and MetricsQueryInstant answer TraceQL metrics queries.
//
// Grafana calls it over plaintext HTTP/2 (h2c) on the data source URL's own host and port, so the
// service is mounted on the query listener next to the HTTP API (see Handler); it never has a
// port of its own.
package tempogrpc

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ariadne-tracing/ariadne/internal/read/search"
	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/serve/tempogrpc/streamingpb"
)

// ServiceName is the gRPC service served, as Grafana calls it.
const ServiceName = "tempopb.StreamingQuerier"

// queryTimeout bounds one call, as the HTTP endpoints bound theirs.
const queryTimeout = 30 * time.Second

// NewServer returns a gRPC server with the StreamingQuerier service, answering from e; opts
// add to it (the server package's admission interceptor).
func NewServer(e *search.Engine, log *slog.Logger, opts ...grpc.ServerOption) *grpc.Server {
	if log == nil {
		log = slog.Default()
	}
	g := grpc.NewServer(opts...)
	g.RegisterService(&serviceDesc, &service{e: e, log: log})
	return g
}

// Handler answers gRPC requests (HTTP/2 with a gRPC content type) with g and everything else
// with next, so that both share one listener. The http.Server serving it must accept
// unencrypted HTTP/2 (see EnableH2C).
func Handler(g *grpc.Server, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			g.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// EnableH2C makes hs accept HTTP/2 without TLS (prior knowledge, as gRPC clients speak it) in
// addition to HTTP/1.1 and, when hs serves TLS, HTTP/2 over TLS, on the same listener.
func EnableH2C(hs *http.Server) {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	hs.Protocols = &p
}

type service struct {
	e   *search.Engine
	log *slog.Logger
}

// The service's description, written by hand rather than generated: three server-streaming
// methods.
var serviceDesc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{
		{StreamName: "Search", ServerStreams: true, Handler: func(srv any, st grpc.ServerStream) error {
			req := new(streamingpb.SearchRequest)
			if err := st.RecvMsg(req); err != nil {
				return err
			}
			return srv.(*service).search(req, st)
		}},
		{StreamName: "MetricsQueryRange", ServerStreams: true, Handler: func(srv any, st grpc.ServerStream) error {
			req := new(streamingpb.QueryRangeRequest)
			if err := st.RecvMsg(req); err != nil {
				return err
			}
			return srv.(*service).queryRange(req, st)
		}},
		{StreamName: "MetricsQueryInstant", ServerStreams: true, Handler: func(srv any, st grpc.ServerStream) error {
			req := new(streamingpb.QueryInstantRequest)
			if err := st.RecvMsg(req); err != nil {
				return err
			}
			return srv.(*service).queryInstant(req, st)
		}},
	},
	Metadata: "streaming.proto",
}

// parseSearch reads a search's TraceQL; an empty query, and Grafana's "Save & test" {}, match
// every trace.
func parseSearch(src string) (*traceql.Query, error) {
	if strings.TrimSpace(src) == "" {
		src = "{ }"
	}
	q, err := traceql.Parse(src)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid TraceQL query: %v", err)
	}
	if q.IsMetrics() {
		return nil, status.Error(codes.InvalidArgument, "a metrics query is answered by MetricsQueryRange")
	}
	return q, nil
}

func (s *service) search(req *streamingpb.SearchRequest, st grpc.ServerStream) error {
	if len(req.Tags) > 0 && strings.TrimSpace(req.Query) == "" {
		return status.Error(codes.InvalidArgument, "tag search is not served over gRPC: send the query as TraceQL")
	}
	q, err := parseSearch(req.Query)
	if err != nil {
		return err
	}
	sreq := search.Request{Query: q, Limit: int(req.Limit), SpansPerSpanSet: int(req.SpansPerSpanSet),
		MinDuration: time.Duration(req.MinDurationMs) * time.Millisecond, MaxDuration: time.Duration(req.MaxDurationMs) * time.Millisecond}
	if req.Start != 0 {
		sreq.Start = time.Unix(int64(req.Start), 0)
	}
	if req.End != 0 {
		sreq.End = time.Unix(int64(req.End), 0)
	}
	if !sreq.Start.IsZero() && !sreq.End.IsZero() && sreq.End.Before(sreq.Start) {
		return status.Error(codes.InvalidArgument, "end is before start")
	}
	ctx, cancel := context.WithTimeout(st.Context(), queryTimeout)
	defer cancel()

	// Each message carries the traces not sent before; metrics are the totals so far. A trace
	// sent early stays sent: Grafana keeps what it has received and adds to it.
	sent := map[[16]byte]bool{}
	jobs := 0
	var sendErr error
	send := func(r *search.Result, final bool) {
		if sendErr != nil {
			return
		}
		msg := &streamingpb.SearchResponse{Metrics: metricsPB(r.Metrics, jobs, final)}
		for _, t := range r.Traces {
			if !sent[t.ID] {
				sent[t.ID] = true
				msg.Traces = append(msg.Traces, tracePB(t))
			}
		}
		if len(msg.Traces) == 0 && !final {
			return
		}
		sendErr = st.SendMsg(msg)
		if sendErr != nil {
			cancel() // the client is gone: stop reading blocks for it
		}
	}
	sreq.Progress = func(r *search.Result) {
		jobs++
		send(r, false)
	}
	res, err := s.e.Search(ctx, sreq)
	if sendErr != nil {
		return sendErr
	}
	if err != nil {
		return s.failed("search", req.Query, err)
	}
	jobs++
	send(res, true)
	return sendErr
}

// failed turns an engine error into the gRPC status a client can act on.
func (s *service) failed(what, q string, err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		// The deadline is this package's or, sooner, the caller's (the server's query.timeout).
		return status.Errorf(codes.DeadlineExceeded, "%s ran out of time (query timeout)", what)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	s.log.Error("gRPC "+what, "q", q, "err", err)
	return status.Error(codes.Internal, err.Error())
}

// metricsPB reports the work done. Ariadne reads the head and then each block; Grafana shows
// completed/total jobs as progress, so the total is known only at the end and, until then,
// one more than the jobs completed.
func metricsPB(m search.Metrics, jobs int, final bool) *streamingpb.SearchMetrics {
	total := jobs + 1
	if final {
		total = jobs
	}
	return &streamingpb.SearchMetrics{
		InspectedTraces: clampU32(m.InspectedTraces),
		InspectedBytes:  uint64(max(m.InspectedBytes, 0)),
		InspectedSpans:  uint64(max(m.InspectedSpans, 0)),
		TotalBlocks:     clampU32(int64(m.TotalBlocks)),
		CompletedJobs:   clampU32(int64(jobs)),
		TotalJobs:       clampU32(int64(total)),
	}
}

func clampU32(v int64) uint32 { return uint32(min(max(v, 0), math.MaxUint32)) }

func tracePB(t search.Trace) *streamingpb.TraceSearchMetadata {
	out := &streamingpb.TraceSearchMetadata{
		TraceId:           hex.EncodeToString(t.ID[:]),
		RootServiceName:   t.RootServiceName,
		RootTraceName:     t.RootTraceName,
		StartTimeUnixNano: uint64(max(t.StartUnixNano, 0)),
		DurationMs:        clampU32(t.DurationNanos / 1e6),
	}
	for _, ss := range t.SpanSets {
		set := &streamingpb.SpanSet{Matched: clampU32(int64(ss.Matched)), Attributes: attrsPB(ss.Attributes)}
		for _, sp := range ss.Spans {
			set.Spans = append(set.Spans, &streamingpb.Span{
				SpanId:            hex.EncodeToString(sp.SpanID),
				Name:              sp.Name,
				StartTimeUnixNano: uint64(max(sp.StartUnixNano, 0)),
				DurationNanos:     uint64(max(sp.DurationNanos, 0)),
				Attributes:        attrsPB(sp.Attributes),
			})
		}
		out.SpanSets = append(out.SpanSets, set)
	}
	if len(out.SpanSets) > 0 {
		out.SpanSet = out.SpanSets[0]
	}
	return out
}

func attrsPB(as []search.Attribute) []*streamingpb.KeyValue {
	var out []*streamingpb.KeyValue
	for _, a := range as {
		out = append(out, &streamingpb.KeyValue{Key: a.Key, Value: valuePB(a.Value)})
	}
	return out
}

func valuePB(v search.Value) *streamingpb.AnyValue {
	switch v.Type {
	case "int":
		return &streamingpb.AnyValue{Value: &streamingpb.AnyValue_IntValue{IntValue: v.Int}}
	case "float":
		return &streamingpb.AnyValue{Value: &streamingpb.AnyValue_DoubleValue{DoubleValue: v.Float}}
	case "bool":
		return &streamingpb.AnyValue{Value: &streamingpb.AnyValue_BoolValue{BoolValue: v.Bool}}
	case "array":
		arr := &streamingpb.ArrayValue{}
		for _, e := range v.Array {
			arr.Values = append(arr.Values, valuePB(e))
		}
		return &streamingpb.AnyValue{Value: &streamingpb.AnyValue_ArrayValue{ArrayValue: arr}}
	}
	return &streamingpb.AnyValue{Value: &streamingpb.AnyValue_StringValue{StringValue: v.String}}
}

// unixTime reads a request's time. Grafana sends nanoseconds; a value too small to be a
// nanosecond time of this century is taken as seconds, as Tempo's HTTP API accepts both.
func unixTime(v uint64) time.Time {
	switch {
	case v == 0:
		return time.Time{}
	case v < 1e12:
		return time.Unix(int64(v), 0)
	case v > math.MaxInt64:
		return time.Unix(0, math.MaxInt64)
	}
	return time.Unix(0, int64(v))
}

// metricsRequest checks a metrics query and its range, with the HTTP endpoint's defaults: the
// last hour, and about a hundred steps over the range when no step is given.
func metricsRequest(src string, start, end uint64, step time.Duration, instant bool) (search.MetricsRequest, error) {
	var req search.MetricsRequest
	if strings.TrimSpace(src) == "" {
		return req, status.Error(codes.InvalidArgument, "query is required")
	}
	q, err := traceql.Parse(src)
	if err != nil {
		return req, status.Errorf(codes.InvalidArgument, "invalid TraceQL query: %v", err)
	}
	if !q.IsMetrics() {
		return req, status.Error(codes.InvalidArgument, "query must end in a metrics function such as rate() or quantile_over_time()")
	}
	req.Query, req.Start, req.End = q, unixTime(start), unixTime(end)
	if req.End.IsZero() {
		req.End = time.Now()
	}
	if req.Start.IsZero() {
		req.Start = req.End.Add(-time.Hour)
	}
	if !req.End.After(req.Start) {
		return req, status.Error(codes.InvalidArgument, "end must be after start")
	}
	if !instant {
		req.Step = step
		if req.Step <= 0 {
			req.Step = max(req.End.Sub(req.Start)/100, time.Second)
		}
	}
	return req, nil
}

func (s *service) queryRange(req *streamingpb.QueryRangeRequest, st grpc.ServerStream) error {
	if req.Step > math.MaxInt64 {
		return status.Error(codes.InvalidArgument, "step is too large")
	}
	mreq, err := metricsRequest(req.Query, req.Start, req.End, time.Duration(req.Step), false)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(st.Context(), queryTimeout)
	defer cancel()
	res, err := s.e.QueryRange(ctx, mreq)
	if err != nil {
		return s.failed("metrics query", req.Query, err)
	}
	msg := &streamingpb.QueryRangeResponse{Metrics: metricsPB(res.Metrics, 1, true)}
	for _, ser := range res.Series {
		ts := &streamingpb.TimeSeries{Labels: attrsPB(ser.Labels), PromLabels: ser.PromLabels()}
		for _, smp := range ser.Samples {
			ts.Samples = append(ts.Samples, &streamingpb.Sample{TimestampMs: smp.TimestampMs, Value: smp.Value})
		}
		msg.Series = append(msg.Series, ts)
	}
	return st.SendMsg(msg)
}

func (s *service) queryInstant(req *streamingpb.QueryInstantRequest, st grpc.ServerStream) error {
	mreq, err := metricsRequest(req.Query, req.Start, req.End, 0, true)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(st.Context(), queryTimeout)
	defer cancel()
	res, err := s.e.QueryRange(ctx, mreq)
	if err != nil {
		return s.failed("metrics query", req.Query, err)
	}
	msg := &streamingpb.QueryInstantResponse{Metrics: metricsPB(res.Metrics, 1, true)}
	for _, ser := range res.Series {
		// With no step the engine answers one bucket per series; their sum is the value over
		// the whole range, as the HTTP instant endpoint reports it.
		var v float64
		for _, smp := range ser.Samples {
			v += smp.Value
		}
		msg.Series = append(msg.Series, &streamingpb.InstantSeries{Labels: attrsPB(ser.Labels), Value: v, PromLabels: ser.PromLabels()})
	}
	return st.SendMsg(msg)
}
