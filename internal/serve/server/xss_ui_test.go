package server_test

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Payloads an attacker who can send spans would try: each sets window.__xss if it ever runs.
var xssPayloads = []string{
	`<script>window.__xss="script"</script>`,
	`"><img src=x onerror="window.__xss='img'">`,
	`javascript:window.__xss='url'`,
	`<svg onload="window.__xss='svg'"></svg>`,
	`'><iframe srcdoc="<script>parent.__xss='iframe'</script>">`,
}

// TestUIRendersSpanDataAsText sends spans whose every field carries a markup payload through
// the real OpenTelemetry SDK and opens them in headless Chromium: the payloads must appear as
// text, nothing may run, no element may be injected and the console stays clean (a CSP
// violation is a console error too).
func TestUIRendersSpanDataAsText(t *testing.T) {
	needChromium(t)
	s := startServer(t, testConfig(t.TempDir()))
	ctx := context.Background()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(s.OTLPHTTPAddr), otlptracehttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("<b>long</b>", 2000) // 22,000 characters
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", xssPayloads[1]),
			attribute.String(xssPayloads[3], xssPayloads[2]))))
	tr := tp.Tracer(xssPayloads[4])
	start := time.Now().Add(-time.Minute)
	rootCtx, root := tr.Start(ctx, xssPayloads[0], trace.WithTimestamp(start))
	var attrs []attribute.KeyValue
	for i, p := range xssPayloads {
		attrs = append(attrs, attribute.String(p, xssPayloads[(i+1)%len(xssPayloads)]))
	}
	attrs = append(attrs, attribute.String("long", long), attribute.StringSlice("list", xssPayloads))
	_, child := tr.Start(rootCtx, xssPayloads[2], trace.WithTimestamp(start.Add(time.Millisecond)), trace.WithAttributes(attrs...))
	child.AddEvent(xssPayloads[1], trace.WithTimestamp(start.Add(2*time.Millisecond)),
		trace.WithAttributes(attribute.String(xssPayloads[0], xssPayloads[3])))
	child.AddEvent("exception", trace.WithTimestamp(start.Add(3*time.Millisecond)), trace.WithAttributes(
		attribute.String("exception.type", xssPayloads[3]),
		attribute.String("exception.message", xssPayloads[0]),
		attribute.String("exception.stacktrace", xssPayloads[1]+"\n\tat "+xssPayloads[4])))
	child.SetStatus(codes.Error, xssPayloads[4])
	child.End(trace.WithTimestamp(start.Add(5 * time.Millisecond)))
	root.End(trace.WithTimestamp(start.Add(10 * time.Millisecond)))
	traceID, spanID := root.SpanContext().TraceID().String(), child.SpanContext().SpanID().String()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatalf("SDK flush: %v", err)
	}

	browser := startBrowser(t)
	base := "http://" + s.HTTPAddr
	// injected is what a payload that became markup would leave behind.
	const injected = `JSON.stringify({xss: window.__xss ?? null,
		nodes: document.querySelectorAll("#main img, #main script, #main iframe, #main svg[onload], #main b, [onerror], [onload]").length,
		jsLinks: [...document.querySelectorAll("a[href]")].filter(a => a.protocol === "javascript:").length})`
	const clean = `{"xss":null,"nodes":0,"jsLinks":0}`

	t.Run("trace", func(t *testing.T) {
		tb := openTab(t, browser, base)
		tb.open("/trace/" + traceID + "?span=" + spanID)
		if got := eval[string](tb, injected); got != clean {
			t.Fatalf("payload ran or injected markup: %s", got)
		}
		text := eval[string](tb, `document.querySelector("#main").innerText`)
		for _, p := range xssPayloads {
			if !strings.Contains(text, p) {
				t.Errorf("payload %q is not shown as text", p)
			}
		}
		details := eval[string](tb, `document.querySelector(".details")?.textContent ?? ""`)
		if !strings.Contains(details, long[:2000]) {
			t.Errorf("the long attribute value is not shown as text")
		}
		if st := eval[string](tb, `document.querySelector(".details .stacktrace")?.textContent ?? ""`); !strings.Contains(st, xssPayloads[1]) {
			t.Errorf("stack trace shown as %q", st)
		}
		tb.screenshot("xss-trace")
	})
	t.Run("search", func(t *testing.T) {
		tb := openTab(t, browser, base)
		tb.open("/search")
		if got := eval[string](tb, injected); got != clean {
			t.Fatalf("payload ran or injected markup: %s", got)
		}
		text := eval[string](tb, `document.querySelector("#main").innerText`)
		if !strings.Contains(text, xssPayloads[0]) {
			t.Errorf("root span name not shown as text in the results:\n%.2000s", text)
		}
	})
	t.Run("services", func(t *testing.T) {
		tb := openTab(t, browser, base)
		tb.open("/services")
		if got := eval[string](tb, injected); got != clean {
			t.Fatalf("payload ran or injected markup: %s", got)
		}
	})
	t.Run("compare", func(t *testing.T) {
		tb := openTab(t, browser, base)
		tb.open("/compare?" + url.Values{"service": {xssPayloads[1]}, "name": {xssPayloads[2]}}.Encode())
		brushHeatmap(tb, 0, eval[int](tb, `+document.querySelector(".cmp-canvas").dataset.rows`)-1)
		if got := eval[string](tb, injected); got != clean {
			t.Fatalf("payload ran or injected markup: %s", got)
		}
		text := eval[string](tb, `document.querySelector("#main").innerText`)
		if !strings.Contains(text, "1 span selected") || !strings.Contains(text, "service.name = "+strconv.Quote(xssPayloads[1])) {
			t.Errorf("compare page:\n%.2000s", text)
		}
	})
	t.Run("trace ID in the URL", func(t *testing.T) {
		tb := openTab(t, browser, base)
		tb.open("/trace/" + strings.ReplaceAll(xssPayloads[1], "/", "%2F"))
		if got := eval[string](tb, injected); got != clean {
			t.Fatalf("payload ran or injected markup: %s", got)
		}
		if text := eval[string](tb, `document.querySelector("#main").innerText`); !strings.Contains(text, "not a trace ID") ||
			!strings.Contains(text, strings.ToLower(xssPayloads[1])) {
			t.Errorf("page for a markup trace ID: %q", text)
		}
	})
}
