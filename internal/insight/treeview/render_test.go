package treeview

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

var base = time.Date(2024, time.January, 15, 10, 30, 0, 0, time.UTC)

func at(ms float64) uint64 {
	return uint64(base.Add(time.Duration(ms * float64(time.Millisecond))).UnixNano())
}

func id(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func i64(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

const traceHex = "4bf92f3577b34da6a3ce929d0e0e4736"

// sp builds a span of the test trace; parent "" makes a root.
func sp(name, spanID, parent string, start, end float64, attrs ...*commonpb.KeyValue) *tracepb.Span {
	s := &tracepb.Span{
		TraceId:           id(traceHex),
		SpanId:            id(spanID),
		Name:              name,
		StartTimeUnixNano: at(start),
		EndTimeUnixNano:   at(end),
		Attributes:        attrs,
	}
	if parent != "" {
		s.ParentSpanId = id(parent)
	}
	return s
}

func service(name string, spans ...*tracepb.Span) *tracepb.ResourceSpans {
	return &tracepb.ResourceSpans{
		Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", name)}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}},
	}
}

// createTask is the guide's "Span Hierarchy" with Example 1's details,
// deliberately stored out of order so sorting is exercised.
func createTask() *tracepb.TracesData {
	ent := sp("create_task_entity", "b7ad6b7169203331", "00f067aa0ba902b7", 10, 25,
		str("task.title", "Implement feature X"), str("task.priority", "high"),
		str("task.id", "uuid-1234"), str("task.created_at", "2024-01-15T10:30:00Z"))
	ent.Events = []*tracepb.Span_Event{
		{Name: "task_entity_created", TimeUnixNano: at(25), Attributes: []*commonpb.KeyValue{str("task.id", "uuid-1234")}},
		{Name: "creating_task_entity", TimeUnixNano: at(10)},
	}
	ent.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_OK}
	return &tracepb.TracesData{ResourceSpans: []*tracepb.ResourceSpans{service("task-api",
		sp("record_metrics", "1c2d3e4f5a6b7c85", "00f067aa0ba902b7", 235, 240),
		sp("POST /api/tasks", "00f067aa0ba902b7", "", 0, 250,
			str("http.request.method", "POST"), str("url.path", "/api/tasks"), i64("http.response.status_code", 201)),
		sp("motor_task_repository.add", "f3e7a0b2c1d4e5f6", "00f067aa0ba902b7", 30, 230),
		sp("pymongo.insert_one", "7d2ea792e2df6a01", "f3e7a0b2c1d4e5f6", 40, 220,
			str("db.system", "mongodb"), str("db.operation", "insert"), str("db.collection", "tasks")),
		sp("serialize_task", "1c2d3e4f5a6b7c83", "f3e7a0b2c1d4e5f6", 30, 40),
		sp("publish_domain_events", "1c2d3e4f5a6b7c84", "f3e7a0b2c1d4e5f6", 220, 230),
		ent,
		sp("validate_input", "1c2d3e4f5a6b7c81", "b7ad6b7169203331", 10, 15),
		sp("create_domain_object", "1c2d3e4f5a6b7c82", "b7ad6b7169203331", 15, 25),
	)}}
}

func render(t *testing.T, td *tracepb.TracesData, opts Options) string {
	t.Helper()
	var buf bytes.Buffer
	if err := Render(&buf, td, opts); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it)\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func checkWidth(t *testing.T, out string, w int) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if n := utf8.RuneCountInString(l); n > w {
			t.Errorf("line of %d columns > %d: %q", n, w, l)
		}
	}
}

func TestGoldenCreateTask(t *testing.T) {
	out := render(t, createTask(), Options{})
	golden(t, "create_task.txt", out)
	checkWidth(t, out, DefaultWidth)
}

func TestGoldenCreateTaskDetails(t *testing.T) {
	out := render(t, createTask(), Options{Attributes: true, Events: true})
	golden(t, "create_task_details.txt", out)
	checkWidth(t, out, DefaultWidth)
}

func TestTreeShape(t *testing.T) {
	out := render(t, createTask(), Options{})
	for _, want := range []string{
		"Trace " + traceHex + " · task-api · 250ms · 9 spans · 0 errors\n",
		"POST /api/tasks [task-api] (250ms)\n",
		"├─ create_task_entity (15ms)\n",
		"│  ├─ validate_input (5ms)\n",
		"│  └─ create_domain_object (10ms)\n",
		// Self time picks the slowest span, as the guide marks it.
		"├─ motor_task_repository.add (200ms)\n",
		"│  ├─ pymongo.insert_one (180ms) ← slowest\n",
		"│  └─ publish_domain_events (10ms)\n",
		"└─ record_metrics (5ms)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Error("colour without Options.Color")
	}
}

