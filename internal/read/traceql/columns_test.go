package traceql

import (
	"reflect"
	"testing"
)

func TestColumns(t *testing.T) {
	q, err := Parse(`{ resource.service.name = "api" && status = error } >> { span:duration > 1s || .http.status_code = 500 } ` +
		`| avg(span.bytes) > 10 | by(trace:rootService) | select(span.http.url, resource.service.name) ` +
		`| quantile_over_time(event:timeSinceStart, .9) by (link.kind)`)
	if err != nil {
		t.Fatal(err)
	}
	want := Columns{
		Intrinsics: []Intrinsic{IntrinsicStatus, IntrinsicDuration, IntrinsicRootServiceName, IntrinsicEventTimeSinceStart},
		Attributes: []Attribute{
			{ScopeNone, "http.status_code"},
			{ScopeResource, "service.name"},
			{ScopeSpan, "bytes"},
			{ScopeSpan, "http.url"},
			{ScopeLink, "kind"},
		},
	}
	if got := q.Columns(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Columns()\n got  %+v\n want %+v", got, want)
	}

	empty, _ := Parse(`{ } | count() > 1`)
	if got := empty.Columns(); len(got.Intrinsics)+len(got.Attributes) != 0 {
		t.Fatalf("Columns of %q = %+v, want none", empty, got)
	}
}

func TestIntrinsicScope(t *testing.T) {
	for in, want := range map[Intrinsic]IntrinsicScope{
		IntrinsicName:                IntrinsicScopeSpan,
		IntrinsicParentID:            IntrinsicScopeSpan,
		IntrinsicRootServiceName:     IntrinsicScopeTrace,
		IntrinsicTraceID:             IntrinsicScopeTrace,
		IntrinsicEventTimeSinceStart: IntrinsicScopeEvent,
		IntrinsicLinkSpanID:          IntrinsicScopeLink,
		IntrinsicInstrumentationName: IntrinsicScopeInstrumentation,
	} {
		if got := in.Scope(); got != want {
			t.Errorf("%v.Scope() = %v, want %v", in, got, want)
		}
	}
}

func TestConditions(t *testing.T) {
	tests := []struct {
		filter string
		ok     bool
		want   []string // each condition printed as "field op value"
	}{
		{`{ }`, true, nil},
		{`{ span.a = 1 }`, true, []string{`span.a = 1`}},
		{`{ resource.service.name = "api" && status = error && duration > 100ms }`, true,
			[]string{`resource.service.name = "api"`, `status = error`, `duration > 100ms`}},
		{`{ 5 < span.x && "a" = name }`, true, []string{`span.x > 5`, `name = "a"`}},
		{`{ name =~ "GET.*" && .x != nil }`, true, []string{`name =~ "GET.*"`, `.x != nil`}},
		{`{ span.cache_hit }`, true, []string{`span.cache_hit = true`}},
		{`{ .a = 1 || .b = 2 }`, false, nil},
		{`{ !(.a = 1) }`, false, nil},
		{`{ .a + 1 = 2 }`, false, nil},
		{`{ .a = .b }`, false, nil},
		{`{ 1 = 1 }`, false, nil},
		{`{ true }`, false, nil},
		{`{ .a = 1 && (.b = 2 || .c = 3) }`, false, nil},
	}
	for _, tt := range tests {
		q, err := Parse(tt.filter)
		if err != nil {
			t.Fatalf("%s: %v", tt.filter, err)
		}
		conds, ok := q.Stages[0].(*SpansetFilter).Conditions()
		if ok != tt.ok {
			t.Errorf("%s: ok = %v, want %v", tt.filter, ok, tt.ok)
			continue
		}
		var got []string
		for _, c := range conds {
			got = append(got, c.Field.String()+" "+c.Op.String()+" "+c.Value.String())
			if (c.Op == OpRegex) != (c.Regex != nil) {
				t.Errorf("%s: condition %v has Regex %v", tt.filter, c.Op, c.Regex)
			}
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: conditions %q, want %q", tt.filter, got, tt.want)
		}
	}
}

// TestIntrinsicSpellings covers every accepted spelling, aliases included:
// each must parse to its intrinsic and print the canonical name.
func TestIntrinsicSpellings(t *testing.T) {
	for spelling, want := range intrinsicByName {
		q, err := Parse(`{ } | select(` + spelling + `)`)
		if err != nil {
			t.Fatalf("%s: %v", spelling, err)
		}
		got := q.Stages[1].(*Select).Fields[0]
		if got != want {
			t.Errorf("%s parsed as %v, want %v", spelling, got, want)
		}
		if q.String() != `{ } | select(`+intrinsicNames[want]+`)` {
			t.Errorf("%s printed as %s", spelling, q)
		}
	}
	if len(intrinsicNames) != int(IntrinsicNestedSetParent) {
		t.Errorf("%d canonical names for %d intrinsics", len(intrinsicNames), IntrinsicNestedSetParent)
	}
}
