package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/ariadne-tracing/ariadne/internal/serve/server"
)

// shopTraffic describes the orders service's traffic for the comparison tests: a server span
// GET /orders over a client span SELECT orders, from two deployed versions.
type shopTraffic struct {
	traces int
	// plantSlow makes every statement on the unindexed note column slow (and examine many
	// rows); otherwise slowness falls on statements at random.
	plantSlow bool
	// plantErrors makes errors come only from version 1.5.0; otherwise from either.
	plantErrors bool
}

var shopStatements = []string{
	"SELECT * FROM orders WHERE id = ?",
	"SELECT * FROM orders WHERE customer_id = ?",
	"SELECT * FROM orders WHERE note LIKE ?", // note has no index
	"SELECT * FROM orders WHERE created_at > ?",
}

// sendShop exports the traffic through the real OpenTelemetry SDK over gRPC, one tracer
// provider per version as two deployments would have, and returns the IDs of the traces built
// to be slow and to fail.
func sendShop(t *testing.T, s *server.Server, tr shopTraffic, seed uint64) (slow, failed map[string]bool) {
	t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 7))
	providers := map[string]*sdktrace.TracerProvider{}
	for _, v := range []string{"1.4.0", "1.5.0"} {
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(s.GRPCAddr), otlptracegrpc.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		providers[v] = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithMaxExportBatchSize(256)),
			sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "orders"),
				attribute.String("service.version", v), attribute.String("deployment.environment", "prod"))))
	}
	slow, failed = map[string]bool{}, map[string]bool{}
	base := time.Now().Add(-10 * time.Minute)
	for i := range tr.traces {
		version := []string{"1.4.0", "1.5.0"}[rng.IntN(2)]
		stmt := shopStatements[rng.IntN(len(shopStatements))]
		unindexed := stmt == shopStatements[2]
		isSlow := rng.Float64() < 0.25
		if tr.plantSlow {
			isSlow = unindexed
		}
		isErr := rng.Float64() < 0.1
		if tr.plantErrors {
			isErr = version == "1.5.0" && rng.Float64() < 0.3
		}
		dbDur := time.Duration(5+rng.IntN(40)) * time.Millisecond
		rows := int64(1 + rng.IntN(20))
		if isSlow {
			dbDur = time.Duration(600+rng.IntN(400)) * time.Millisecond
		}
		if tr.plantSlow && unindexed {
			rows = 100000 + rng.Int64N(50000)
		}
		start := base.Add(time.Duration(i) * 100 * time.Millisecond)
		tracer := providers[version].Tracer("orders")
		c, root := tracer.Start(ctx, "GET /orders", trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", "GET"), attribute.String("http.route", "/orders"),
				attribute.String("user.id", fmt.Sprintf("user-%d", i)), attribute.String("region", []string{"eu", "us", "ap"}[rng.IntN(3)]),
				attribute.Int("http.response.body.size", 200+rng.IntN(5000))))
		_, db := tracer.Start(c, "SELECT orders", trace.WithTimestamp(start.Add(2*time.Millisecond)), trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.system", "postgresql"), attribute.String("db.statement", stmt),
				attribute.Int64("db.rows_examined", rows), attribute.String("request.id", fmt.Sprintf("req-%x", rng.Uint64()))))
		db.AddEvent("query.sent", trace.WithTimestamp(start.Add(3*time.Millisecond)), trace.WithAttributes(attribute.String("pool", "primary")))
		db.End(trace.WithTimestamp(start.Add(2*time.Millisecond + dbDur)))
		if isErr {
			root.SetStatus(codes.Error, "upstream failed")
		}
		root.End(trace.WithTimestamp(start.Add(5*time.Millisecond + dbDur)))
		id := root.SpanContext().TraceID().String()
		if isSlow {
			slow[id] = true
		}
		if isErr {
			failed[id] = true
		}
	}
	for _, tp := range providers {
		if err := tp.Shutdown(ctx); err != nil {
			t.Fatalf("export: %v", err)
		}
	}
	return slow, failed
}

type compareAnswer struct {
	SelectionSpans, BaselineSpans int64
	Values                        []struct {
		Key                       string
		Text                      string
		Selection, Baseline       int64
		SelectionPct, BaselinePct float64
		Score                     float64
		Significant               bool
		ExampleTraceIDs           []string
	}
	Shifts []struct {
		Key                 string
		Selection, Baseline struct{ Count, P50, P90 float64 }
		D                   float64
		Significant         bool
		ExampleTraceIDs     []string
	}
	HighCardinality, Tested []string
}

