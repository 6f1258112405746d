package server_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

type cmpRow struct {
	Key      string   `json:"key"`
	Value    string   `json:"value"`
	Class    string   `json:"class"`
	Examples []string `json:"examples"`
}

const cmpRowsJS = `[...document.querySelectorAll(".cmp-table tbody tr")].map(r => ({
	key: r.querySelector(".cmp-key").textContent, value: r.querySelector(".cmp-value").textContent, class: r.className,
	examples: [...r.querySelectorAll(".cmp-examples a")].map(a => a.getAttribute("href")) }))`

// TestCompareUIBrushesHeatmap drives the compare page in headless Chromium: the orders service's
// database spans, slow exactly when they query the unindexed column, are drawn as a heatmap; a
// mouse drag over the slow band selects them, the planted statement ranks first, and its example
// link opens a slow trace in the trace view.
func TestCompareUIBrushesHeatmap(t *testing.T) {
	browser := startBrowser(t)
	s := startServer(t, testConfig(t.TempDir()))
	slow, _ := sendShop(t, s, shopTraffic{traces: 300, plantSlow: true}, 3)
	waitSpans(t, s, 600)
	if len(slow) == 0 {
		t.Fatal("no slow traces planted")
	}

	tb := openTab(t, browser, "http://"+s.HTTPAddr)
	tb.open("/compare?" + url.Values{"service": {"orders"}, "name": {"SELECT orders"}, "range": {"1h"}}.Encode())
	if n := eval[int](tb, `document.querySelectorAll(".cmp-canvas").length`); n != 1 {
		t.Fatalf("no heatmap drawn: %s", eval[string](tb, `document.querySelector(".cmp-map").textContent`))
	}
	// The heatmap's rows, from the same API the page read: the brush covers every row whose
	// lower edge is 300ms or more (the slow statements take 600ms to 1s, the rest under 50ms).
	code, body := httpGet(t, "http://"+s.HTTPAddr+"/api/analysis/heatmap?"+url.Values{
		"q": {`{ resource.service.name = "orders" && name = "SELECT orders" }`}, "columns": {"60"}}.Encode(), "")
	var hm struct {
		Bounds []int64   `json:"boundsNanos"`
		Counts [][]int64 `json:"counts"`
		Total  int64     `json:"total"`
	}
	if code != 200 || json.Unmarshal(body, &hm) != nil || hm.Total != 300 {
		t.Fatalf("heatmap API: %d %s", code, body)
	}
	rows := len(hm.Bounds) - 1
	slowRow := -1
	for r := range rows {
		if hm.Bounds[r] >= 300e6 {
			slowRow = r
			break
		}
	}
	if slowRow < 0 {
		t.Fatalf("no row above 300ms in %v", hm.Bounds)
	}
	if g := brushHeatmap(tb, slowRow, rows-1); g.Rows != rows {
		t.Fatalf("page drew %d rows, API has %d", g.Rows, rows)
	}
	info := eval[string](tb, `document.querySelector(".cmp-info").textContent`)
	if !strings.Contains(info, "duration > ") || !strings.Contains(info, "duration < ") {
		t.Errorf("selection not shown as a duration filter: %q", info)
	}
	got := eval[[]cmpRow](tb, cmpRowsJS)
	if len(got) == 0 || got[0].Key != "span.db.statement" || got[0].Value != "SELECT * FROM orders WHERE note LIKE ?" ||
		!strings.Contains(" "+got[0].Class+" ", " significant ") || len(got[0].Examples) == 0 {
		tb.screenshot("compare-brush")
		t.Fatalf("first difference = %+v, want the unindexed statement, significant, with examples", got)
	}
	sides := eval[string](tb, `document.querySelector(".cmp-sides").textContent`)
	if want := "spans selected"; !strings.Contains(sides, want) || !strings.HasPrefix(sides, itoa(int64(len(slow)))) {
		t.Errorf("selection size %q, want %d spans selected", sides, len(slow))
	}

	// The example opens in the trace view, and it is one of the slow traces.
	href := got[0].Examples[0]
	id := strings.TrimPrefix(href, "/trace/")
	if !slow[id] {
		t.Errorf("example %s is not a slow trace", id)
	}
	tb.do(chromedp.Click(chromedp.CSS(`.cmp-table tbody tr:first-child .cmp-examples a`)))
	tb.waitReady()
	if p := eval[string](tb, `location.pathname`); p != href {
		t.Fatalf("example link led to %s, want %s", p, href)
	}
	if n := eval[int](tb, `document.querySelectorAll(".wf-layer .row").length`); n != 2 {
		t.Errorf("trace view shows %d spans, want the trace's 2", n)
	}
}

type heatGeom struct {
	X, Y, Left, Top, CellW, CellH float64
	Rows, Cols                    int
}

// brushHeatmap drags the mouse, with real input events, over every column of the compare page's
// heatmap from row r0 to row r1 (row 0 the fastest, drawn at the bottom), and waits for the
// comparison it starts to be drawn.
func brushHeatmap(tb *tab, r0, r1 int) heatGeom {
	tb.t.Helper()
	g := eval[heatGeom](tb, `(() => { const c = document.querySelector(".cmp-canvas"), r = c.getBoundingClientRect(), d = c.dataset;
		return { x: r.left, y: r.top, left: +d.left, top: +d.top, cellW: +d.cellW, cellH: +d.cellH, rows: +d.rows, cols: +d.cols }; })()`)
	x0, y0 := g.X+g.Left+1, g.Y+g.Top+float64(g.Rows-1-r1)*g.CellH+1
	x1, y1 := g.X+g.Left+float64(g.Cols)*g.CellW-1, g.Y+g.Top+float64(g.Rows-r0)*g.CellH-1
	tb.do(chromedp.MouseEvent(chromedp.MouseMoved, x0, y0),
		chromedp.MouseEvent(chromedp.MousePressed, x0, y0, chromedp.Button("left"), chromedp.ClickCount(1)),
		chromedp.MouseEvent(chromedp.MouseMoved, (x0+x1)/2, (y0+y1)/2, chromedp.Button("left")),
		chromedp.MouseEvent(chromedp.MouseMoved, x1, y1, chromedp.Button("left")),
		chromedp.MouseEvent(chromedp.MouseReleased, x1, y1, chromedp.Button("left"), chromedp.ClickCount(1)))
	state, err := chromedp.Run(tb.ctx, chromedp.Poll[string](
		`(s => s === "ready" || s === "error" ? s : "")(document.querySelector(".cmp-results").dataset.state)`))
	if err != nil || state != "ready" {
		tb.t.Fatalf("compare never answered (%v): %s", err, eval[string](tb, `document.querySelector(".cmp-results").textContent`))
	}
	return g
}
