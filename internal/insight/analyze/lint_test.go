package analyze

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/tools/guidetrace"
)

func TestLintGuideTracesAreClean(t *testing.T) {
	_, tds := guideTraces(t)
	var all []*tracepb.TracesData
	for id, td := range tds {
		all = append(all, td)
		for _, f := range Lint(td, LintConfig{}) {
			t.Errorf("trace %s: %s: %s", id, f.Rule, f.Message)
		}
	}
	if len(all) != 4 {
		t.Fatalf("%d guide traces", len(all))
	}
	for _, f := range LintAcross(all, LintConfig{}) {
		t.Errorf("across: %s: %s", f.Rule, f.Message)
	}
	ct := NewCardinalityTracker(LintConfig{Cardinality: 1})
	for _, td := range all {
		ct.Observe(td)
	}
	// With a threshold of one, any key with two values in one operation
	// would show; the guide varies only IDs, which are exempt.
	for _, f := range ct.Findings() {
		t.Errorf("cardinality: %s", f.Message)
	}
}

// rules returns the rule IDs found, sorted and deduplicated.
func rules(fs []Finding) string {
	var ids []string
	for _, f := range fs {
		ids = append(ids, f.Rule)
	}
	slices.Sort(ids)
	return strings.Join(slices.Compact(ids), " ")
}

func finding(t *testing.T, fs []Finding, rule string) Finding {
	t.Helper()
	for _, f := range fs {
		if f.Rule == rule {
			return f
		}
	}
	t.Fatalf("no %s finding in %s", rule, rules(fs))
	return Finding{}
}

func sid(s trace.Span) string { return s.SpanContext().SpanID().String() }

func serverSpan(ctx context.Context, tr trace.Tracer, method, route string, n float64) (context.Context, trace.Span) {
	return tr.Start(ctx, method+" "+route, at(n), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("http.request.method", method),
			attribute.String("url.path", route),
			attribute.String("http.route", route),
		))
}

func endServer(s trace.Span, code int, n float64) {
	s.SetAttributes(attribute.Int("http.response.status_code", code))
	s.End(endAt(n))
}

func TestLintUnendedParent(t *testing.T) {
	c := newCollector(t)
	tr := c.provider("importer").Tracer("src.application.services.importer")

	ctx, root := tr.Start(context.Background(), "import_tasks", at(0))
	// parse_file is never ended, as when an exception skips span.end().
	pctx, _ := tr.Start(ctx, "parse_file", at(1))
	var kids []string
	for i := range 2 {
		_, s := tr.Start(pctx, "save_task", at(2+float64(i)*5))
		s.End(endAt(6 + float64(i)*5))
		kids = append(kids, sid(s))
	}
	root.End(endAt(20))

	// And a lone orphan in a second trace: its parent was lost too, but one
	// child alone does not say why.
	ctx, root2 := tr.Start(context.Background(), "import_users", at(100))
	lctx, _ := tr.Start(ctx, "load_config", at(101))
	_, lone := tr.Start(lctx, "read_file", at(102))
	lone.End(endAt(103))
	root2.End(endAt(110))

	fs := Lint(c.all(), LintConfig{})
	if got := rules(fs); got != "context.orphan-span span.unended-parent" {
		t.Fatalf("rules: %s", got)
	}
	f := finding(t, fs, RuleUnendedParent)
	if !slices.Equal(f.SpanIDs, kids) || f.Count != 2 || f.Severity != SeverityError || f.Service != "importer" {
		t.Errorf("unended: %+v, want children %v", f, kids)
	}
	if f = finding(t, fs, RuleOrphanSpan); !slices.Equal(f.SpanIDs, []string{sid(lone)}) {
		t.Errorf("orphan: %+v", f)
	}
}

func TestLintContextLostInGoroutine(t *testing.T) {
	c := newCollector(t)
	tp := c.provider(guidetrace.ServiceTaskAPI)
	api := tp.Tracer(guidetrace.ScopeFastAPI)
	cmd := tp.Tracer("src.application.commands.create_user_command")
	sched := tp.Tracer("src.application.services.scheduler")

	ctx, root := serverSpan(context.Background(), api, "POST", "/api/users", 0)
	_, create := cmd.Start(ctx, "create_user", at(2))
	var bg trace.Span
	var wg sync.WaitGroup
	wg.Go(func() {
		// The bug: the goroutine starts from an empty context.
		_, bg = cmd.Start(context.Background(), "send_welcome_email", at(10))
		bg.End(endAt(40))
	})
	wg.Wait()
	// A scheduler job that happens to run during the request is not the
	// request's work: it comes from another module.
	_, job := sched.Start(context.Background(), "purge_expired_sessions", at(12))
	job.End(endAt(14))
	create.End(endAt(20))
	endServer(root, 201, 22)

	trees := c.traces()
	var tds []*tracepb.TracesData
	for _, td := range trees {
		if fs := Lint(td, LintConfig{}); len(fs) > 0 {
			t.Errorf("per-trace rules fired: %s", rules(fs))
		}
		tds = append(tds, td)
	}
	fs := LintAcross(tds, LintConfig{})
	if len(fs) != 1 {
		t.Fatalf("findings: %+v", fs)
	}
	f := fs[0]
	if f.Rule != RuleLostInGoroutine || !slices.Equal(f.SpanIDs, []string{sid(bg), sid(create)}) ||
		f.TraceID != bg.SpanContext().TraceID().String() {
		t.Errorf("finding %+v", f)
	}
}

