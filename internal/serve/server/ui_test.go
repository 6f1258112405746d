package server_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/serve/api"
	"github.com/ariadne-tracing/ariadne/internal/serve/server"
	"github.com/ariadne-tracing/ariadne/internal/tools/guidetrace"
)

// The UI mounted as "GET /" must leave every other handler of the query port alone.
func TestUIDoesNotShadowAPI(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.PprofEnabled = true
	s := startServer(t, cfg)
	base := "http://" + s.HTTPAddr
	isIndex := func(b []byte) bool { return bytes.Contains(b, []byte(`<main id="main">`)) }
	for _, c := range []struct {
		path string
		code int
		want string
	}{
		{"/ready", 200, "ready"},
		{"/metrics", 200, "# TYPE"},
		{"/debug/pprof/", 200, "profile"},
		{"/api/status/buildinfo", 200, `"version"`},
		{"/api/v2/traces/0123", 404, ""},
		{"/api/no-such-endpoint", 404, ""},
	} {
		code, b := httpGet(t, base+c.path, "")
		if code != c.code || !bytes.Contains(b, []byte(c.want)) || isIndex(b) {
			t.Errorf("GET %s: %d %.200q; want %d containing %q, not the UI", c.path, code, b, c.code, c.want)
		}
	}
	for _, p := range []string{"/", "/search", "/lints", "/trace/4bf92f3577b34da6a3ce929d0e0e4736"} {
		if code, b := httpGet(t, base+p, ""); code != 200 || !isIndex(b) {
			t.Errorf("GET %s: %d, want the UI's index.html", p, code)
		}
	}
}

// chromiumPath finds a Chromium or Chrome binary.
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// needChromium skips when there is no browser on a developer's machine, but fails in CI, where
// a missing browser means the browser tests silently stopped running.
func needChromium(tb testing.TB) string {
	tb.Helper()
	p := chromiumPath()
	if p != "" {
		return p
	}
	if os.Getenv("CI") == "" {
		tb.Skip("browser tests skipped: no chromium binary on PATH (install it with `apt-get install chromium`; with CI=true this is a failure)")
	}
	tb.Fatal("CI is set but no chromium binary is on PATH: the browser tests cannot run (.ci/run installs it)")
	return ""
}

func artifactsDir(tb testing.TB) string {
	if d := os.Getenv("ARIADNE_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
		return d
	}
	return tb.TempDir()
}

// startBrowser starts one headless Chromium for a whole test; each check opens its own tab.
func startBrowser(tb testing.TB) context.Context {
	tb.Helper()
	exe := needChromium(tb)
	profile, err := os.MkdirTemp("", "ariadne-chromium-")
	if err != nil {
		tb.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 860),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	tb.Cleanup(func() {
		cancel()
		cancelAlloc()
		// Chromium's helpers can write into the profile for a moment after it exits.
		for range 20 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if err := chromedp.Do(ctx); err != nil {
		tb.Fatalf("start chromium %s: %v", exe, err)
	}
	return ctx
}

// tab is one browser tab whose JavaScript errors fail the test that opened it.
type tab struct {
	t    testing.TB
	ctx  context.Context
	base string

	mu   sync.Mutex
	errs []string
	// expected are console errors the test causes on purpose (a refused request the page
	// answers); any other console error fails the test.
	expected []string
}

// expect lets console errors containing any of msgs pass.
func (tb *tab) expect(msgs ...string) {
	tb.mu.Lock()
	tb.expected = append(tb.expected, msgs...)
	tb.mu.Unlock()
}

func openTab(t testing.TB, browser context.Context, base string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	// A bound on a whole tab, far above what drawing takes even with the race detector on a
	// machine whose cores are all busy (a 10,000-span trace took over 30s there).
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	tb := &tab{t: t, ctx: ctx, base: base}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 860)); err != nil {
		t.Fatal(err)
	}
	msgs := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type != chromedp.ConsoleError && !m.IsException() {
				continue
			}
			text := m.String()
			if m.Exception != nil && m.Exception.Exception != nil && m.Exception.Exception.Description != "" {
				text += "\n" + m.Exception.Exception.Description
			}
			tb.mu.Lock()
			tb.errs = append(tb.errs, fmt.Sprintf("%s (%s:%d)", text, m.URL, m.Line+1))
			tb.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		// Let events already sent arrive before judging.
		time.Sleep(100 * time.Millisecond)
		tb.mu.Lock()
		errs, expected := tb.errs, tb.expected
		tb.mu.Unlock()
	next:
		for _, e := range errs {
			for _, x := range expected {
				if strings.Contains(e, x) {
					continue next
				}
			}
			t.Errorf("browser console error: %s", e)
		}
		cancelTimeout()
		cancel()
		<-done
	})
	return tb
}

