package server_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestJaegerAPI checks the Jaeger query API's shapes (from Jaeger's published OpenAPI description
// for v3, and the classic JSON Jaeger UI reads) over the guide's traces sent through the real SDK.
func TestJaegerAPI(t *testing.T) {
	s := startServer(t, testConfig(t.TempDir()))
	traces, _ := exportGuide(t, s, "grpc")
	base := "http://" + s.HTTPAddr
	get := func(path string, out any) int {
		t.Helper()
		code, body := httpGet(t, base+path, "")
		if out != nil && code == 200 {
			if err := json.Unmarshal(body, out); err != nil {
				t.Fatalf("%s: %v\n%s", path, err, body)
			}
		}
		return code
	}

	var services struct{ Services []string }
	if get("/api/v3/services", &services) != 200 || strings.Join(services.Services, ",") != "notification-service,task-api" {
		t.Errorf("v3 services: %v", services)
	}
	var ops struct {
		Operations []struct{ Name, SpanKind string }
	}
	if get("/api/v3/operations?service=task-api&spanKind=client", &ops) != 200 {
		t.Fatal("v3 operations")
	}
	names := map[string]bool{}
	for _, o := range ops.Operations {
		names[o.Name] = true
		if o.SpanKind != "client" {
			t.Errorf("operation %+v is not a client span", o)
		}
	}
	if !names["pymongo.insert_one"] {
		t.Errorf("v3 client operations of task-api: %v", ops.Operations)
	}

	var one struct {
		Result struct {
			ResourceSpans []struct {
				ScopeSpans []struct {
					Spans []struct{ TraceID, Name string }
				}
			}
		}
	}
	createTask := traces[0]
	if get("/api/v3/traces/"+createTask.TraceID.String(), &one) != 200 || len(one.Result.ResourceSpans) == 0 {
		t.Fatalf("v3 trace: %+v", one)
	}
	var jerr struct {
		Error struct {
			GrpcCode, HttpCode int
			Message            string
		}
	}
	code, body := httpGet(t, base+"/api/v3/traces/0123456789abcdef0123456789abcdef", "")
	if code != 404 || json.Unmarshal(body, &jerr) != nil || jerr.Error.GrpcCode != 5 || jerr.Error.HttpCode != 404 {
		t.Errorf("v3 unknown trace: %d %s", code, body)
	}

	min, max := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano), time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)
	search := func(extra string) map[string]bool {
		t.Helper()
		var res struct {
			Result struct {
				ResourceSpans []struct {
					ScopeSpans []struct {
						Spans []struct{ TraceId string }
					}
				}
			}
		}
		path := "/api/v3/traces?query.startTimeMin=" + url.QueryEscape(min) + "&query.startTimeMax=" + url.QueryEscape(max) + extra
		if code := get(path, &res); code != 200 {
			t.Fatalf("%s: %d", path, code)
		}
		ids := map[string]bool{}
		for _, rs := range res.Result.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					ids[sp.TraceId] = true
				}
			}
		}
		return ids
	}
	if ids := search("&query.serviceName=task-api&query.operationName=pymongo.insert_one&query.durationMin=100ms"); len(ids) != 1 || !ids[createTask.TraceID.String()] {
		t.Errorf("search for the slow insert: %v", ids)
	}
	if ids := search("&query.serviceName=task-api&query.durationMin=10s"); len(ids) != 0 {
		t.Errorf("search for 10s spans found %v", ids)
	}
	if ids := search("&query.serviceName=notification-service"); len(ids) != 1 || !ids[traces[2].TraceID.String()] {
		t.Errorf("search for notification-service: %v", ids)
	}
	if ids := search("&query.attributes%5Bdb.system%5D=mongodb"); len(ids) != 1 {
		t.Errorf("search by attribute: %v", ids)
	}
	if code := get("/api/v3/traces?query.serviceName=task-api", nil); code != 400 {
		t.Errorf("search without time range: %d, want 400", code)
	}

	var deps struct {
		Dependencies []struct{ Parent, Child, CallCount string }
	}
	if get("/api/v3/dependencies", &deps) != 200 {
		t.Fatal("v3 dependencies")
	}
	found := false
	for _, d := range deps.Dependencies {
		found = found || (d.Parent == "task-api" && d.Child == "notification-service" && d.CallCount == "1")
	}
	if !found {
		t.Errorf("v3 dependencies: %+v", deps)
	}

	// The classic API Jaeger UI reads, under /jaeger.
	var jt struct {
		Data []struct {
			TraceID string
			Spans   []struct {
				SpanID, OperationName, ProcessID string
				References                       []struct{ RefType, SpanID string }
				StartTime, Duration              int64
				Tags                             []struct {
					Key, Type string
					Value     any
				}
				Logs []struct {
					Timestamp int64
					Fields    []struct {
						Key   string
						Value any
					}
				}
			}
			Processes map[string]struct{ ServiceName string }
		}
	}
	denied := traces[1]
	if get("/jaeger/api/traces/"+denied.TraceID.String(), &jt) != 200 || len(jt.Data) != 1 {
		t.Fatalf("jaeger trace: %+v", jt)
	}
	var sawError, sawException bool
	for _, sp := range jt.Data[0].Spans {
		if jt.Data[0].Processes[sp.ProcessID].ServiceName != "task-api" {
			t.Errorf("span %s: process %q", sp.OperationName, sp.ProcessID)
		}
		for _, tag := range sp.Tags {
			sawError = sawError || (tag.Key == "error" && tag.Value == true)
		}
		for _, l := range sp.Logs {
			for _, f := range l.Fields {
				sawException = sawException || (f.Key == "event" && f.Value == "exception")
			}
		}
		if sp.OperationName == "check_authorization" && (len(sp.References) != 1 || sp.References[0].RefType != "CHILD_OF") {
			t.Errorf("check_authorization references %+v", sp.References)
		}
	}
	if !sawError || !sawException {
		t.Errorf("jaeger trace lacks the error tag (%v) or exception log (%v)", sawError, sawException)
	}
	var list struct{ Data []string }
	if get("/jaeger/api/services", &list) != 200 || len(list.Data) != 2 {
		t.Errorf("jaeger services %v", list)
	}
	if get("/jaeger/api/services/task-api/operations", &list) != 200 || len(list.Data) < 10 {
		t.Errorf("jaeger operations %v", list)
	}
	start := time.Now().Add(-time.Hour).UnixMicro()
	jt.Data = nil
	if get(fmt.Sprintf("/jaeger/api/traces?service=task-api&tags=%s&start=%d&limit=10", url.QueryEscape(`{"error":"true"}`), start), &jt) != 200 {
		t.Fatal("jaeger search")
	}
	if len(jt.Data) != 2 { // the permission-denied trace and the batch with failing tasks
		t.Errorf("jaeger search for errors found %d traces", len(jt.Data))
	}
	var jdeps struct {
		Data []struct {
			Parent, Child string
			CallCount     int
		}
	}
	if get("/api/dependencies?endTs=0&lookback=3600000", &jdeps) != 200 || len(jdeps.Data) == 0 {
		t.Errorf("jaeger dependencies %+v", jdeps)
	}
	for path, want := range map[string]int{"/jaeger/api/traces/zz": 400, "/jaeger/api/traces?limit=x": 400,
		"/jaeger/api/traces?tags=notjson": 400, "/api/v3/operations": 400} {
		if code := get(path, nil); code != want {
			t.Errorf("%s: %d, want %d", path, code, want)
		}
	}
}
