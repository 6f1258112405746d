package server_test

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ariadne-tracing/ariadne/internal/serve/auth"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
)

// tenantData is what one tenant sent: every marker is unique to it, so finding one in another
// tenant's answer is a leak.
type tenantData struct {
	name, service, op, key, value, traceID string
}

func (d tenantData) markers() []string { return []string{d.service, d.op, d.key, d.value, d.traceID} }

// sendAs exports one two-span trace for tenant through the real SDK (gRPC for one tenant,
// HTTP for the other), naming the tenant with the X-Scope-OrgID header.
func sendAs(t *testing.T, s *server.Server, d *tenantData, overHTTP bool) {
	t.Helper()
	sendAsWith(t, s, d, overHTTP, nil)
}

// sendAsWith is sendAs with more headers (a token).
func sendAsWith(t *testing.T, s *server.Server, d *tenantData, overHTTP bool, more map[string]string) {
	t.Helper()
	ctx := context.Background()
	hdr := map[string]string{"X-Scope-OrgID": d.name}
	for k, v := range more {
		hdr[k] = v
	}
	var exp sdktrace.SpanExporter
	var err error
	if overHTTP {
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(s.OTLPHTTPAddr), otlptracehttp.WithInsecure(), otlptracehttp.WithHeaders(hdr))
	} else {
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(s.GRPCAddr), otlptracegrpc.WithInsecure(), otlptracegrpc.WithHeaders(hdr))
	}
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", d.service))))
	start := time.Now().Add(-30 * time.Second)
	c, root := tp.Tracer("tenancy").Start(ctx, d.op, trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String(d.key, d.value)))
	_, child := tp.Tracer("tenancy").Start(c, d.op+"-db", trace.WithTimestamp(start.Add(time.Millisecond)), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system", "postgresql"), attribute.String("peer.service", d.service+"-db")))
	child.End(trace.WithTimestamp(start.Add(40 * time.Millisecond)))
	root.End(trace.WithTimestamp(start.Add(50 * time.Millisecond)))
	d.traceID = root.SpanContext().TraceID().String()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatalf("export as %s: %v", d.name, err)
	}
}

// isolationCase is one read endpoint in the matrix. path is built for the reading tenant
// (own) with the other tenant's data at hand; want is what own's answer must contain ("" when the
// endpoint shows nothing tenant-specific for this data), code its status.
type isolationCase struct {
	route string // the API's registered pattern this case covers
	path  func(own, other tenantData) string
	want  func(own tenantData) string
	code  int
}