// open loads a page of the UI and waits until the app says it has drawn it.
func (tb *tab) open(path string) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, chromedp.Navigate(tb.base+path)); err != nil {
		tb.t.Fatalf("navigate %s: %v", path, err)
	}
	tb.waitReady()
}

func (tb *tab) waitReady() {
	tb.t.Helper()
	// Waits as long as the tab may live: the page says when it is drawn, and a busy machine
	// only makes that later.
	wait := 30 * time.Second
	if d, ok := tb.ctx.Deadline(); ok {
		wait = time.Until(d)
	}
	state, err := chromedp.Run(tb.ctx, chromedp.Poll[string](
		`document.documentElement.dataset.state === "ready" || document.documentElement.dataset.state === "error" ? document.documentElement.dataset.state : ""`,
		chromedp.WithPollingTimeout(wait)))
	if err != nil {
		tb.t.Fatalf("page never became ready: %v", err)
	}
	if state != "ready" {
		tb.t.Fatalf("page state %q", state)
	}
}

func eval[T any](tb *tab, js string) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func (tb *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, steps...); err != nil {
		tb.t.Fatal(err)
	}
}

func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	buf, err := chromedp.Run(tb.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Fatalf("screenshot: %v", err)
	}
	p := filepath.Join(artifactsDir(tb.t), name+".png")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Logf("screenshot %s", p)
}

type uiRow struct {
	ID     string `json:"id"`
	Parent string `json:"parent"`
	Depth  int    `json:"depth"`
	Name   string `json:"name"`
	Class  string `json:"class"`
}

const rowsJS = `[...document.querySelectorAll(".wf-layer .row")].map(r => ({
	id: r.dataset.spanId, parent: r.dataset.parentId, depth: +r.dataset.depth,
	name: r.querySelector(".name").textContent, class: r.className }))`

func rowsByName(rows []uiRow) map[string]uiRow {
	m := map[string]uiRow{}
	for _, r := range rows {
		m[r.Name] = r
	}
	return m
}

func hasClass(r uiRow, c string) bool { return strings.Contains(" "+r.Class+" ", " "+c+" ") }