func TestEventsAndAttributes(t *testing.T) {
	out := render(t, createTask(), Options{Events: true, Attributes: true})
	for _, want := range []string{
		"│  │  Events:\n",
		"│  │  ├─ creating_task_entity (t=0ms)\n",
		"│  │  └─ task_entity_created (t=15ms)\n",
		"│  │  Attributes:\n",
		"│  │  ├─ task.title: \"Implement feature X\"\n",
		"│  │  └─ task.created_at: \"2024-01-15T10:30:00Z\"\n",
		"│  └─ http.response.status_code: 201\n",
		"│  │  ├─ db.system: \"mongodb\"\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	if strings.Contains(render(t, createTask(), Options{Events: true}), "Attributes:") {
		t.Error("attributes printed without Options.Attributes")
	}
}

// guideExample1 is the guide's "Result in Grafana/Tempo" drawing, verbatim.
const guideExample1 = `POST /api/tasks (250ms)
├─ create_task_entity (20ms)
│  Events:
│  ├─ creating_task_entity (t=0ms)
│  └─ task_entity_created (t=15ms)
│  Attributes:
│  ├─ task.title: "Implement feature X"
│  ├─ task.priority: "high"
│  ├─ task.id: "uuid-1234"
│  └─ task.created_at: "2024-01-15T10:30:00Z"
└─ motor_task_repository.insert_one (180ms)
   Attributes:
   ├─ db.system: "mongodb"
   ├─ db.operation: "insert"
   └─ db.collection: "tasks"
`

func TestReproducesGuideExample1(t *testing.T) {
	ent := sp("create_task_entity", "b7ad6b7169203331", "00f067aa0ba902b7", 10, 30,
		str("task.title", "Implement feature X"), str("task.priority", "high"),
		str("task.id", "uuid-1234"), str("task.created_at", "2024-01-15T10:30:00Z"))
	ent.Events = []*tracepb.Span_Event{
		{Name: "creating_task_entity", TimeUnixNano: at(10)},
		{Name: "task_entity_created", TimeUnixNano: at(25), Attributes: []*commonpb.KeyValue{str("task.id", "uuid-1234")}},
	}
	td := &tracepb.TracesData{ResourceSpans: []*tracepb.ResourceSpans{service("task-api",
		sp("POST /api/tasks", "00f067aa0ba902b7", "", 0, 250),
		ent,
		sp("motor_task_repository.insert_one", "7d2ea792e2df6a01", "00f067aa0ba902b7", 40, 220,
			str("db.system", "mongodb"), str("db.operation", "insert"), str("db.collection", "tasks")),
	)}}
	out := render(t, td, Options{Attributes: true, Events: true})
	_, tree, _ := strings.Cut(out, "\n\n")
	// The guide draws neither the root's service nor the slowest marker.
	tree = strings.NewReplacer(" [task-api]", "", " ← slowest", "").Replace(tree)
	if tree != guideExample1 {
		t.Errorf("got\n%s\nwant\n%s", tree, guideExample1)
	}
	if !strings.Contains(out, "└─ motor_task_repository.insert_one (180ms) ← slowest\n") {
		t.Errorf("slowest not marked:\n%s", out)
	}
}

func denied() *tracepb.TracesData {
	root := sp("DELETE /api/tasks/{id}", "2d3e4f5a6b7c8d01", "", 0, 12)
	root.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "Permission denied"}
	auth := sp("check_authorization", "2d3e4f5a6b7c8d03", "2d3e4f5a6b7c8d01", 2, 5)
	auth.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "Forbidden"}
	auth.Events = []*tracepb.Span_Event{{Name: "exception", TimeUnixNano: at(5), Attributes: []*commonpb.KeyValue{
		str("exception.type", "PermissionError"),
		str("exception.message", "User lacks admin role"),
		str("exception.stacktrace", "goroutine 1 [running]:\n..."),
	}}}
	return &tracepb.TracesData{ResourceSpans: []*tracepb.ResourceSpans{service("task-api", root, auth)}}
}

func TestErrors(t *testing.T) {
	out := render(t, denied(), Options{Events: true})
	for _, want := range []string{
		"· 2 spans · 2 errors\n",
		// The root's own 9ms outweigh the 3ms check: self time includes the root.
		"DELETE /api/tasks/{id} [task-api] (12ms) ✗ ERROR: Permission denied ← slowest\n",
		"└─ check_authorization (3ms) ✗ ERROR: Forbidden\n",
		"   └─ exception (t=3ms) PermissionError: User lacks admin role\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "goroutine") {
		t.Error("stack trace printed")
	}
	golden(t, "permission_denied.txt", out)

	colored := render(t, denied(), Options{Events: true, Color: true})
	for _, want := range []string{
		ansiRed + " ✗ ERROR: " + ansiReset + ansiRed + "Forbidden" + ansiReset,
		ansiDim + " (3ms)" + ansiReset,
		ansiRed + "2 errors" + ansiReset,
	} {
		if !strings.Contains(colored, want) {
			t.Errorf("missing %q in\n%q", want, colored)
		}
	}
}

