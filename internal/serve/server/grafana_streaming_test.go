package server_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/ariadne-tracing/ariadne/internal/serve/tempogrpc/streamingpb"
	"github.com/ariadne-tracing/ariadne/internal/tools/guidetrace"
)

// grafanaClient connects as Grafana's Tempo data source backend does when its streaming
// switches are on: to the data source URL's host:port, plaintext gRPC (h2c), no other address.
func grafanaClient(t *testing.T, dataSourceURL string) *grpc.ClientConn {
	t.Helper()
	u, err := url.Parse(dataSourceURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// streamAll calls a server-streaming method and returns every message until the stream ends.
func streamAll[Resp any, PResp interface {
	*Resp
	proto.Message
}](ctx context.Context, conn *grpc.ClientConn, method string, req proto.Message) ([]PResp, error) {
	// Grafana passes the tenant (and auth, when configured) as metadata; a caller that set its
	// own keeps it.
	if md, _ := metadata.FromOutgoingContext(ctx); len(md.Get("x-scope-orgid")) == 0 && len(md.Get("authorization")) == 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, "X-Scope-OrgID", "single-tenant")
	}
	st, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, method)
	if err != nil {
		return nil, err
	}
	if err := st.SendMsg(req); err != nil {
		return nil, err
	}
	if err := st.CloseSend(); err != nil {
		return nil, err
	}
	var out []PResp
	for {
		m := PResp(new(Resp))
		err := st.RecvMsg(m)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
}

// bytesCodec sends and receives bytes as they are, so a request can be written field by field
// from the wire format and an answer read without Ariadne's own message definitions.
type bytesCodec struct{}

func (bytesCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (bytesCodec) Unmarshal(b []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), b...)
	return nil
}
func (bytesCodec) Name() string { return "proto" }

// TestGrafanaSaveAndTest sends the data source's "Save & test" streaming check, a search for
// {}, encoded by hand from the wire format, and reads the answer the same way.
func TestGrafanaSaveAndTest(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	traces, _ := exportGuide(t, s, "grpc")
	conn := grafanaClient(t, "http://"+s.HTTPAddr)

	now := time.Now()
	var req []byte
	req = protowire.AppendTag(req, 4, protowire.VarintType) // limit
	req = protowire.AppendVarint(req, 50)
	req = protowire.AppendTag(req, 5, protowire.VarintType) // start, Unix seconds
	req = protowire.AppendVarint(req, uint64(now.Add(-time.Hour).Unix()))
	req = protowire.AppendTag(req, 6, protowire.VarintType) // end
	req = protowire.AppendVarint(req, uint64(now.Add(time.Minute).Unix()))
	req = protowire.AppendTag(req, 8, protowire.BytesType) // query
	req = protowire.AppendString(req, "{}")

	st, err := conn.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true},
		"/tempopb.StreamingQuerier/Search", grpc.ForceCodec(bytesCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(&req); err != nil {
		t.Fatal(err)
	}
	st.CloseSend()
	ids := map[string]bool{}
	messages := 0
	for {
		var msg []byte
		err := st.RecvMsg(&msg)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Save & test stream: %v", err)
		}
		messages++
		// SearchResponse: field 1 repeated TraceSearchMetadata, whose field 1 is the hex trace ID.
		for len(msg) > 0 {
			num, typ, n := protowire.ConsumeTag(msg)
			if n < 0 {
				t.Fatalf("bad tag in answer")
			}
			msg = msg[n:]
			n = protowire.ConsumeFieldValue(num, typ, msg)
			if num == 1 && typ == protowire.BytesType {
				meta, _ := protowire.ConsumeBytes(msg)
				if fnum, ftyp, m := protowire.ConsumeTag(meta); fnum == 1 && ftyp == protowire.BytesType {
					id, _ := protowire.ConsumeString(meta[m:])
					ids[id] = true
				}
			}
			msg = msg[n:]
		}
	}
	if messages == 0 {
		t.Fatal("the stream ended without a message")
	}
	for _, tr := range traces {
		if !ids[tr.TraceID.String()] {
			t.Errorf("trace %s (%s) not in the {} search stream; got %d IDs", tr.TraceID, tr.Name, len(ids))
		}
	}
}

