package analyze

import (
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

type fixedTypical map[string]time.Duration

func (f fixedTypical) Typical(service, name string) (time.Duration, bool) {
	d, ok := f[service+"/"+name]
	return d, ok
}

// TestWhySlowWithinUsual: a trace no slower than its root operation usually is has nothing to
// explain; one well over it does; without span metrics nothing is claimed either way.
func TestWhySlowWithinUsual(t *testing.T) {
	_, tds := guideTraces(t)
	var td *tracepb.TracesData
	for _, x := range tds {
		if r := NewTree(x).Root(); r != nil && r.Name == "POST /api/tasks" {
			td = x
		}
	}
	if td == nil {
		t.Fatal("no create-task trace")
	}
	root := NewTree(td).Root()
	key := root.Service + "/" + root.Name
	if e := WhySlow(td, fixedTypical{key: root.Duration()}); !e.WithinUsual || e.RootTypical != root.Duration() {
		t.Errorf("at its usual duration: WithinUsual %v, RootTypical %v", e.WithinUsual, e.RootTypical)
	}
	if e := WhySlow(td, fixedTypical{key: root.Duration() / 10}); e.WithinUsual {
		t.Errorf("ten times its usual duration counted as usual")
	}
	if e := WhySlow(td, nil); e.WithinUsual || e.RootTypical != 0 {
		t.Errorf("without span metrics: %+v", e)
	}
}

// TestLabelDoesNotRepeatTheRoute: a server span named for its route is not followed by the raw
// path with the ID in it.
func TestLabelDoesNotRepeatTheRoute(t *testing.T) {
	mk := func(name string, attrs ...*commonpb.KeyValue) *Span {
		return &Span{Name: name, Raw: &tracepb.Span{Name: name, Attributes: attrs}}
	}
	str := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	for _, c := range []struct {
		s    *Span
		want string
	}{
		{mk("POST /api/tasks/{id}/reindex", str("http.request.method", "POST"), str("url.path", "/api/tasks/8b14/reindex")), "POST /api/tasks/{id}/reindex"},
		{mk("POST", str("http.request.method", "POST"), str("url.path", "/api/tasks/8b14/reindex")), "POST /api/tasks/8b14/reindex"},
		{mk("POST", str("http.request.method", "POST"), str("http.route", "/api/tasks/{id}/reindex")), "POST /api/tasks/{id}/reindex"},
	} {
		if got := Label(c.s); got != c.want {
			t.Errorf("Label(%q) = %q, want %q", c.s.Name, got, c.want)
		}
	}
}
