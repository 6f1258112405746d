package otlpjson

import (
	"strings"
	"sync"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// idFields lists, per message, the bytes fields that OTLP/JSON writes as hex.
// Logs and metric exemplars follow the same rule as spans, so a message that
// embeds them is handled too.
var idFields = map[protoreflect.FullName]map[protoreflect.Name]bool{
	"opentelemetry.proto.trace.v1.Span":       {"trace_id": true, "span_id": true, "parent_span_id": true},
	"opentelemetry.proto.trace.v1.Span.Link":  {"trace_id": true, "span_id": true},
	"opentelemetry.proto.logs.v1.LogRecord":   {"trace_id": true, "span_id": true},
	"opentelemetry.proto.metrics.v1.Exemplar": {"trace_id": true, "span_id": true},
}

func isIDField(md protoreflect.MessageDescriptor, fd protoreflect.FieldDescriptor) bool {
	return fd.Kind() == protoreflect.BytesKind && !fd.IsList() && idFields[md.FullName()][fd.Name()]
}

var reach sync.Map // protoreflect.FullName -> bool

// reachesID reports whether a message of type md can contain an ID field at
// any depth. It lets the rewrite skip attribute values, which are by far the
// bulk of a request and can nest arbitrarily.
func reachesID(md protoreflect.MessageDescriptor) bool {
	if v, ok := reach.Load(md.FullName()); ok {
		return v.(bool)
	}
	// A full search per root is simple and correct for recursive types;
	// memoizing partial answers inside a cycle would not be.
	found := false
	seen := map[protoreflect.FullName]bool{md.FullName(): true}
	queue := []protoreflect.MessageDescriptor{md}
	for len(queue) > 0 && !found {
		cur := queue[0]
		queue = queue[1:]
		if _, ok := idFields[cur.FullName()]; ok {
			found = true
			break
		}
		fields := cur.Fields()
		for i := 0; i < fields.Len(); i++ {
			fd := fields.Get(i)
			sub := fieldMessage(fd)
			if sub == nil || seen[sub.FullName()] || isWellKnown(sub) {
				continue
			}
			seen[sub.FullName()] = true
			queue = append(queue, sub)
		}
	}
	reach.Store(md.FullName(), found)
	return found
}

// fieldMessage is the message type a field's JSON values are objects of:
// the element type for lists, the value type for maps.
func fieldMessage(fd protoreflect.FieldDescriptor) protoreflect.MessageDescriptor {
	if fd.IsMap() {
		return fd.MapValue().Message()
	}
	return fd.Message()
}

// isWellKnown spots the google.protobuf types, whose JSON forms are special
// (Any, Struct, Timestamp, ...) and which cannot hold OTLP IDs except through
// Any, which is not worth supporting here.
func isWellKnown(md protoreflect.MessageDescriptor) bool {
	return strings.HasPrefix(string(md.FullName()), "google.protobuf.")
}

// lookupField finds a field by the names protojson accepts: the JSON
// (lowerCamelCase) name or the original proto name.
func lookupField(md protoreflect.MessageDescriptor, key string) protoreflect.FieldDescriptor {
	fields := md.Fields()
	if fd := fields.ByJSONName(key); fd != nil {
		return fd
	}
	return fields.ByTextName(key)
}

// rewriteIDs walks a generic JSON tree shaped like md and replaces the value
// of every ID field with conv(value). Values that do not have the shape the
// schema calls for are left for protojson to complain about.
func rewriteIDs(v any, md protoreflect.MessageDescriptor, conv func(any) any) {
	obj, ok := v.(map[string]any)
	if !ok {
		return
	}
	for key, val := range obj {
		fd := lookupField(md, key)
		if fd == nil {
			continue
		}
		if isIDField(md, fd) {
			obj[key] = conv(val)
			continue
		}
		sub := fieldMessage(fd)
		if sub == nil || isWellKnown(sub) || !reachesID(sub) {
			continue
		}
		switch {
		case fd.IsMap():
			if m, ok := val.(map[string]any); ok {
				for _, elem := range m {
					rewriteIDs(elem, sub, conv)
				}
			}
		case fd.IsList():
			if list, ok := val.([]any); ok {
				for _, elem := range list {
					rewriteIDs(elem, sub, conv)
				}
			}
		default:
			rewriteIDs(val, sub, conv)
		}
	}
}