func TestOrphansAndServices(t *testing.T) {
	td := &tracepb.TracesData{ResourceSpans: []*tracepb.ResourceSpans{
		service("task-api",
			sp("POST /api/tasks/{id}/notify", "3e4f5a6b7c8d9e01", "", 0, 80),
			sp("POST", "3e4f5a6b7c8d9e03", "3e4f5a6b7c8d9e01", 5, 70),
			// Its parent was never received.
			sp("late_callback", "3e4f5a6b7c8d9e09", "0000000000000bad", 1, 3)),
		service("notification-service",
			sp("POST /api/notify", "4f5a6b7c8d9e0f01", "3e4f5a6b7c8d9e03", 10, 65),
			sp("send_notification", "4f5a6b7c8d9e0f02", "4f5a6b7c8d9e0f01", 15, 60)),
	}}
	out := render(t, td, Options{})
	want := "Trace " + traceHex + " · task-api · 80ms · 5 spans · 0 errors\n" +
		"\n" +
		"POST /api/tasks/{id}/notify [task-api] (80ms)\n" +
		"└─ POST (65ms)\n" +
		"   └─ POST /api/notify [notification-service] (55ms)\n" +
		"      └─ send_notification (45ms) ← slowest\n" +
		"late_callback [task-api] (2ms) (parent 0000000000000bad missing)\n"
	if out != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
}

func TestCycleStillShown(t *testing.T) {
	td := &tracepb.TracesData{ResourceSpans: []*tracepb.ResourceSpans{service("svc",
		sp("root", "0000000000000001", "", 0, 10),
		sp("a", "00000000000000aa", "00000000000000bb", 1, 2),
		sp("b", "00000000000000bb", "00000000000000aa", 2, 3),
	)}}
	out := render(t, td, Options{})
	if !strings.Contains(out, "a [svc] (1ms) (parent 00000000000000bb in a cycle)\n└─ b (1ms)") {
		t.Errorf("cycle not drawn:\n%s", out)
	}
}

func TestTruncation(t *testing.T) {
	long := strings.Repeat("very_long_operation_name_", 6)
	td := createTask()
	spans := td.ResourceSpans[0].ScopeSpans[0].Spans
	spans[0].Name = long
	spans[0].Attributes = []*commonpb.KeyValue{str("payload", strings.Repeat("x", 200))}
	spans[0].Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: strings.Repeat("boom ", 30)}
	td.ResourceSpans[0].Resource.Attributes[0] = str("service.name", strings.Repeat("svc", 30))
	for _, w := range []int{80, 40} {
		out := render(t, td, Options{Width: w, Attributes: true, Events: true})
		checkWidth(t, out, w)
		if !strings.Contains(out, "…") {
			t.Errorf("width %d: nothing truncated:\n%s", w, out)
		}
		if !strings.Contains(out, "9 spans · 1 error\n") {
			t.Errorf("width %d: header counts lost:\n%s", w, out)
		}
		if !strings.Contains(out, "(5ms)") {
			t.Errorf("width %d: duration lost:\n%s", w, out)
		}
	}
	// Colour codes must not count towards the width.
	out := render(t, td, Options{Color: true})
	plain := strings.NewReplacer(ansiRed, "", ansiDim, "", ansiReset, "").Replace(out)
	checkWidth(t, plain, DefaultWidth)
}

func TestControlCharactersNeutralised(t *testing.T) {
	td := createTask()
	td.ResourceSpans[0].ScopeSpans[0].Spans[0].Name = "evil\x1b[2Jname\nnext"
	out := render(t, td, Options{})
	if strings.Contains(out, "\x1b") || !strings.Contains(out, "evil [2Jname next") {
		t.Errorf("control characters leaked:\n%q", out)
	}
}

func TestEmpty(t *testing.T) {
	if err := Render(&bytes.Buffer{}, &tracepb.TracesData{}, Options{}); !errors.Is(err, ErrNoSpans) {
		t.Errorf("got %v, want ErrNoSpans", err)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                         "0ms",
		250 * time.Millisecond:    "250ms",
		1200 * time.Millisecond:   "1.2s",
		850 * time.Microsecond:    "850µs",
		15 * time.Millisecond:     "15ms",
		12500 * time.Microsecond:  "12.5ms",
		1234567 * time.Nanosecond: "1.23ms",
		999960 * time.Microsecond: "1s",
		500 * time.Nanosecond:     "500ns",
		65500 * time.Millisecond:  "1m5.5s",
		-3 * time.Millisecond:     "-3ms",
		2*time.Hour + time.Minute: "2h1m",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestFormatValue(t *testing.T) {
	arr := &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{
		{Value: &commonpb.AnyValue_StringValue{StringValue: "a"}},
		{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 0.5}},
		{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}},
	}}}}
	if got := formatValue(arr); got != `["a", 0.5, true]` {
		t.Errorf("array: %s", got)
	}
	kv := &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{Values: []*commonpb.KeyValue{i64("n", 3)}}}}
	if got := formatValue(kv); got != `{n: 3}` {
		t.Errorf("kvlist: %s", got)
	}
	if got := formatValue(&commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{0xca, 0xfe}}}); got != "0xcafe" {
		t.Errorf("bytes: %s", got)
	}
	if got := formatValue(nil); got != "null" {
		t.Errorf("nil: %s", got)
	}
}