func TestLintLostPropagation(t *testing.T) {
	c := newCollector(t)
	api := c.provider(guidetrace.ServiceTaskAPI).Tracer(guidetrace.ScopeHTTPX)
	notif := c.provider(guidetrace.ServiceNotification).Tracer(guidetrace.ScopeFastAPI)

	ctx, root := serverSpan(context.Background(), api, "POST", "/api/tasks/{id}/notify", 0)
	_, client := api.Start(ctx, "POST", at(5), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("http.request.method", "POST"),
			attribute.String("url.full", "http://notification-service/api/notify"),
			attribute.String("server.address", "notification-service"),
		))
	// No traceparent crossed: the server starts a trace of its own.
	_, srv := serverSpan(context.Background(), notif, "POST", "/api/notify", 8)
	endServer(srv, 202, 60)
	client.SetAttributes(attribute.Int("http.response.status_code", 202))
	client.End(endAt(65))
	endServer(root, 200, 70)

	var tds []*tracepb.TracesData
	for _, td := range c.traces() {
		tds = append(tds, td)
	}
	fs := LintAcross(tds, LintConfig{})
	if len(fs) != 1 {
		t.Fatalf("findings: %+v", fs)
	}
	if f := fs[0]; f.Rule != RuleLostPropagation || !slices.Equal(f.SpanIDs, []string{sid(client), sid(srv)}) ||
		f.Service != guidetrace.ServiceTaskAPI || !strings.Contains(f.Message, "started 3ms later") {
		t.Errorf("finding %+v", f)
	}
}

func TestLintTooManySpans(t *testing.T) {
	c := newCollector(t)
	tr := c.provider("importer").Tracer("src.application.services.importer")
	ctx, root := tr.Start(context.Background(), "import_items", at(0))
	const n = 5000
	for i := range n {
		_, s := tr.Start(ctx, "process_item", at(1+float64(i)*0.2))
		s.End(endAt(1.1 + float64(i)*0.2))
	}
	root.End(endAt(1002))
	fs := Lint(c.all(), LintConfig{})
	if got := rules(fs); got != "volume.repeated-siblings volume.tiny-spans" {
		t.Fatalf("rules: %s", got)
	}
	for _, rule := range []string{RuleTinySpans, RuleRepeatedSiblings} {
		if f := finding(t, fs, rule); f.Count != n || len(f.SpanIDs) != 20 {
			t.Errorf("%s: count %d, %d span IDs", rule, f.Count, len(f.SpanIDs))
		}
	}
	// Below the configured threshold the batch is fine.
	if fs := Lint(c.all(), LintConfig{RepeatedSiblings: n + 1, TinySpanMinCount: n + 1}); len(fs) != 0 {
		t.Errorf("with higher thresholds: %s", rules(fs))
	}
}

