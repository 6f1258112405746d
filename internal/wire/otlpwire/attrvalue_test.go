package otlpwire

import (
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

func TestAttributes(t *testing.T) {
	av := func(v *commonpb.AnyValue) *commonpb.AnyValue { return v }
	sp := &tracepb.Span{Name: "n", Attributes: []*commonpb.KeyValue{
		str("s", "text"),
		{Key: "b", Value: av(&commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}})},
		{Key: "i", Value: av(&commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: -42}})},
		{Key: "d", Value: av(&commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 0.25}})},
		{Key: "arr", Value: av(&commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{}}})},
		{Key: "none"},
	}}
	raw, err := proto.Marshal(sp)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	if err := SpanAttributes(raw, func(k []byte, v AttrValue) bool {
		got[string(k)] = string(v.AppendText(nil))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"s": "text", "b": "true", "i": "-42", "d": "0.25", "arr": "", "none": ""}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %q, want %q", k, got[k], w)
		}
	}
	n := 0
	_ = SpanAttributes(raw, func([]byte, AttrValue) bool { n++; return false })
	if n != 1 {
		t.Errorf("walk went on after fn returned false: %d calls", n)
	}

	res, _ := proto.Marshal(&resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "svc")}})
	var name string
	if err := ResourceAttributes(res, func(k []byte, v AttrValue) bool {
		name = string(k) + "=" + string(v.AppendText(nil))
		return true
	}); err != nil || name != "service.name=svc" {
		t.Errorf("resource attribute %q, %v", name, err)
	}
	if err := SpanAttributes([]byte{0x4a, 0x05, 0x0a}, func([]byte, AttrValue) bool { return true }); err == nil {
		t.Error("truncated attribute accepted")
	}
}
