package server_test

import (
	"bytes"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

type smEdge struct {
	Client string `json:"client"`
	Server string `json:"server"`
	Class  string `json:"class"`
	Label  string `json:"label"`
}

type smOp struct {
	Op    string `json:"op"`
	Calls string `json:"calls"`
	Errs  string `json:"errs"`
	P95   string `json:"p95"`
	Href  string `json:"href"`
}

const smOpsJS = `[...document.querySelectorAll(".ops-table tbody tr")].map(r => ({
	op: r.dataset.op, calls: r.querySelector(".calls").textContent, errs: r.querySelector(".errs").textContent,
	p95: r.cells[7].textContent, href: r.querySelector(".op-name a").getAttribute("href") }))`

// searchQuery returns the TraceQL query of a link to the search page, or fails.
func searchQuery(t *testing.T, href string) string {
	t.Helper()
	u, err := url.Parse(href)
	if err != nil || u.Path != "/search" {
		t.Fatalf("link %q does not lead to the search page", href)
	}
	return u.Query().Get("q")
}

// TestServiceMapUI draws the guide's services in headless Chromium: nodes, labelled edges, and a
// service's operations with links to its traces.
func TestServiceMapUI(t *testing.T) {
	needChromium(t)
	s := startServer(t, testConfig(t.TempDir()))
	exportGuide(t, s, "grpc")
	browser := startBrowser(t)
	base := "http://" + s.HTTPAddr

	tb := openTab(t, browser, base)
	tb.open("/services")
	if cur := eval[string](tb, `document.querySelector('.topbar nav a[aria-current="page"]')?.textContent ?? ""`); cur != "Services" {
		t.Errorf("navigation marks %q as the current page", cur)
	}
	kinds := eval[map[string]string](tb, `Object.fromEntries([...document.querySelectorAll(".sm-node")].map(n => [n.dataset.name, n.dataset.kind]))`)
	for name, kind := range map[string]string{"task-api": "service", "notification-service": "service", "mongodb": "database"} {
		if kinds[name] != kind {
			t.Errorf("node %s: kind %q, want %q (nodes %v)", name, kinds[name], kind, kinds)
		}
	}
	edges := eval[[]smEdge](tb, `[...document.querySelectorAll(".sm-labels .sm-edge")].map(g => ({
		client: g.dataset.client, server: g.dataset.server, class: g.getAttribute("class"), label: g.textContent }))`)
	byPair := map[string]smEdge{}
	for _, e := range edges {
		byPair[e.Client+"→"+e.Server] = e
	}
	for _, pair := range []string{"task-api→notification-service", "task-api→mongodb"} {
		e, ok := byPair[pair]
		if !ok {
			t.Errorf("no edge %s among %+v", pair, edges)
			continue
		}
		for _, w := range []string{"req/s", "0% err", "p95 ", " ms", "1 req"} {
			if !strings.Contains(e.Label, w) {
				t.Errorf("edge %s label %q lacks %q", pair, e.Label, w)
			}
		}
		if strings.Contains(e.Label, "p95 –") {
			t.Errorf("edge %s has no p95: %q", pair, e.Label)
		}
	}
	// Every edge has an arrow drawn, and nodes are laid out callers left of callees.
	if n := eval[int](tb, `document.querySelectorAll(".sm-edges .sm-edge path[marker-end]").length`); n != len(edges) || n == 0 {
		t.Errorf("%d arrows for %d edges", n, len(edges))
	}
	if !eval[bool](tb, `(() => {
		const x = (n) => document.querySelector('.sm-node[data-name="' + n + '"]').getBoundingClientRect().x;
		return x("task-api") < x("mongodb") && x("task-api") < x("notification-service"); })()`) {
		t.Error("task-api is not drawn left of the services it calls")
	}
	if w := eval[int](tb, `document.documentElement.scrollWidth`); w > 1280 {
		t.Errorf("page is %d px wide at 1280 px", w)
	}
	if s := eval[string](tb, `document.querySelector(".sm-since").textContent`); !strings.Contains(s, "since the server started") {
		t.Errorf("the page does not say what the counts cover: %q", s)
	}

	tb.do(chromedp.Click(chromedp.CSS(`.sm-node[data-name="task-api"] .body`)))
	waitPanel := func() {
		t.Helper()
		if _, err := chromedp.Run(tb.ctx, chromedp.Poll[bool](`document.querySelector(".sm-panel")?.dataset.state === "ready" && !!document.querySelector(".ops-table")`,
			chromedp.WithPollingTimeout(10*time.Second))); err != nil {
			t.Fatalf("no operations table for task-api: %v; panel %q", err, eval[string](tb, `document.querySelector(".sm-panel").textContent`))
		}
	}
	waitPanel()
	if !eval[bool](tb, `document.querySelector('.sm-node[data-name="task-api"]').classList.contains("selected")`) {
		t.Error("task-api is not marked selected")
	}
	if q := eval[string](tb, `location.search`); q != "?service=task-api" {
		t.Errorf("URL after selecting task-api: %q", q)
	}
	ops := eval[[]smOp](tb, smOpsJS)
	byOp := map[string]smOp{}
	for _, o := range ops {
		byOp[o.Op] = o
	}
	if o := byOp["process_single_task"]; o.Calls != "5" || o.Errs != "40%" {
		t.Errorf("process_single_task: %+v, want 5 calls and 40%% errors", o)
	}
	if o, ok := byOp["pymongo.insert_one"]; !ok || o.Calls != "1" || o.P95 == "" || o.P95 == "–" {
		t.Errorf("pymongo.insert_one: %+v in %+v", o, ops)
	}
	if q := searchQuery(t, byOp["process_single_task"].Href); q != `{ resource.service.name = "task-api" && name = "process_single_task" }` {
		t.Errorf("process_single_task's traces query %q", q)
	}
	href := eval[string](tb, `document.querySelector(".sm-panel .traces-link")?.getAttribute("href") ?? ""`)
	if q := searchQuery(t, href); q != `{ resource.service.name = "task-api" }` {
		t.Errorf("task-api's traces query %q", q)
	}
	if c := eval[string](tb, `document.querySelector(".sm-conns").textContent`); !strings.Contains(c, "mongodb") || !strings.Contains(c, "notification-service") {
		t.Errorf("connections of task-api: %q", c)
	}
	tb.screenshot("services-task-api")

	// Sorting: calls start descending, a click on the sorted column flips it, a click on another
	// column sorts by that one.
	calls := func() []int {
		var out []int
		for _, o := range eval[[]smOp](tb, smOpsJS) {
			n, _ := strconv.Atoi(o.Calls)
			out = append(out, n)
		}
		return out
	}
	if c := calls(); !slices.IsSortedFunc(c, func(a, b int) int { return b - a }) {
		t.Errorf("calls not descending at first: %v", c)
	}
	tb.do(chromedp.Click(chromedp.CSS(`.ops-table th[data-key="calls"] button`)))
	if c := calls(); !slices.IsSorted(c) || len(c) < 2 || c[0] == c[len(c)-1] {
		t.Errorf("calls not ascending after a click: %v", c)
	}
	tb.do(chromedp.Click(chromedp.CSS(`.ops-table th[data-key="errorShare"] button`)))
	if s := eval[string](tb, `document.querySelector('.ops-table th[data-key="errorShare"]').getAttribute("aria-sort")`); s != "descending" {
		t.Errorf("error %% column aria-sort %q", s)
	}
	errs := eval[[]string](tb, `[...document.querySelectorAll(".ops-table tbody .errs")].map(e => e.textContent)`)
	if len(errs) == 0 || errs[0] != "100%" || errs[len(errs)-1] != "0%" {
		t.Errorf("error shares after sorting by them: %v", errs)
	}

	// Refresh redraws the map and keeps the selection and the sort.
	tb.do(chromedp.Click(chromedp.CSS("button.refresh")))
	if _, err := chromedp.Run(tb.ctx, chromedp.Poll[bool](`!document.querySelector("button.refresh").disabled`,
		chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatal(err)
	}
	waitPanel()
	if s := eval[string](tb, `document.querySelector('.ops-table th[aria-sort="descending"]')?.dataset.key ?? ""`); s != "errorShare" {
		t.Errorf("sorted by %q after refresh", s)
	}

	tb.do(chromedp.Click(chromedp.CSS(".theme-toggle")))
	tb.screenshot("services-task-api-dark")
	tb.do(chromedp.Click(chromedp.CSS(".theme-toggle")))

	// A database has no operations of its own; its panel says who calls it.
	tb.do(chromedp.Click(chromedp.CSS(`.sm-node[data-name="mongodb"] .body`)))
	if _, err := chromedp.Run(tb.ctx, chromedp.Poll[bool](`document.querySelector(".sm-panel").dataset.state === "ready" && !document.querySelector(".ops-table")`,
		chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatal(err)
	}
	if c := eval[string](tb, `document.querySelector(".sm-panel").textContent`); !strings.Contains(c, "Called by") || !strings.Contains(c, "task-api") {
		t.Errorf("mongodb panel: %q", c)
	}
	if !eval[bool](tb, `document.querySelector('.sm-labels .sm-edge[data-client="task-api"][data-server="notification-service"]').classList.contains("dim")`) {
		t.Error("edges away from the selected node are not dimmed")
	}
	tb.screenshot("services-mongodb")

	// A deep link opens with the service selected, and its traces link goes to the search.
	tb.open("/services?service=task-api")
	waitPanel()
	if code, body := httpGet(t, base+"/api/search?q="+url.QueryEscape("{}"), ""); code == http.StatusNotFound {
		t.Logf("not following the traces link: the search endpoint answers 404 (not in this build yet): %s", bytes.TrimSpace(body))
		return
	}
	tb.do(chromedp.Click(chromedp.CSS(".sm-panel .traces-link")))
	tb.waitReady()
	if p := eval[string](tb, `location.pathname`); p != "/search" {
		t.Errorf("traces link went to %q", p)
	}
	if q := eval[string](tb, `document.querySelector("input.traceql").value`); q != `{ resource.service.name = "task-api" }` {
		t.Errorf("search page shows query %q", q)
	}
}