func TestLintSpanRules(t *testing.T) {
	c := newCollector(t)
	tp := c.provider(guidetrace.ServiceTaskAPI)
	api := tp.Tracer(guidetrace.ScopeFastAPI)
	tr := tp.Tracer("src.application.commands.user_commands")

	type want struct {
		rule string
		span trace.Span
	}
	var wants []want
	expect := func(rule string, s trace.Span) { wants = append(wants, want{rule, s}) }

	ctx, root := serverSpan(context.Background(), api, "GET", "/api/users/48213", 0)
	expect(RuleIDInName, root)
	_, s := tr.Start(ctx, "load_user_48213", at(1))
	s.End(endAt(2))
	expect(RuleIDInName, s)
	_, s = tr.Start(ctx, "fetch_task 3f2b8c1e-9d4a-4e6b-8f0a-1c2d3e4f5a6b", at(2))
	s.End(endAt(3))
	expect(RuleIDInName, s)
	_, s = tr.Start(ctx, "process the uploaded file now", at(3))
	s.End(endAt(4))
	expect(RuleFreeTextName, s)
	_, s = tr.Start(ctx, "CreateTaskEntity", at(4))
	s.End(endAt(5))
	expect(RuleNamingConvention, s)
	_, s = tr.Start(ctx, "task", at(5))
	s.End(endAt(6))
	expect(RuleNamingConvention, s)

	_, s = tr.Start(ctx, "update_task", at(6), trace.WithAttributes(
		attribute.String("task.description", strings.Repeat("x", 10*1024))))
	s.End(endAt(7))
	expect(RuleOversizedAttribute, s)

	_, s = tr.Start(ctx, "charge_card", at(7))
	s.SetStatus(codes.Error, "")
	s.End(endAt(8))
	expect(RuleErrorNoMessage, s)
	_, s = tr.Start(ctx, "sync_inventory", at(8))
	s.RecordError(errors.New("inventory service unavailable"), trace.WithTimestamp(base.Add(ms(8.5))))
	s.End(endAt(9))
	expect(RuleExceptionNoError, s)

	_, s = tr.Start(ctx, "call_billing", at(9), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("http.route", "/billing")))
	s.End(endAt(10))
	expect(RuleMissingSemconv, s)
	_, s = tr.Start(ctx, "users.find", at(10), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.collection", "users")))
	s.End(endAt(11))
	expect(RuleMissingSemconv, s)

	_, s = tr.Start(ctx, "flush_cache", at(11))
	s.End(endAt(11))
	expect(RuleZeroLength, s)
	_, s = tr.Start(ctx, "warm_cache", at(12))
	s.End(endAt(11))
	expect(RuleEndBeforeStart, s)
	// Left running far beyond the request, as a span nobody ends until
	// shutdown would be.
	_, s = tr.Start(ctx, "watch_changes", at(12))
	s.End(endAt(5000))
	expect(RuleLongerThanRoot, s)
	endServer(root, 200, 20)

	fs := Lint(c.all(), LintConfig{})
	for _, w := range wants {
		found := false
		for _, f := range fs {
			if f.Rule == w.rule && slices.Equal(f.SpanIDs, []string{sid(w.span)}) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s did not fire on %s", w.rule, sid(w.span))
		}
	}
	if len(fs) != len(wants) {
		for _, f := range fs {
			t.Logf("%s %v: %s", f.Rule, f.SpanIDs, f.Message)
		}
		t.Errorf("%d findings, want %d", len(fs), len(wants))
	}
	for _, f := range fs {
		if f.Fix == "" || f.TraceID == "" || f.Count != 1 || f.Service != guidetrace.ServiceTaskAPI {
			t.Errorf("incomplete finding %+v", f)
		}
	}
}

func TestLintMultipleRoots(t *testing.T) {
	c := newCollector(t)
	tr := c.provider("importer").Tracer("src.application.services.importer")
	tid := guidetrace.CreateTaskTraceID
	for i, name := range []string{"import_tasks", "notify_owner"} {
		ctx := guidetrace.ContextWithIDs(context.Background(), tid, trace.SpanID{0xaa, byte(i + 1)})
		_, s := tr.Start(ctx, name, at(float64(i)), trace.WithNewRoot())
		s.End(endAt(10))
	}
	fs := Lint(c.all(), LintConfig{})
	if len(fs) != 1 || fs[0].Rule != RuleMultipleRoots || fs[0].Count != 2 {
		t.Fatalf("findings: %+v", fs)
	}
}

func TestCardinalityTracker(t *testing.T) {
	c := newCollector(t)
	tr := c.provider(guidetrace.ServiceTaskAPI).Tracer(guidetrace.ScopeCreateTask)
	const n = 300
	for i := range n {
		_, s := tr.Start(context.Background(), "create_task_entity", at(float64(i)),
			trace.WithAttributes(
				attribute.String("task.title", fmt.Sprintf("User's custom title %d", i)),
				attribute.String("task.id", fmt.Sprintf("uuid-%d", i)),
				attribute.String("task.priority", []string{"low", "high"}[i%2]),
			))
		s.End(endAt(float64(i) + 0.5))
	}
	ct := NewCardinalityTracker(LintConfig{})
	ct.Observe(c.all())
	fs := ct.Findings()
	if len(fs) != 1 || fs[0].Rule != RuleHighCardinality || !strings.Contains(fs[0].Message, `"task.title"`) {
		t.Fatalf("findings: %+v", fs)
	}
	if d := ct.Distinct(guidetrace.ServiceTaskAPI, "create_task_entity", "task.title"); d < 290 || d > 310 {
		t.Errorf("estimated %d distinct titles, want about %d", d, n)
	}
	if d := ct.Distinct(guidetrace.ServiceTaskAPI, "create_task_entity", "task.priority"); d != 2 {
		t.Errorf("estimated %d priorities, want 2", d)
	}
	ct.Reset()
	if fs := ct.Findings(); len(fs) != 0 {
		t.Errorf("after reset: %+v", fs)
	}
}

