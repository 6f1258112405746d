package api

import (
	"testing"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
)

func TestJaegerFilterAsTraceQL(t *testing.T) {
	for _, c := range []struct {
		f    traceFilter
		want string
	}{
		{traceFilter{service: "task-api"}, `{ resource.service.name = "task-api" }`},
		{traceFilter{service: "a", operation: `say "hi"`, minDur: 100 * time.Millisecond, maxDur: time.Second},
			`{ resource.service.name = "a" && name = "say \"hi\"" && duration >= 100000000ns && duration <= 1000000000ns }`},
		{traceFilter{tags: map[string]string{"error": "true", "span.kind": "client", "otel.status_code": "OK"}},
			`{ status = error && status = ok && kind = client }`}, // tags in key order
		{traceFilter{tags: map[string]string{"http.status_code": "500", "ok": "true", "w s": "x"}},
			`{ (.http.status_code = "500" || .http.status_code = 500) && (.ok = "true" || .ok = true) && ."w s" = "x" }`},
	} {
		got := c.f.traceQL()
		if got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
		if _, err := traceql.Parse(got); err != nil {
			t.Errorf("%s does not parse: %v", got, err)
		}
	}
}