// TestUIBrowser drives the UI in headless Chromium against a real server holding the guide's
// traces, sent through the OpenTelemetry SDK.
func TestUIBrowser(t *testing.T) {
	needChromium(t)
	cfg := testConfig(t.TempDir())
	cfg.Ingest.MaxRequestBytes = 16 << 20
	s := startServer(t, cfg)
	traces, _ := exportGuide(t, s, "grpc")
	byName := map[string]guidetrace.Trace{}
	for _, tr := range traces {
		byName[tr.Name] = tr
	}
	browser := startBrowser(t)
	base := "http://" + s.HTTPAddr
	createID := guidetrace.CreateTaskTraceID.String()
	deniedID := guidetrace.PermissionDeniedTraceID.String()

	t.Run("waterfall", func(t *testing.T) {
		tb := openTab(t, browser, base)
		tb.open("/trace/" + createID)
		rows := eval[[]uiRow](tb, rowsJS)
		want := byName[guidetrace.NameCreateTask].SpanCount
		if len(rows) != want {
			t.Fatalf("%d rows, want %d: %+v", len(rows), want, rows)
		}
		m := rowsByName(rows)
		for name, w := range map[string]struct {
			parent string
			depth  int
		}{
			"POST /api/tasks":           {"", 0},
			"create_task_entity":        {"POST /api/tasks", 1},
			"validate_input":            {"create_task_entity", 2},
			"motor_task_repository.add": {"POST /api/tasks", 1},
			"pymongo.insert_one":        {"motor_task_repository.add", 2},
			"record_metrics":            {"POST /api/tasks", 1},
		} {
			r, ok := m[name]
			if !ok {
				t.Fatalf("no row %q", name)
			}
			if r.Depth != w.depth {
				t.Errorf("%s: depth %d, want %d", name, r.Depth, w.depth)
			}
			if w.parent != "" && r.Parent != m[w.parent].ID {
				t.Errorf("%s: parent %s, want %s (%s)", name, r.Parent, m[w.parent].ID, w.parent)
			}
		}
		// Rows are in tree order: a span's row comes after its parent's.
		if rows[0].Name != "POST /api/tasks" || m["pymongo.insert_one"].ID != guidetrace.CreateTaskDBSpanID.String() {
			t.Errorf("first row %q, DB span %s", rows[0].Name, m["pymongo.insert_one"].ID)
		}
		db := m["pymongo.insert_one"]
		if !hasClass(db, "crit") || !hasClass(db, "slowest") {
			t.Errorf("pymongo.insert_one is not marked as on the critical path and slowest: class %q", db.Class)
		}
		if hasClass(m["record_metrics"], "slowest") {
			t.Errorf("record_metrics marked slowest")
		}
		why := eval[string](tb, `document.querySelector(".why-text")?.textContent ?? ""`)
		if !strings.Contains(why, "pymongo.insert_one") {
			t.Errorf("why-slow sentence %q does not name pymongo.insert_one", why)
		}
		head := eval[string](tb, `document.querySelector(".trace-head").textContent`)
		for _, w := range []string{"task-api", "POST /api/tasks", "250 ms", createID} {
			if !strings.Contains(head, w) {
				t.Errorf("header %q lacks %q", head, w)
			}
		}
		tb.screenshot("trace-create-task")

		// Events sit on create_task_entity's bar at their offsets from its start, and hovering
		// one shows its name and attributes.
		type marker struct {
			Name   string  `json:"name"`
			Offset float64 `json:"offset"`
			Left   string  `json:"left"`
		}
		ms := eval[[]marker](tb, `[...document.querySelectorAll('.row[data-span-id="b7ad6b7169203331"] .event')].map(e => ({
			name: e.dataset.name, offset: +e.dataset.offsetMs, left: e.style.left }))`)
		if len(ms) != 2 || ms[0].Name != "creating_task_entity" || ms[0].Offset != 0 || ms[0].Left != "0%" ||
			ms[1].Name != "task_entity_created" || ms[1].Offset != 15 || ms[1].Left != "100%" {
			t.Errorf("event markers %+v; want creating_task_entity at 0 ms (0%%) and task_entity_created at 15 ms (100%% of 15 ms)", ms)
		}
		tip := eval[string](tb, `(() => {
			const m = document.querySelectorAll('.row[data-span-id="b7ad6b7169203331"] .event')[1];
			m.dispatchEvent(new MouseEvent("mouseover", { bubbles: true }));
			const tt = document.querySelector(".tooltip");
			return tt.hidden ? "" : tt.textContent; })()`)
		if !strings.Contains(tip, "task_entity_created") || !strings.Contains(tip, "t=15ms") || !strings.Contains(tip, "task.id") || !strings.Contains(tip, "uuid-1234") {
			t.Errorf("event tooltip %q", tip)
		}
		tb.screenshot("trace-event-tooltip")

		// Details of create_task_entity list the events with the guide's t= offsets.
		tb.do(chromedp.Click(chromedp.CSS(`.row[data-span-id="b7ad6b7169203331"] .name`)))
		details := eval[string](tb, `document.querySelector(".details")?.textContent ?? ""`)
		for _, w := range []string{"creating_task_entity", "t=0ms", "task_entity_created", "t=15ms", "task.title", "Implement feature X", "service.version"} {
			if !strings.Contains(details, w) {
				t.Errorf("details lack %q", w)
			}
		}
		if u := eval[string](tb, `location.search`); u != "?span=b7ad6b7169203331" {
			t.Errorf("URL after selecting a span: %q", u)
		}
	})

	t.Run("keyboard", func(t *testing.T) {
		tb := openTab(t, browser, base)
		tb.open("/trace/" + createID)
		count := func() int { return eval[int](tb, `document.querySelectorAll(".wf-layer .row").length`) }
		focused := func() string {
			return eval[string](tb, `document.querySelector(".row.focused .name")?.textContent ?? ""`)
		}
		tb.do(chromedp.Focus(chromedp.CSS(".wf-scroll")), chromedp.KeyEvent(kb.ArrowDown))
		if f := focused(); f != "POST /api/tasks" {
			t.Fatalf("focus on %q after the first ↓", f)
		}
		tb.do(chromedp.KeyEvent(kb.ArrowDown))
		if f := focused(); f != "create_task_entity" {
			t.Fatalf("focus on %q after ↓↓", f)
		}
		n := count()
		tb.do(chromedp.KeyEvent(kb.ArrowLeft))
		if c := count(); c != n-2 {
			t.Errorf("← on create_task_entity: %d rows, want %d", c, n-2)
		}
		tb.do(chromedp.KeyEvent(kb.ArrowRight))
		if c := count(); c != n {
			t.Errorf("→ on create_task_entity: %d rows, want %d", c, n)
		}
		tb.do(chromedp.KeyEvent(kb.ArrowRight), chromedp.KeyEvent(kb.Enter))
		if f := focused(); f != "validate_input" {
			t.Errorf("→ on an open span moves to its first child; focus on %q", f)
		}
		if d := eval[string](tb, `document.querySelector(".details .details-title")?.textContent ?? ""`); d != "validate_input" {
			t.Errorf("Enter opened details of %q", d)
		}
		tb.do(chromedp.KeyEvent(kb.ArrowLeft))
		if f := focused(); f != "create_task_entity" {
			t.Errorf("← on a leaf moves to its parent; focus on %q", f)
		}
		// The text filter keeps matches and their ancestors.
		tb.do(chromedp.SendKeys(chromedp.CSS("input.filter"), "insert"))
		if _, err := chromedp.Run(tb.ctx, chromedp.Poll[bool](`document.querySelectorAll(".wf-layer .row").length === 3`,
			chromedp.WithPollingTimeout(5*time.Second))); err != nil {
			t.Errorf("filter 'insert': rows %v", eval[[]string](tb, `[...document.querySelectorAll(".wf-layer .row .name")].map(e => e.textContent)`))
		}
	})

	t.Run("exception", func(t *testing.T) {
		tb := openTab(t, browser, base)
		tb.open("/trace/" + deniedID)
		rows := rowsByName(eval[[]uiRow](tb, rowsJS))
		auth := rows["check_authorization"]
		if !hasClass(auth, "error") {
			t.Errorf("check_authorization row not marked as an error: %q", auth.Class)
		}
		tb.do(chromedp.Click(chromedp.CSS(`.row[data-span-id="` + auth.ID + `"] .name`)))
		tb.do(chromedp.WaitVisible(chromedp.CSS(".details .stacktrace")))
		type exc struct {
			Type    string `json:"type"`
			Message string `json:"message"`
			Stack   string `json:"stack"`
			Status  string `json:"status"`
		}
		e := eval[exc](tb, `({ type: document.querySelector(".details .exc-type").textContent,
			message: document.querySelector(".details .exc-message").textContent,
			stack: document.querySelector(".details pre.stacktrace").textContent,
			status: document.querySelector(".details .status").textContent })`)
		if !strings.Contains(e.Type, "PermissionError") || e.Message != "User lacks admin role" {
			t.Errorf("exception %q: %q", e.Type, e.Message)
		}
		if !strings.Contains(e.Stack, "goroutine") || !strings.Contains(e.Stack, "\n") {
			t.Errorf("stack trace not shown as preformatted text: %.200q", e.Stack)
		}
		if !strings.Contains(e.Status, "error") || !strings.Contains(e.Status, "Forbidden") {
			t.Errorf("status %q", e.Status)
		}
		tb.screenshot("trace-permission-denied-exception")
	})

	t.Run("links and deep link", func(t *testing.T) {
		tb := openTab(t, browser, base)
		pm := byName[guidetrace.NameProcessMultiple]
		tb.open(fmt.Sprintf("/trace/%s?span=%s", pm.TraceID, pm.RootSpanID))
		if d := eval[string](tb, `document.querySelector(".details .details-title")?.textContent ?? ""`); d != "process_multiple_tasks" {
			t.Fatalf("deep link opened details of %q", d)
		}
		href := eval[string](tb, `document.querySelector(".details .links a")?.getAttribute("href") ?? ""`)
		want := fmt.Sprintf("/trace/%s?span=%s", createID, guidetrace.CreateTaskRootSpanID)
		if href != want {
			t.Fatalf("link href %q, want %q", href, want)
		}
		tb.do(chromedp.Click(chromedp.CSS(".details .links a")))
		tb.waitReady()
		if d := eval[string](tb, `document.querySelector(".details .details-title")?.textContent ?? ""`); d != "POST /api/tasks" {
			t.Errorf("following the link opened %q", d)
		}
		tb.screenshot("trace-followed-link")
	})

	t.Run("broken trace", func(t *testing.T) {
		id := sendBrokenTrace(t, s)
		tb := openTab(t, browser, base)
		tb.open("/trace/" + id)
		rows := eval[[]uiRow](tb, rowsJS)
		m := rowsByName(rows)
		miss, ok := m["missing parent"]
		if !ok || !hasClass(miss, "missing") || miss.ID != "00000000000000ff" {
			t.Fatalf("no marked missing-parent node: %+v", rows)
		}
		if m["orphan"].Parent != miss.ID || m["orphan child"].Parent != m["orphan"].ID {
			t.Errorf("orphans not nested under the missing parent: %+v", rows)
		}
		if m["second root"].Depth != 0 || m["root"].Depth != 0 || m["child"].Parent != m["root"].ID {
			t.Errorf("roots: %+v", rows)
		}
		if n := eval[string](tb, `document.querySelector(".notice")?.textContent ?? ""`); !strings.Contains(n, "2 root spans") || !strings.Contains(n, "missing") {
			t.Errorf("notice %q", n)
		}
		tb.screenshot("trace-broken")
	})

	t.Run("internal root within its usual time", func(t *testing.T) {
		// Three 123 µs runs of a job whose root is an internal span: each is its operation's
		// usual duration, so there is no slowness to explain, and the root says its caller's
		// context was lost.
		t0 := uint64(time.Now().Add(-40 * time.Second).UnixNano())
		var id string
		for i := byte(1); i <= 3; i++ {
			tid := bytes.Repeat([]byte{0xc0 + i}, 16)
			postSpans(t, s, "indexer", []*tracepb.Span{{TraceId: tid, SpanId: []byte{0, 0, 0, 0, 0, 0, 0, i}, Name: "rebuild_search_index",
				Kind: tracepb.Span_SPAN_KIND_INTERNAL, StartTimeUnixNano: t0 + uint64(i)*1e9, EndTimeUnixNano: t0 + uint64(i)*1e9 + 123_000}})
			id = hex.EncodeToString(tid)
		}
		tb := openTab(t, browser, base)
		tb.open("/trace/" + id)
		if l := eval[string](tb, `document.querySelector(".why .why-label")?.textContent ?? ""`); l != "Usual time" {
			t.Errorf("why label %q on a trace within its usual time, want \"Usual time\"", l)
		}
		if n := eval[string](tb, `document.querySelector(".notice")?.textContent ?? ""`); !strings.Contains(n, "internal span") || !strings.Contains(n, "parent") {
			t.Errorf("no hint that the internal root's parent is missing: %q", n)
		}
		tb.open("/search?q=" + url.QueryEscape(`{ resource.service.name = "indexer" }`) + "&range=1h")
		if d := eval[string](tb, `document.querySelector(".results-table tr.result .r-dur")?.textContent ?? ""`); d != "123 µs" {
			t.Errorf("a 123 µs trace's duration in the results reads %q", d)
		}
	})

	t.Run("large trace", func(t *testing.T) {
		id := sendLargeTrace(t, s, 10000)
		tb := openTab(t, browser, base)
		tb.open("/trace/" + id)
		n := eval[int](tb, `document.querySelectorAll(".wf-layer .row").length`)
		if n == 0 || n > 200 {
			t.Fatalf("%d rows in the DOM for a 10,000-span trace; only the visible ones should be", n)
		}
		if spans := eval[string](tb, `document.querySelector(".trace-head").textContent`); !strings.Contains(spans, "10000") {
			t.Errorf("header lacks the span count: %q", spans)
		}
		if eval[bool](tb, `document.querySelector(".wf-mapbox").hidden`) {
			t.Error("no minimap for a long trace")
		}
		tb.screenshot("trace-large-top")
		last := eval[string](tb, `(async () => {
			const s = document.querySelector(".wf-scroll");
			s.scrollTop = s.scrollHeight;
			await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
			const rows = document.querySelectorAll(".wf-layer .row");
			return rows.length + " " + rows[rows.length - 1].querySelector(".name").textContent; })()`)
		if !strings.HasSuffix(last, " op 9999") {
			t.Errorf("after scrolling to the end, rows: %q", last)
		}
		tb.screenshot("trace-large-bottom")
	})

	t.Run("lints", func(t *testing.T) {
		tb := openTab(t, browser, base)
		tb.open("/lints?since=24h")
		svcs := eval[[]string](tb, `[...document.querySelectorAll(".svc-report")].map(e => e.dataset.service)`)
		examined := eval[string](tb, `document.querySelector(".lint-report").textContent`)
		if !strings.Contains(examined, "traces examined") {
			t.Errorf("lint report: %q", examined)
		}
		tb.screenshot("lints")
		// The broken and the large traces above have problems (orphans, no attributes, ...).
		if len(svcs) == 0 {
			t.Fatalf("no service in the lint report: %q", examined)
		}
		// Example links lead to a trace page with the example span open.
		tb.do(chromedp.Click(chromedp.CSS(".report-table a")))
		tb.waitReady()
		if p := eval[string](tb, `location.pathname`); !strings.HasPrefix(p, "/trace/") {
			t.Errorf("example link went to %q", p)
		}
		tb.screenshot("lints-example")
	})

	t.Run("dark theme", func(t *testing.T) {
		tb := openTab(t, browser, base)
		tb.open("/trace/" + createID)
		before := eval[string](tb, `getComputedStyle(document.body).backgroundColor`)
		tb.do(chromedp.Click(chromedp.CSS(".theme-toggle")))
		after := eval[string](tb, `getComputedStyle(document.body).backgroundColor`)
		if before == after {
			t.Errorf("theme toggle left the background %s", before)
		}
		tb.do(chromedp.Click(chromedp.CSS(`.row[data-span-id="` + guidetrace.CreateTaskDBSpanID.String() + `"] .name`)))
		tb.screenshot("trace-dark")
		tb.do(chromedp.Click(chromedp.CSS(".theme-toggle")))
	})

	t.Run("laptop screen", func(t *testing.T) {
		tb := openTab(t, browser, base)
		tb.do(chromedp.EmulateViewport(1366, 768))
		pm := byName[guidetrace.NameProcessMultiple]
		tb.open(fmt.Sprintf("/trace/%s?span=%s", pm.TraceID, pm.RootSpanID))
		// Nothing may push the page sideways: the waterfall and the details share the width.
		if w := eval[int](tb, `document.documentElement.scrollWidth`); w > 1366 {
			t.Errorf("page is %d px wide on a 1366 px screen", w)
		}
		tb.screenshot("trace-laptop-1366")
	})

	t.Run("search", func(t *testing.T) {
		code, body := httpGet(t, base+"/api/search?q="+url.QueryEscape("{}"), "")
		if code == http.StatusNotFound {
			t.Skipf("search endpoint /api/search answers 404 (not in this build yet): %s", bytes.TrimSpace(body))
		}
		tb := openTab(t, browser, base)
		q := `{ resource.service.name = "task-api" && name = "pymongo.insert_one" }`
		tb.open("/search?q=" + url.QueryEscape(q) + "&range=1h")
		ids := eval[[]string](tb, `[...document.querySelectorAll(".results-table tr.result")].map(r => r.dataset.traceId)`)
		if len(ids) != 1 || ids[0] != createID {
			t.Fatalf("results %v for %s, want only %s", ids, q, createID)
		}
		row := eval[string](tb, `document.querySelector(".results-table tr.result").textContent`)
		for _, w := range []string{"task-api", "POST /api/tasks", "250 ms"} {
			if !strings.Contains(row, w) {
				t.Errorf("result row %q lacks %q", row, w)
			}
		}
		tb.screenshot("search-one")

		// Typing a query and pressing Enter runs it and puts it in the URL.
		tb.do(chromedp.Navigate(base + "/search"))
		tb.waitReady()
		tb.do(chromedp.Clear(chromedp.CSS("input.traceql")),
			chromedp.SendKeys(chromedp.CSS("input.traceql"), `{ name = "check_authorization" }`+kb.Enter))
		if _, err := chromedp.Run(tb.ctx, chromedp.Poll[bool](`location.search.includes("check_authorization") && document.documentElement.dataset.state === "ready"`,
			chromedp.WithPollingTimeout(10*time.Second))); err != nil {
			t.Fatalf("query not run: %v", err)
		}
		ids = eval[[]string](tb, `[...document.querySelectorAll(".results-table tr.result")].map(r => r.dataset.traceId)`)
		if len(ids) != 1 || ids[0] != deniedID {
			t.Fatalf("results %v, want %s", ids, deniedID)
		}
		if !eval[bool](tb, `!!document.querySelector(".results-table tr.result .badge.err")`) {
			t.Error("the failing trace has no error badge")
		}

		// Every trace (the guide's and the ones the subtests above sent), newest first, each
		// linking to its trace page.
		tb.open("/search?q=" + url.QueryEscape("{}") + "&range=1h")
		ids = eval[[]string](tb, `[...document.querySelectorAll(".results-table tr.result")].map(r => r.dataset.traceId)`)
		for _, tr := range traces {
			if !slices.Contains(ids, tr.TraceID.String()) {
				t.Errorf("results for {} lack %s (%s): %v", tr.TraceID, tr.Name, ids)
			}
		}
		if !eval[bool](tb, `(() => {
			const t = [...document.querySelectorAll(".results-table tr.result")].map(r => r.dataset.start);
			return t.every((v, i) => i === 0 || BigInt(t[i - 1]) >= BigInt(v)); })()`) {
			t.Error("results are not newest first")
		}
		tb.screenshot("search-all")
		tb.do(chromedp.Click(chromedp.CSS(`tr.result[data-trace-id="` + createID + `"] a.r-link`)))
		tb.waitReady()
		if p := eval[string](tb, `location.pathname`); p != "/trace/"+createID {
			t.Errorf("result link went to %q", p)
		}
	})
}