func TestHyperLogLogAccuracy(t *testing.T) {
	for _, n := range []int{10, 100, 1000, 50000} {
		var s series
		for i := range n {
			s.add(fmt.Sprint("value-", i))
			s.add(fmt.Sprint("value-", i)) // repeats must not count
		}
		if got, err := s.estimate(), float64(s.estimate()-n)/float64(n); err > 0.05 || err < -0.05 {
			t.Errorf("%d distinct estimated as %d", n, got)
		}
	}
}

func TestAggregate(t *testing.T) {
	fs := []Finding{
		{Rule: RuleZeroLength, Severity: SeverityWarning, Service: "b", TraceID: "t1", SpanIDs: []string{"s1"}, Count: 1},
		{Rule: RuleTinySpans, Severity: SeverityWarning, Service: "a", TraceID: "t1", SpanIDs: []string{"s2"}, Count: 500},
		{Rule: RuleTinySpans, Severity: SeverityWarning, Service: "a", TraceID: "t2", SpanIDs: []string{"s3"}, Count: 300},
		{Rule: RuleUnendedParent, Severity: SeverityError, Service: "a", TraceID: "t2", SpanIDs: []string{"s4"}, Count: 2},
	}
	got := Aggregate(fs)
	if len(got) != 2 || got[0].Service != "a" || got[1].Service != "b" || got[0].Findings != 3 {
		t.Fatalf("reports: %+v", got)
	}
	a := got[0].Rules
	if a[0].Rule != RuleUnendedParent || a[1].Rule != RuleTinySpans {
		t.Fatalf("rule order: %+v", a)
	}
	if r := a[1]; r.Findings != 2 || r.Count != 800 || r.Traces != 2 || r.ExampleTraceID != "t1" || r.ExampleSpanID != "s2" {
		t.Errorf("tiny spans: %+v", r)
	}
}

func TestIDInName(t *testing.T) {
	for name, want := range map[string]string{
		"GET /api/tasks/123":            "123",
		"load_user_5678":                "5678",
		"fetch 7d2ea792e2df6a01":        "7d2ea792e2df6a01",
		"notify alice@example.com":      "alice@example.com",
		"GET /api/v1/tasks/7":           "7",
		"DELETE /api/tasks/{id}":        "",
		"pymongo.insert_one":            "",
		"oauth2.refresh_token":          "",
		"GET /api/v2/users":             "",
		"process_single_task":           "",
		"POST /api/tasks/{id}/notify":   "",
		"grpc.health.v1.Health/Check":   "",
		"render_pdf_a4":                 "",
		"call_service 0af7651916cd43dd": "0af7651916cd43dd",
	} {
		if got := idInName(name); got != want {
			t.Errorf("idInName(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestLintAdviceFollowsSDKLanguage: a fix is written in the idiom of the SDK that produced the
// spans, as telemetry.sdk.language says: the real Go SDK's resource gets Go advice, a Python
// service keeps the guide's Python wording.
func TestLintAdviceFollowsSDKLanguage(t *testing.T) {
	c := newCollector(t)
	unended := func(tp *sdktrace.TracerProvider) {
		tr := tp.Tracer("importer")
		ctx, root := tr.Start(context.Background(), "import_tasks", at(0))
		pctx, _ := tr.Start(ctx, "parse_file", at(1)) // never ended
		for i := range 2 {
			_, s := tr.Start(pctx, "save_task", at(2+float64(i)*5))
			s.End(endAt(6 + float64(i)*5))
		}
		root.End(endAt(20))
	}
	goRes, err := sdkresource.Merge(sdkresource.Default(), guidetrace.Resource("importer-go"))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := goRes.Set().Value("telemetry.sdk.language"); v.AsString() != "go" {
		t.Fatalf("the Go SDK's resource says language %q", v.AsString())
	}
	unended(c.provider("importer-go", sdktrace.WithResource(goRes)))
	pyRes := sdkresource.NewSchemaless(attribute.String("service.name", "importer-py"), attribute.String("telemetry.sdk.language", "python"))
	unended(c.provider("importer-py", sdktrace.WithResource(pyRes)))

	fixes := map[string]string{}
	for _, f := range Lint(c.all(), LintConfig{}) {
		if f.Rule == RuleUnendedParent {
			fixes[f.Service] = f.Fix
		}
	}
	if !strings.Contains(fixes["importer-go"], "defer span.End()") || strings.Contains(fixes["importer-go"], "start_as_current_span") {
		t.Errorf("Go service's fix: %q", fixes["importer-go"])
	}
	if !strings.Contains(fixes["importer-py"], "start_as_current_span") {
		t.Errorf("Python service's fix: %q", fixes["importer-py"])
	}
}
