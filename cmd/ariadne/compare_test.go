package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TestCompareCommand: slow lookups are exactly those on the unindexed column, sent through the
// real SDK; `ariadne compare` lists that statement first with an example trace that pastes into
// `ariadne trace`, leaves the per-request ID out, and refuses a bad query.
func TestCompareCommand(t *testing.T) {
	slow := map[string]bool{}
	_, srv := startWithGuide(t, func(ctx context.Context, tp *sdktrace.TracerProvider) {
		base := time.Now().Add(-5 * time.Minute)
		tracer := tp.Tracer("orders")
		for i := range 120 {
			stmt := []string{"SELECT * FROM tasks WHERE id = ?", "SELECT * FROM tasks WHERE owner = ?", "SELECT * FROM tasks WHERE body LIKE ?"}[i%3]
			dur := time.Duration(10+i%7) * time.Millisecond
			if i%3 == 2 {
				dur = 700*time.Millisecond + time.Duration(i)*time.Millisecond
			}
			start := base.Add(time.Duration(i) * 50 * time.Millisecond)
			_, s := tracer.Start(ctx, "find tasks", trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindClient),
				trace.WithAttributes(attribute.String("db.system", "mongodb"), attribute.String("db.statement", stmt),
					attribute.Int("request.n", i*7919)))
			s.End(trace.WithTimestamp(start.Add(dur)))
			if i%3 == 2 {
				slow[s.SpanContext().TraceID().String()] = true
			}
		}
	})
	var out, errOut bytes.Buffer
	if code := run([]string{"compare", "--server", srv, "{ duration > 500ms }", "--since", "1h"}, &out, &errOut); code != 0 {
		t.Fatalf("compare: exit %d %s", code, errOut.String())
	}
	lines := strings.Split(out.String(), "\n")
	var first string
	for i, l := range lines {
		if strings.HasPrefix(l, "ATTRIBUTE") && i+1 < len(lines) {
			first = lines[i+1]
			break
		}
	}
	if !strings.HasPrefix(first, "span.db.statement") || !strings.Contains(first, `"SELECT * FROM tasks WHERE body LIKE ?"`) ||
		!strings.Contains(first, "100.0% (40)") || !strings.Contains(first, "0.0% (0)") {
		t.Fatalf("first row %q, want the unindexed statement:\n%s", first, out.String())
	}
	f := strings.Fields(first)
	if id := f[len(f)-1]; !slow[id] {
		t.Errorf("example trace %s is not a slow one", id)
	}
	if !strings.Contains(out.String(), "Left out as identifiers") || !strings.Contains(out.String(), "span.request.n") {
		t.Errorf("the request number is not recognised as an identifier:\n%s", out.String())
	}

	out.Reset()
	if code := run([]string{"compare", "--server", srv, `{ span.db.system = "none" }`}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "No spans match") {
		t.Errorf("empty selection: exit %d\n%s", code, out.String())
	}
	errOut.Reset()
	if code := run([]string{"compare", "--server", srv, `{ duration > }`}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "invalid TraceQL") {
		t.Fatalf("bad query: exit %d, %q", code, errOut.String())
	}
}