func getCompare(t *testing.T, s *server.Server, sel, baseline string) compareAnswer {
	t.Helper()
	u := "http://" + s.HTTPAddr + "/api/analysis/compare?q=" + url.QueryEscape(sel)
	if baseline != "" {
		u += "&baseline=" + url.QueryEscape(baseline)
	}
	code, body := httpGet(t, u, "")
	if code != 200 {
		t.Fatalf("compare %s: %d %s", sel, code, body)
	}
	var a compareAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

// waitSpans waits until the last hour holds want spans: every span of {} is the selection.
func waitSpans(t *testing.T, s *server.Server, want int) {
	t.Helper()
	waitFor(t, "all spans searchable", func() bool {
		code, body := httpGet(t, "http://"+s.HTTPAddr+"/api/analysis/compare?q="+url.QueryEscape("{}"), "")
		var a compareAnswer
		return code == 200 && json.Unmarshal(body, &a) == nil && a.SelectionSpans == int64(want)
	})
}

// TestComparePlantedCause: slow spans are exactly the statements on the unindexed column, and
// errors come only from version 1.5.0. Half the traffic is in a block, half in the head. The
// planted value ranks first and significant, for each selection, with example traces that
// really are slow (failed); the examined-rows distribution is the top shift; the per-request
// IDs are recognised as identifiers.
func TestComparePlantedCause(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	slow, failed := sendShop(t, s, shopTraffic{traces: 300, plantSlow: true, plantErrors: true}, 1)
	waitSpans(t, s, 600)
	if err := s.Store.Flush(); err != nil {
		t.Fatal(err)
	}
	slow2, failed2 := sendShop(t, s, shopTraffic{traces: 300, plantSlow: true, plantErrors: true}, 2)
	waitSpans(t, s, 1200)
	for id := range slow2 {
		slow[id] = true
	}
	for id := range failed2 {
		failed[id] = true
	}

	a := getCompare(t, s, "{ duration > 500ms }", "")
	if len(a.Values) == 0 || a.Values[0].Key != "span.db.statement" || a.Values[0].Text != `"SELECT * FROM orders WHERE note LIKE ?"` || !a.Values[0].Significant {
		t.Fatalf("slow: first value = %+v, want the unindexed statement", a.Values)
	}
	if int(a.Values[0].Selection) != len(slow) || a.Values[0].Baseline != 0 || a.SelectionSpans != 2*int64(len(slow)) {
		t.Errorf("slow: counts %+v, selection %d spans, want %d slow statements", a.Values[0], a.SelectionSpans, len(slow))
	}
	for _, id := range a.Values[0].ExampleTraceIDs {
		if !slow[id] {
			t.Errorf("example trace %s is not one of the slow ones", id)
		}
	}
	if len(a.Values[0].ExampleTraceIDs) == 0 {
		t.Error("no example traces")
	}
	if len(a.Shifts) == 0 || a.Shifts[0].Key != "span.db.rows_examined" || !a.Shifts[0].Significant || a.Shifts[0].Selection.P50 < 100000 || a.Shifts[0].Baseline.P50 > 20 {
		t.Errorf("slow: first shift = %+v, want db.rows_examined", a.Shifts)
	}
	if !contains(a.HighCardinality, "span.user.id") || !contains(a.HighCardinality, "span.request.id") || !contains(a.Tested, "duration") {
		t.Errorf("high-cardinality %v, tested %v", a.HighCardinality, a.Tested)
	}
	for _, v := range a.Values {
		if v.Key == "span.user.id" || v.Key == "duration" {
			t.Errorf("listed %s", v.Key)
		}
	}

	e := getCompare(t, s, "{ status = error }", "")
	if len(e.Values) == 0 || e.Values[0].Key != "resource.service.version" || e.Values[0].Text != `"1.5.0"` || !e.Values[0].Significant ||
		e.Values[0].SelectionPct != 100 {
		t.Fatalf("errors: first value = %+v, want service.version 1.5.0", e.Values)
	}
	if int(e.SelectionSpans) != len(failed) {
		t.Errorf("errors: %d selected spans, want %d", e.SelectionSpans, len(failed))
	}
	for _, id := range e.Values[0].ExampleTraceIDs {
		if !failed[id] {
			t.Errorf("example trace %s did not fail", id)
		}
	}
	// A given baseline: the error spans against every server span (less themselves).
	g := getCompare(t, s, "{ status = error }", `{ kind = server }`)
	if len(g.Values) == 0 || g.Values[0].Key != "resource.service.version" || !g.Values[0].Significant ||
		g.BaselineSpans != 600-int64(len(failed)) {
		t.Errorf("errors against server spans: baseline %d spans, %+v", g.BaselineSpans, g.Values)
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// TestCompareNoCause: slowness and errors fall at random; nothing is significant.
func TestCompareNoCause(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	sendShop(t, s, shopTraffic{traces: 600}, 3)
	waitSpans(t, s, 1200)
	for _, sel := range []string{"{ duration > 500ms }", "{ status = error }", `{ span.db.system = "postgresql" && duration > 500ms }`} {
		a := getCompare(t, s, sel, "")
		if a.SelectionSpans == 0 {
			t.Fatalf("%s: nothing selected", sel)
		}
		for _, v := range a.Values {
			if v.Significant {
				t.Errorf("%s: %s=%s reported significant on random data: %+v", sel, v.Key, v.Text, v)
			}
		}
		for _, sh := range a.Shifts {
			if sh.Significant {
				t.Errorf("%s: shift of %s reported on random data: %+v", sel, sh.Key, sh)
			}
		}
	}
}

// TestCompareBadInput: a bad query gets a 400 saying what is wrong.
func TestCompareBadInput(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	base := "http://" + s.HTTPAddr + "/api/analysis/compare"
	for path, want := range map[string]int{
		"":                                      400,
		"?q=" + url.QueryEscape("{ duration >"): 400,
		"?q=" + url.QueryEscape("{} | rate()"):  400,
		"?q=" + url.QueryEscape("{}") + "&baseline=" + url.QueryEscape("{ ."): 400,
		"?q=" + url.QueryEscape("{}") + "&start=yesterday":                    400,
		"?q=" + url.QueryEscape("{}") + "&start=200&end=100":                  400,
		"?q=" + url.QueryEscape("{}") + "&limit=-3":                           400,
		"?q=" + url.QueryEscape("{}"):                                         200,
	} {
		if code, body := httpGet(t, base+path, ""); code != want {
			t.Errorf("%s: %d %s, want %d", path, code, body, want)
		}
	}
}

// TestHeatmapAPI: every span of the filter is in exactly one cell, in the row its duration
// falls in (the planted slow statements all above 300ms, the rest below), and bad requests get
// 400 with the reason.
func TestHeatmapAPI(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	slow, _ := sendShop(t, s, shopTraffic{traces: 100, plantSlow: true}, 4)
	waitSpans(t, s, 200)
	base := "http://" + s.HTTPAddr + "/api/analysis/heatmap?"
	code, body := httpGet(t, base+url.Values{"q": {`{ name = "SELECT orders" }`}, "columns": {"20"}}.Encode(), "")
	var hm struct {
		StepNanos int64     `json:"stepNanos"`
		Bounds    []int64   `json:"boundsNanos"`
		Counts    [][]int64 `json:"counts"`
		Total     int64     `json:"total"`
	}
	if code != 200 || json.Unmarshal(body, &hm) != nil {
		t.Fatalf("heatmap: %d %s", code, body)
	}
	if hm.Total != 100 || len(hm.Counts) != 20 || hm.StepNanos != int64(3*time.Minute) {
		t.Fatalf("heatmap: total %d, %d columns, step %d", hm.Total, len(hm.Counts), hm.StepNanos)
	}
	var sum, above int64
	for _, col := range hm.Counts {
		if len(col) != len(hm.Bounds)-1 {
			t.Fatalf("column of %d rows, %d bounds", len(col), len(hm.Bounds))
		}
		for r, n := range col {
			sum += n
			if hm.Bounds[r] >= 300e6 {
				above += n
			}
		}
	}
	for r := 1; r < len(hm.Bounds); r++ {
		if hm.Bounds[r] <= hm.Bounds[r-1] {
			t.Fatalf("bounds not increasing: %v", hm.Bounds)
		}
	}
	if sum != 100 || above != int64(len(slow)) {
		t.Fatalf("cells hold %d spans, %d above 300ms; want 100 and the %d slow ones", sum, above, len(slow))
	}
	for _, c := range []struct{ query, want string }{
		{"", "q is required"},
		{"q=" + url.QueryEscape("{ } | rate()"), "spanset filter"},
		{"q=" + url.QueryEscape("{ name = }"), "invalid TraceQL"},
		{"q=" + url.QueryEscape("{ }") + "&start=2000&end=1000", "before start"},
		{"q=" + url.QueryEscape("{ }") + "&columns=x", "columns"},
	} {
		if code, body := httpGet(t, base+c.query, ""); code != 400 || !strings.Contains(string(body), c.want) {
			t.Errorf("heatmap?%s: %d %s, want 400 with %q", c.query, code, body, c.want)
		}
	}
}
