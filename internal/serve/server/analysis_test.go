package server_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestAnalysisEndpoints(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	traces, _ := exportGuide(t, s, "grpc")
	base := "http://" + s.HTTPAddr
	createTask, denied := traces[0], traces[1]

	code, body := httpGet(t, fmt.Sprintf("%s/api/analysis/traces/%s", base, createTask.TraceID), "")
	if code != 200 {
		t.Fatalf("analysis: %d %s", code, body)
	}
	var a struct {
		WhySlow struct {
			Sentence    string
			SingleCause bool
			TopSpanID   string
		}
		CriticalPath struct {
			TotalNanos int64
			Segments   []struct{ Name string }
		}
		Lints []struct{ Rule string }
	}
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(a.WhySlow.Sentence, "pymongo.insert_one") || !strings.Contains(a.WhySlow.Sentence, "db.system=mongodb") || !a.WhySlow.SingleCause {
		t.Errorf("why-slow = %+v", a.WhySlow)
	}
	if a.CriticalPath.TotalNanos != 250e6 || len(a.CriticalPath.Segments) == 0 {
		t.Errorf("critical path = %+v", a.CriticalPath)
	}
	if len(a.Lints) != 0 {
		t.Errorf("lints on the guide's clean trace: %+v", a.Lints)
	}

	code, body = httpGet(t, fmt.Sprintf("%s/api/analysis/diff?a=%s&b=%s", base, createTask.TraceID, denied.TraceID), "")
	var d struct {
		Added, Missing []string
	}
	if code != 200 || json.Unmarshal(body, &d) != nil || len(d.Added) == 0 || len(d.Missing) == 0 {
		t.Errorf("diff: %d %s", code, body)
	}

	code, body = httpGet(t, base+"/api/analysis/lints?since=1h", "")
	var l struct {
		TracesExamined int
		Services       []any
	}
	if code != 200 || json.Unmarshal(body, &l) != nil || l.TracesExamined != 4 || len(l.Services) != 0 {
		t.Errorf("lint report over the guide's clean traces: %d %s", code, body)
	}

	for path, want := range map[string]int{
		"/api/analysis/traces/zz":                               400,
		"/api/analysis/traces/0123456789abcdef0123456789abcdef": 404,
		"/api/analysis/diff?a=" + createTask.TraceID.String():   400,
		"/api/analysis/lints?since=yesterday":                   400,
		"/api/analysis/lints?limit=-1":                          400,
	} {
		if code, body := httpGet(t, base+path, ""); code != want {
			t.Errorf("%s: %d %s, want %d", path, code, body, want)
		}
	}
}