// TestGrafanaStreamingSearch checks that Search streams what it has found before it is done: a
// trace in the head arrives in an earlier message than traces in blocks, no trace is sent twice,
// and together they are what the HTTP API answers.
func TestGrafanaStreamingSearch(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	traces, _ := exportGuide(t, s, "grpc")
	if err := s.Store.Flush(); err != nil {
		t.Fatal(err)
	}
	// One more trace, which stays in the head: it is found first.
	ctx := context.Background()
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(s.GRPCAddr), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := guidetrace.NewTracerProvider(guidetrace.ServiceTaskAPI, sdktrace.WithBatcher(exp))
	_, sp := tp.Tracer("streaming-test").Start(ctx, "GET /api/tasks", oteltrace.WithTimestamp(time.Now().Add(-2*time.Minute)))
	sp.End(oteltrace.WithTimestamp(time.Now().Add(-2*time.Minute + 30*time.Millisecond)))
	live := sp.SpanContext()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if len(s.Store.Blocks()) == 0 {
		t.Fatal("no block after flush")
	}

	conn := grafanaClient(t, "http://"+s.HTTPAddr)
	now := time.Now()
	msgs, err := streamAll[pb.SearchResponse](ctx, conn, "/tempopb.StreamingQuerier/Search", &pb.SearchRequest{
		Query: "{ }", Limit: 100, SpansPerSpanSet: 3,
		Start: uint32(now.Add(-time.Hour).Unix()), End: uint32(now.Add(time.Minute).Unix()),
	})
	if err != nil {
		t.Fatalf("Search: %v", err)
	}
	if len(msgs) < 2 {
		t.Fatalf("%d messages: want the head's traces before the blocks' (a partial answer, then the rest)", len(msgs))
	}
	first := map[string]int{} // trace ID → message index
	for i, m := range msgs {
		for _, tr := range m.Traces {
			if _, dup := first[tr.TraceId]; dup {
				t.Errorf("trace %s sent twice", tr.TraceId)
			}
			first[tr.TraceId] = i
		}
	}
	if i, ok := first[live.TraceID().String()]; !ok || i != 0 {
		t.Errorf("the head's trace arrived in message %d (found %v), want the first", i, ok)
	}
	for _, tr := range traces {
		if i, ok := first[tr.TraceID.String()]; !ok || i == 0 {
			t.Errorf("block trace %s (%s): message %d, found %v; want a later message", tr.TraceID, tr.Name, i, ok)
		}
	}
	last := msgs[len(msgs)-1].Metrics
	if last == nil || last.CompletedJobs != last.TotalJobs || last.TotalJobs < 2 || last.InspectedTraces < uint32(len(traces)+1) {
		t.Errorf("final metrics %v: want all jobs (head and each block) completed and every trace inspected", last)
	}
	for _, m := range msgs[:len(msgs)-1] {
		if m.Metrics.CompletedJobs >= m.Metrics.TotalJobs {
			t.Errorf("a partial message says %d of %d jobs done", m.Metrics.CompletedJobs, m.Metrics.TotalJobs)
		}
	}

	// The same search over HTTP finds the same traces with the same summaries.
	q := url.Values{"q": {"{ }"}, "limit": {"100"}, "start": {fmt.Sprint(now.Add(-time.Hour).Unix())}, "end": {fmt.Sprint(now.Add(time.Minute).Unix())}}
	code, body := httpGet(t, "http://"+s.HTTPAddr+"/api/search?"+q.Encode(), "")
	if code != 200 {
		t.Fatalf("HTTP search: %d %s", code, body)
	}
	var hres struct {
		Traces []struct {
			TraceID, RootServiceName, RootTraceName string
			DurationMs                              uint32
		}
	}
	if err := json.Unmarshal(body, &hres); err != nil {
		t.Fatal(err)
	}
	var grpcSummaries, httpSummaries []string
	for _, m := range msgs {
		for _, tr := range m.Traces {
			grpcSummaries = append(grpcSummaries, fmt.Sprintf("%s %s %s %d", tr.TraceId, tr.RootServiceName, tr.RootTraceName, tr.DurationMs))
		}
	}
	for _, tr := range hres.Traces {
		httpSummaries = append(httpSummaries, fmt.Sprintf("%s %s %s %d", tr.TraceID, tr.RootServiceName, tr.RootTraceName, tr.DurationMs))
	}
	sort.Strings(grpcSummaries)
	sort.Strings(httpSummaries)
	if strings.Join(grpcSummaries, "\n") != strings.Join(httpSummaries, "\n") {
		t.Errorf("gRPC and HTTP searches differ:\ngRPC:\n%s\nHTTP:\n%s", strings.Join(grpcSummaries, "\n"), strings.Join(httpSummaries, "\n"))
	}

	// A filtering query: only the error traces, each with its matching spans.
	msgs, err = streamAll[pb.SearchResponse](ctx, conn, "/tempopb.StreamingQuerier/Search", &pb.SearchRequest{Query: "{ status = error }", Limit: 20})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range msgs {
		for _, tr := range m.Traces {
			n++
			if len(tr.SpanSets) == 0 || tr.SpanSets[0].Matched == 0 || len(tr.SpanSets[0].Spans) == 0 || tr.SpanSet == nil {
				t.Errorf("error trace %s without its matching spans: %v", tr.TraceId, tr.SpanSets)
			}
			for _, sp := range tr.SpanSets[0].Spans {
				if _, err := hex.DecodeString(sp.SpanId); err != nil || len(sp.SpanId) != 16 || sp.DurationNanos == 0 {
					t.Errorf("span %v", sp)
				}
			}
		}
	}
	if n == 0 {
		t.Error("{ status = error } found nothing over gRPC")
	}

	// A bad query is an InvalidArgument with the parser's message, not a broken stream.
	_, err = streamAll[pb.SearchResponse](ctx, conn, "/tempopb.StreamingQuerier/Search", &pb.SearchRequest{Query: "{ duration > }"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "invalid TraceQL") {
		t.Errorf("bad query: %v", err)
	}

	// HTTP/1.1 still works on the same port.
	if code, body := httpGet(t, "http://"+s.HTTPAddr+"/api/echo", ""); code != 200 || string(body) != "echo" {
		t.Errorf("/api/echo next to gRPC: %d %q", code, body)
	}
}

// TestGrafanaStreamingMetrics runs TraceQL metrics through MetricsQueryRange and
// MetricsQueryInstant and compares them with the HTTP endpoints' answers.
func TestGrafanaStreamingMetrics(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	exportGuide(t, s, "grpc")
	conn := grafanaClient(t, "http://"+s.HTTPAddr)
	ctx := context.Background()
	end := time.Now().Add(time.Minute).Truncate(time.Minute)
	start := end.Add(-time.Hour)
	const query = "{ } | count_over_time() by (resource.service.name)"

	msgs, err := streamAll[pb.QueryRangeResponse](ctx, conn, "/tempopb.StreamingQuerier/MetricsQueryRange", &pb.QueryRangeRequest{
		Query: query, Start: uint64(start.UnixNano()), End: uint64(end.UnixNano()), Step: uint64(time.Minute)})
	if err != nil {
		t.Fatalf("MetricsQueryRange: %v", err)
	}
	got := map[string]float64{}
	for _, m := range msgs {
		for _, ser := range m.Series {
			for _, smp := range ser.Samples {
				got[ser.PromLabels+"@"+strconv.FormatInt(smp.TimestampMs, 10)] += smp.Value
			}
		}
	}
	q := url.Values{"q": {query}, "start": {fmt.Sprint(start.Unix())}, "end": {fmt.Sprint(end.Unix())}, "step": {"60s"}}
	code, body := httpGet(t, "http://"+s.HTTPAddr+"/api/metrics/query_range?"+q.Encode(), "")
	if code != 200 {
		t.Fatalf("HTTP query_range: %d %s", code, body)
	}
	var hres struct {
		Series []struct {
			PromLabels string
			Samples    []struct {
				TimestampMs string
				Value       float64
			}
			Value *float64
		}
	}
	if err := json.Unmarshal(body, &hres); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{}
	for _, ser := range hres.Series {
		for _, smp := range ser.Samples {
			want[ser.PromLabels+"@"+smp.TimestampMs] += smp.Value
		}
	}
	if len(want) == 0 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("MetricsQueryRange differs from HTTP:\ngRPC %v\nHTTP %v", got, want)
	}
	var total float64
	for k, v := range got {
		if strings.Contains(k, "task-api") {
			total += v
		}
	}
	if total == 0 {
		t.Errorf("no task-api spans counted: %v", got)
	}

	imsgs, err := streamAll[pb.QueryInstantResponse](ctx, conn, "/tempopb.StreamingQuerier/MetricsQueryInstant", &pb.QueryInstantRequest{
		Query: query, Start: uint64(start.UnixNano()), End: uint64(end.UnixNano())})
	if err != nil {
		t.Fatalf("MetricsQueryInstant: %v", err)
	}
	delete(q, "step")
	code, body = httpGet(t, "http://"+s.HTTPAddr+"/api/metrics/query?"+q.Encode(), "")
	if code != 200 {
		t.Fatalf("HTTP query: %d %s", code, body)
	}
	hres.Series = nil
	if err := json.Unmarshal(body, &hres); err != nil {
		t.Fatal(err)
	}
	gotI, wantI := map[string]float64{}, map[string]float64{}
	for _, m := range imsgs {
		for _, ser := range m.Series {
			gotI[ser.PromLabels] = ser.Value
		}
	}
	for _, ser := range hres.Series {
		if ser.Value != nil {
			wantI[ser.PromLabels] = *ser.Value
		}
	}
	if len(wantI) == 0 || fmt.Sprint(gotI) != fmt.Sprint(wantI) {
		t.Errorf("MetricsQueryInstant differs from HTTP:\ngRPC %v\nHTTP %v", gotI, wantI)
	}

	_, err = streamAll[pb.QueryRangeResponse](ctx, conn, "/tempopb.StreamingQuerier/MetricsQueryRange", &pb.QueryRangeRequest{Query: "{ }"})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("spanset query to MetricsQueryRange: %v, want InvalidArgument", err)
	}
}