func tenancyMatrix(start, end string) []isolationCase {
	st, _ := strconv.ParseInt(start, 10, 64)
	en, _ := strconv.ParseInt(end, 10, 64)
	v3rng := "&query.startTimeMin=" + url.QueryEscape(time.Unix(st, 0).UTC().Format(time.RFC3339)) +
		"&query.startTimeMax=" + url.QueryEscape(time.Unix(en, 0).UTC().Format(time.RFC3339))
	id := func(o tenantData) string { return o.traceID }
	svc := func(o tenantData) string { return o.service }
	op := func(o tenantData) string { return o.op }
	none := func(tenantData) string { return "" }
	rng := "start=" + start + "&end=" + end
	q := url.QueryEscape
	var cs []isolationCase
	add := func(route string, code int, want func(tenantData) string, path func(own, other tenantData) string) {
		cs = append(cs, isolationCase{route: route, path: path, want: want, code: code})
	}
	for _, r := range []string{"/api/traces/", "/api/v2/traces/", "/api/analysis/traces/", "/api/v3/traces/", "/jaeger/api/v3/traces/", "/jaeger/api/traces/"} {
		route := "GET " + r + "{id}"
		want := svc
		if r == "/api/analysis/traces/" {
			want = op
		}
		add(route, 200, want, func(own, _ tenantData) string { return r + own.traceID })
		// The other tenant's trace does not exist for this one.
		add(route, 404, none, func(_, other tenantData) string { return r + other.traceID })
	}
	add("GET /api/analysis/diff", 200, op, func(own, _ tenantData) string { return "/api/analysis/diff?a=" + own.traceID + "&b=" + own.traceID })
	add("GET /api/analysis/diff", 404, none, func(own, other tenantData) string {
		return "/api/analysis/diff?a=" + own.traceID + "&b=" + other.traceID
	})
	add("GET /api/analysis/lints", 200, none, func(tenantData, tenantData) string { return "/api/analysis/lints?since=1h" })
	// One server span per tenant: counted ("selectionSpans":1 either way), below what compare lists.
	add("GET /api/analysis/compare", 200, func(tenantData) string { return `"selectionSpans":1,` }, func(tenantData, tenantData) string {
		return "/api/analysis/compare?q=" + q("{ kind = server }") + "&" + rng
	})
	add("GET /api/analysis/heatmap", 200, func(tenantData) string { return `"total":1,` }, func(tenantData, tenantData) string {
		return "/api/analysis/heatmap?q=" + q("{ kind = server }") + "&" + rng
	})
	// Head-sampling strategies: adaptive ones come from the tenant's own span metrics.
	add("GET /api/sampling", 200, none, func(own, _ tenantData) string { return "/api/sampling?service=" + own.service })
	add("GET /api/sampling", 200, none, func(_, other tenantData) string { return "/api/sampling?service=" + other.service })
	add("GET /api/servicegraph", 200, none, func(tenantData, tenantData) string { return "/api/servicegraph" })
	// From span metrics, which live in memory: after a restart they start again empty.
	add("GET /api/services/{service}/operations", 200, none, func(own, _ tenantData) string { return "/api/services/" + own.service + "/operations" })
	add("GET /api/services/{service}/operations", 200, none, func(_, other tenantData) string { return "/api/services/" + other.service + "/operations" })
	add("GET /jaeger/api/services/{service}/operations", 200, op, func(own, _ tenantData) string { return "/jaeger/api/services/" + own.service + "/operations" })
	// Jaeger's API, served at the root and under /jaeger.
	for _, pre := range []string{"", "/jaeger"} {
		add("GET "+pre+"/api/v3/services", 200, svc, func(tenantData, tenantData) string { return pre + "/api/v3/services" })
		add("GET "+pre+"/api/v3/operations", 200, op, func(own, _ tenantData) string { return pre + "/api/v3/operations?service=" + own.service })
		add("GET "+pre+"/api/v3/operations", 200, none, func(_, other tenantData) string { return pre + "/api/v3/operations?service=" + other.service })
		for _, r := range []string{"/api/v3/traces", "/api/v3/trace-summaries"} {
			add("GET "+pre+r, 200, id, func(own, _ tenantData) string { return pre + r + "?query.service_name=" + own.service + v3rng })
			add("GET "+pre+r, 200, none, func(_, other tenantData) string { return pre + r + "?query.service_name=" + other.service + v3rng })
		}
		add("GET "+pre+"/api/v3/dependencies", 200, none, func(tenantData, tenantData) string { return pre + "/api/v3/dependencies" })
		add("GET "+pre+"/api/dependencies", 200, none, func(tenantData, tenantData) string { return pre + "/api/dependencies" })
		add("GET "+pre+"/api/services", 200, svc, func(tenantData, tenantData) string { return pre + "/api/services" })
		add("GET "+pre+"/api/operations", 200, op, func(own, _ tenantData) string { return pre + "/api/operations?service=" + own.service })
		add("GET "+pre+"/api/traces", 200, id, func(own, _ tenantData) string { return pre + "/api/traces?service=" + own.service })
		add("GET "+pre+"/api/traces", 200, none, func(_, other tenantData) string { return pre + "/api/traces?service=" + other.service })
		add("GET "+pre+"/api/metrics/minstep", 200, none, func(tenantData, tenantData) string { return pre + "/api/metrics/minstep" })
		for _, m := range []string{"calls", "latencies", "errors"} {
			add("GET "+pre+"/api/metrics/{metric}", 200, none, func(own, _ tenantData) string {
				return pre + "/api/metrics/" + m + "?service=" + own.service + "&groupByOperation=true"
			})
			add("GET "+pre+"/api/metrics/{metric}", 200, none, func(_, other tenantData) string {
				return pre + "/api/metrics/" + m + "?service=" + other.service + "&groupByOperation=true"
			})
		}
	}
	add("GET /api/search", 200, id, func(tenantData, tenantData) string { return "/api/search?q=" + q("{}") + "&" + rng })
	add("GET /api/search", 200, none, func(_, other tenantData) string {
		return "/api/search?q=" + q(`{ resource.service.name = "`+other.service+`" }`)
	})
	add("GET /api/search/tags", 200, func(o tenantData) string { return o.key }, func(tenantData, tenantData) string { return "/api/search/tags" })
	add("GET /api/v2/search/tags", 200, func(o tenantData) string { return o.key }, func(tenantData, tenantData) string { return "/api/v2/search/tags" })
	add("GET /api/search/tag/{tag}/values", 200, func(o tenantData) string { return o.value }, func(own, _ tenantData) string {
		return "/api/search/tag/" + own.key + "/values"
	})
	add("GET /api/v2/search/tag/{tag}/values", 200, svc, func(tenantData, tenantData) string { return "/api/v2/search/tag/resource.service.name/values" })
	add("GET /api/metrics/query_range", 200, svc, func(tenantData, tenantData) string {
		return "/api/metrics/query_range?q=" + q("{} | rate() by (resource.service.name)") + "&" + rng + "&step=15s"
	})
	add("GET /api/metrics/query", 200, svc, func(tenantData, tenantData) string {
		return "/api/metrics/query?q=" + q("{} | count_over_time() by (resource.service.name)") + "&" + rng
	})
	return cs
}