// sendBrokenTrace stores a trace with two roots and orphans whose parent never arrived.
func sendBrokenTrace(t testing.TB, s *server.Server) string {
	t.Helper()
	tid := bytes.Repeat([]byte{0xb0}, 16)
	base := uint64(time.Now().Add(-30 * time.Second).UnixNano())
	sp := func(id, parent byte, name string, start, end uint64) *tracepb.Span {
		var p []byte
		if parent != 0 {
			p = []byte{0, 0, 0, 0, 0, 0, 0, parent}
		}
		return &tracepb.Span{TraceId: tid, SpanId: []byte{0, 0, 0, 0, 0, 0, 0, id}, ParentSpanId: p, Name: name,
			StartTimeUnixNano: base + start*1e6, EndTimeUnixNano: base + end*1e6}
	}
	postSpans(t, s, "broken-service", []*tracepb.Span{
		sp(1, 0, "root", 0, 100),
		sp(2, 1, "child", 10, 50),
		sp(3, 0xff, "orphan", 20, 80),
		sp(4, 3, "orphan child", 30, 40),
		sp(5, 0, "second root", 60, 120),
	})
	return hex.EncodeToString(tid)
}

// sendLargeTrace stores an n-span trace: a root with a hundred children, each with its own
// children, all named "op <i>" in the order they are drawn.
func sendLargeTrace(t testing.TB, s *server.Server, n int) string {
	t.Helper()
	tid := bytes.Repeat([]byte{0x1a}, 16)
	base := uint64(time.Now().Add(-20 * time.Second).UnixNano())
	id := func(i int) []byte { return []byte{0, 0, 0, 1, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)} }
	spans := make([]*tracepb.Span, 0, n)
	perGroup := (n - 1 + 99) / 100
	parent := 0
	for i := range n {
		sp := &tracepb.Span{TraceId: tid, SpanId: id(i), Name: fmt.Sprintf("op %d", i), Kind: tracepb.Span_SPAN_KIND_INTERNAL,
			StartTimeUnixNano: base + uint64(i)*1e6, EndTimeUnixNano: base + uint64(i)*1e6 + 5e5,
			Attributes: []*commonpb.KeyValue{{Key: "i", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: int64(i)}}}}}
		switch {
		case i == 0:
			sp.EndTimeUnixNano = base + uint64(n)*1e6
		case (i-1)%perGroup == 0:
			parent = i
			sp.ParentSpanId = id(0)
			sp.EndTimeUnixNano = base + uint64(min(i+perGroup, n))*1e6
		default:
			sp.ParentSpanId = id(parent)
		}
		if i%997 == 0 {
			sp.Events = []*tracepb.Span_Event{{Name: "checkpoint", TimeUnixNano: sp.StartTimeUnixNano + 1e5}}
		}
		if i%1500 == 7 {
			sp.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "failed"}
		}
		spans = append(spans, sp)
	}
	postSpans(t, s, "bulk-service", spans)
	return hex.EncodeToString(tid)
}

