package server_test

import (
	"encoding/hex"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// Each per-query limit, hit on purpose through the real HTTP API.
func TestQueryLimits(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Ingest.MaxRequestBytes = 16 << 20
	cfg.Query.MaxResultLimit = 2
	cfg.Query.MaxResponseSeries = 2
	cfg.Query.MaxBytesPerTagValuesQuery = 40
	cfg.Query.MaxBytesPerTrace = 100_000
	s := startServer(t, cfg)
	traces, _ := exportGuide(t, s, "grpc")
	base := "http://" + s.HTTPAddr

	// limit is capped at max_result_limit.
	var sr struct{ Traces []json.RawMessage }
	getJSON(t, base, "/api/search?q="+url.QueryEscape("{ }")+"&limit=100", 200, &sr)
	if len(traces) <= 2 || len(sr.Traces) != 2 {
		t.Fatalf("limit=100 with max_result_limit 2: %d traces of %d", len(sr.Traces), len(traces))
	}
	// spss past max_spans_per_span_set, a range past max_duration: clear 400s.
	if body := getJSON(t, base, "/api/search?q="+url.QueryEscape("{ }")+"&spss=101", 400, nil); !strings.Contains(body, "spss 101") {
		t.Fatalf("spss over the cap: %s", body)
	}
	if body := getJSON(t, base, "/api/search?start=1000&end=1000000", 400, nil); !strings.Contains(body, "over the most allowed") {
		t.Fatalf("range over max_duration: %s", body)
	}
	if body := getJSON(t, base, "/api/metrics/query_range?q="+url.QueryEscape("{ } | rate()")+"&start=1000&end=1000000", 400, nil); !strings.Contains(body, "over the most allowed") {
		t.Fatalf("metrics range over metrics_max_duration: %s", body)
	}

	// Series past max_response_series are left out, and the answer says so.
	var mr struct {
		Series  []json.RawMessage
		Status  string
		Message string
	}
	getJSON(t, base, "/api/metrics/query_range?q="+url.QueryEscape("{ } | rate() by (name)"), 200, &mr)
	if len(mr.Series) != 2 || mr.Status != "PARTIAL" || !strings.Contains(mr.Message, "more than 2 series") {
		t.Fatalf("by(name) over max_response_series: %d series, status %q %q", len(mr.Series), mr.Status, mr.Message)
	}

	// Tag values stop at max_bytes_per_tag_values_query: the guide has over a dozen span names.
	var tv struct{ TagValues []struct{ Value string } }
	getJSON(t, base, "/api/v2/search/tag/name/values", 200, &tv)
	size := 0
	for _, v := range tv.TagValues {
		size += len(v.Value) + 16
	}
	if len(tv.TagValues) == 0 || len(tv.TagValues) >= 10 || size-len(tv.TagValues[len(tv.TagValues)-1].Value)-16 >= 40 {
		t.Fatalf("tag values under a 40-byte cap: %d values, %d bytes", len(tv.TagValues), size)
	}

	// A trace over max_bytes_per_trace comes back truncated and marked partial, in JSON and
	// protobuf alike.
	id := bigTrace(t, s, 2000, 9)
	path := "/api/v2/traces/" + hex.EncodeToString(id[:])
	var tr struct {
		Trace struct {
			ResourceSpans []struct {
				ScopeSpans []struct{ Spans []json.RawMessage }
			}
		}
		Status, Message string
	}
	getJSON(t, base, path, 200, &tr)
	n := 0
	for _, rs := range tr.Trace.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			n += len(ss.Spans)
		}
	}
	if n == 0 || n >= 2000 || tr.Status != "PARTIAL" || !strings.Contains(tr.Message, "100000") {
		t.Fatalf("trace over the byte cap: %d of 2000 spans, status %q %q", n, tr.Status, tr.Message)
	}
	code, body := httpGet(t, base+path, "application/protobuf")
	if code != 200 {
		t.Fatalf("protobuf: %d", code)
	}
	var inner []byte
	var status uint64
	for b := body; len(b) > 0; {
		num, typ, l := protowire.ConsumeTag(b)
		b = b[l:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			inner, l = protowire.ConsumeBytes(b)
		case num == 3 && typ == protowire.VarintType:
			status, l = protowire.ConsumeVarint(b)
		default:
			l = protowire.ConsumeFieldValue(num, typ, b)
		}
		if l < 0 {
			t.Fatal("malformed TraceByIDResponse")
		}
		b = b[l:]
	}
	td := &tracepb.TracesData{}
	if err := proto.Unmarshal(inner, td); err != nil {
		t.Fatal(err)
	}
	pn := 0
	for _, rs := range td.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			pn += len(ss.Spans)
		}
	}
	if pn != n || status != 1 {
		t.Fatalf("protobuf answer: %d spans (JSON had %d), status %d, want PARTIAL (1)", pn, n, status)
	}
}