// routesWithoutTenantData are the API's routes that hold nothing of any tenant.
// "GET /" is the UI's files, which read only these endpoints; "GET /metrics" is checked on its
// own below (the tenant label).
// "GET /api/status/tenants" lists the tenants a caller may read (for the UI's picker), checked by
// TestUITenants.
var routesWithoutTenantData = map[string]bool{"GET /ready": true, "GET /live": true, "GET /api/echo": true, "GET /api/status/buildinfo": true,
	"GET /": true, "GET /metrics": true, "GET /api/status/tenants": true}

// refusesFederation are the paths whose answers cannot be joined across tenants exactly, so a
// federated read of them is refused (package federate says why); /api/sampling is a sender's.
// Jaeger's call rates add up; its latencies and error shares do not.
func refusesFederation(path string) bool {
	p := strings.TrimPrefix(path, "/jaeger")
	for _, r := range []string{"/api/analysis/diff", "/api/analysis/compare", "/api/analysis/heatmap", "/api/sampling",
		"/api/metrics/latencies", "/api/metrics/errors"} {
		if strings.HasPrefix(p, r) {
			return true
		}
	}
	return false
}

func postTenant(t *testing.T, url, tenant string) (int, error) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Scope-OrgID", tenant)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func getTenant(t *testing.T, url, tenant string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// TestTenantIsolationMatrix: with multi-tenancy on, tenants alpha and bravo, and a caller naming
// none, over every read endpoint of the API: each tenant sees its own data and nothing of the
// other's, naming no tenant is refused, and an endpoint added to the API without a case here
// fails the test.
func TestTenantIsolationMatrix(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.MultitenancyEnabled = true
	s := startServer(t, cfg)
	alpha := tenantData{name: "alpha", service: "alpha-svc", op: "alpha-op", key: "alpha.key", value: "alpha-value"}
	bravo := tenantData{name: "bravo", service: "bravo-svc", op: "bravo-op", key: "bravo.key", value: "bravo-value"}
	sendAs(t, s, &alpha, false)
	sendAs(t, s, &bravo, true)

	// A receiver without a tenant refuses, as Tempo does.
	ctx := context.Background()
	if _, err := grpcClient(t, s).Export(ctx, request(validSpan(9, 1))); status.Code(err) != codes.Unauthenticated {
		t.Errorf("gRPC export naming no tenant: %v, want Unauthenticated", err)
	}
	if resp, _ := post(t, "http://"+s.OTLPHTTPAddr+"/v1/traces", "application/json", []byte(`{}`)); resp.StatusCode != 401 {
		t.Errorf("HTTP export naming no tenant: %d, want 401", resp.StatusCode)
	}
	// Each tenant's data is in its own folder.
	for _, n := range []string{"alpha", "bravo"} {
		if _, err := os.Stat(filepath.Join(dir, "tenants", n, "wal")); err != nil {
			t.Errorf("tenant %s has no WAL of its own: %v", n, err)
		}
	}

	now := time.Now()
	start, end := itoa(now.Add(-time.Hour).Unix()), itoa(now.Add(time.Minute).Unix())
	cases := tenancyMatrix(start, end)
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.route] = true
	}
	for _, r := range s.API.Routes() {
		if !covered[r] && !routesWithoutTenantData[r] {
			t.Errorf("route %q is not in the tenant-isolation matrix: add a case for it", r)
		}
	}
	base := "http://" + s.HTTPAddr
	check := func(t *testing.T) {
		for _, c := range cases {
			for _, pair := range [][2]tenantData{{alpha, bravo}, {bravo, alpha}} {
				own, other := pair[0], pair[1]
				path := c.path(own, other)
				code, body := getTenant(t, base+path, own.name)
				if code != c.code {
					t.Errorf("%s as %s: %d %.300s, want %d", path, own.name, code, body, c.code)
					continue
				}
				if w := c.want(own); w != "" && !strings.Contains(body, w) {
					t.Errorf("%s as %s: own %q missing from %.300s", path, own.name, w, body)
				}
				for _, m := range other.markers() {
					// An answer may echo what was asked (the ID or service in the path); anything
					// else of the other tenant's is a leak.
					if strings.Contains(body, m) && !strings.Contains(path, m) {
						t.Errorf("%s as %s: LEAK of %s's %q in %.300s", path, own.name, other.name, m, body)
					}
				}
			}
			// Naming no tenant gets a refusal and nothing else.
			path := c.path(alpha, bravo)
			code, body := getTenant(t, base+path, "")
			if code != 401 {
				t.Errorf("%s naming no tenant: %d, want 401", path, code)
			}
			for _, m := range append(alpha.markers(), bravo.markers()...) {
				if strings.Contains(body, m) {
					t.Errorf("%s naming no tenant: LEAK of %q", path, m)
				}
			}
		}
	}
	t.Run("live", check)

	// Federated reads (alpha|bravo) answer the union of the two tenants' answers on every
	// endpoint whose answers join, and refuse the others.
	t.Run("federated", func(t *testing.T) {
		for _, c := range cases {
			path := c.path(alpha, bravo)
			codeA, bodyA := getTenant(t, base+path, "alpha")
			codeB, bodyB := getTenant(t, base+path, "bravo")
			code, body := getTenant(t, base+path, "alpha|bravo")
			if refusesFederation(path) {
				if code != 400 {
					t.Errorf("%s as alpha|bravo: %d %.200s, want 400 (not joinable)", path, code, body)
				}
				continue
			}
			want := 404
			if codeA == 200 || codeB == 200 {
				want = 200
			}
			if code != want {
				t.Errorf("%s as alpha|bravo: %d %.300s, want %d (alpha %d, bravo %d)", path, code, body, want, codeA, codeB)
				continue
			}
			for _, own := range []struct {
				d    tenantData
				body string
			}{{alpha, bodyA}, {bravo, bodyB}} {
				for _, m := range own.d.markers() {
					if strings.Contains(own.body, m) && !strings.Contains(path, m) && !strings.Contains(body, m) {
						t.Errorf("%s as alpha|bravo: %s's %q (in its own answer) missing from the joined %.400s", path, own.d.name, m, body)
					}
				}
			}
		}
	})
	// A federated read cannot name a tenant past the receivers' rules (a|b writes nothing).
	if resp, _ := postTenant(t, "http://"+s.OTLPHTTPAddr+"/v1/traces", "alpha|bravo"); resp != 400 {
		t.Errorf("export as alpha|bravo: %d, want 400", resp)
	}

	// Generated metrics carry the tenant.
	fams := scrape(t, s)
	if v := metricValue(fams, "traces_spanmetrics_calls_total", map[string]string{"tenant": "alpha", "service": "alpha-svc"}); v == 0 {
		t.Errorf("no span metrics for alpha-svc labelled tenant alpha")
	}
	if v := metricValue(fams, "traces_spanmetrics_calls_total", map[string]string{"tenant": "bravo", "service": "alpha-svc"}); v != 0 {
		t.Errorf("alpha's span metrics counted under tenant bravo")
	}

	// After a restart (the WAL replayed into each tenant's own head), still apart.
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	s = startServer(t, cfg)
	base = "http://" + s.HTTPAddr
	t.Run("after restart", check)
}