func postSpans(t testing.TB, s *server.Server, service string, spans []*tracepb.Span) {
	t.Helper()
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name",
			Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: service}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "ui-test"}, Spans: spans}},
	}}}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+s.OTLPHTTPAddr+"/v1/traces", "application/x-protobuf", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("export: %s", resp.Status)
	}
}

// BenchmarkOpenLargeTrace measures opening a 10,000-span trace in headless Chromium: from
// navigation to the page saying it has drawn the header, analysis and waterfall.
func BenchmarkOpenLargeTrace(b *testing.B) {
	needChromium(b)
	cfg := testConfig(b.TempDir())
	cfg.Ingest.MaxRequestBytes = 16 << 20
	s, err := server.Start(cfg, api.BuildInfo{Version: "test"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Stop(context.Background()) })
	id := sendLargeTrace(b, s, 10000)
	browser := startBrowser(b)
	tb := openTab(b, browser, "http://"+s.HTTPAddr)
	tb.open("/trace/" + id) // warm the server's and the browser's caches
	var pageMs float64
	i := 0
	for b.Loop() {
		i++
		tb.open(fmt.Sprintf("/trace/%s?run=%d", id, i))
		pageMs += eval[float64](tb, `+document.documentElement.dataset.readyMs`)
	}
	b.ReportMetric(pageMs/float64(i), "ms-to-render")
}