// A token bound to a tenant reads that tenant whatever header it sends, and a federated read
// needs a token for every tenant named.
func TestTenantFromToken(t *testing.T) {
	cfg := authConfig(t.TempDir())
	cfg.MultitenancyEnabled = true
	cfg.Auth.Tokens = append(cfg.Auth.Tokens,
		auth.Token{Name: "alpha-writer", SHA256: auth.HashToken("aw"), Role: auth.RoleWrite, Tenants: []string{"alpha"}},
		auth.Token{Name: "alpha-reader", SHA256: auth.HashToken("ar"), Role: auth.RoleRead, Tenants: []string{"alpha"}})
	s := startServer(t, cfg)
	ctx := context.Background()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(s.OTLPHTTPAddr), otlptracehttp.WithInsecure(),
		otlptracehttp.WithHeaders(map[string]string{"Authorization": "Bearer aw"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := exp.ExportSpans(ctx, spansToExport(t, "alpha by token")); err != nil {
		t.Fatalf("export with a one-tenant token and no header: %v", err)
	}
	exp.Shutdown(ctx)
	// The same token naming another tenant is refused.
	exp, _ = otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(s.OTLPHTTPAddr), otlptracehttp.WithInsecure(),
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}),
		otlptracehttp.WithHeaders(map[string]string{"Authorization": "Bearer aw", "X-Scope-OrgID": "bravo"}))
	if err := exp.ExportSpans(ctx, spansToExport(t, "alpha pretending")); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("a token for alpha writing as bravo: %v, want 403", err)
	}
	exp.Shutdown(ctx)
	get := func(tenant, token string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+s.HTTPAddr+"/api/search?q="+url.QueryEscape(`{ name = "alpha by token" }`), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if tenant != "" {
			req.Header.Set("X-Scope-OrgID", tenant)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 8<<10)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, b.String()
	}
	if code, body := get("", "ar"); code != 200 || !strings.Contains(body, "traceID") {
		t.Errorf("alpha's reader without a header: %d %s", code, body)
	}
	if code, _ := get("bravo", "ar"); code != 403 {
		t.Errorf("alpha's reader asking for bravo: %d, want 403", code)
	}
	if code, _ := get("alpha|bravo", "ar"); code != 403 {
		t.Errorf("alpha's reader asking for alpha|bravo: %d, want 403", code)
	}
	if code, body := get("bravo", tokRead); code != 200 || strings.Contains(body, "traceID") {
		t.Errorf("a reader of all tenants asking bravo sees alpha's trace: %d %s", code, body)
	}
	if code, _ := get("", tokRead); code != 401 {
		t.Errorf("a reader of all tenants naming none: %d, want 401", code)
	}
}
