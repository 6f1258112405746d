// Package zipkin accepts Zipkin v2 JSON spans (POST /api/v2/spans) and turns them into OTLP, so
// services still instrumented with Zipkin libraries feed the same ingest path as OTLP senders.
//
// The mapping follows what the OpenTelemetry Collector's Zipkin receiver does, with today's
// semantic-convention names:
//
//   - traceId, id, parentId: hex, left-padded with zeros to 16 and 8 bytes;
//   - timestamp and duration: microseconds, to start and end in nanoseconds;
//   - kind CLIENT, SERVER, PRODUCER, CONSUMER map to the OTLP kinds; no kind (an in-process span
//     in Zipkin) maps to INTERNAL;
//   - localEndpoint.serviceName: the resource's service.name, one ResourceSpans per service
//     ("unknown_service" when absent); localEndpoint ipv4/ipv6 and port: network.local.address,
//     network.local.port;
//   - remoteEndpoint.serviceName: peer.service; ipv4/ipv6 and port: network.peer.address,
//     network.peer.port;
//   - tags: string attributes (a tag sent as a JSON number or boolean keeps its JSON text),
//     except otel.status_code and otel.status_description, which set the status, the error tag,
//     which sets status ERROR with the tag's value as message unless otel.status_code says
//     otherwise, and otel.scope.name/version (or the older otel.library.name/version), which
//     name the instrumentation scope;
//   - annotations: events named by their value;
//   - shared: the boolean attribute zipkin.shared.
package zipkin

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// ErrInvalid is wrapped by every error that means the body is not a valid Zipkin v2 JSON span
// list; the handler answers those with 400.
var ErrInvalid = errors.New("invalid Zipkin v2 JSON")

// UnknownService is the service.name of spans without localEndpoint.serviceName, as the
// OpenTelemetry SDKs name a service that did not say.
const UnknownService = "unknown_service"

// Attribute keys written for Zipkin fields that have no OTLP field of their own.
const (
	AttrPeerService  = "peer.service"
	AttrPeerAddress  = "network.peer.address"
	AttrPeerPort     = "network.peer.port"
	AttrLocalAddress = "network.local.address"
	AttrLocalPort    = "network.local.port"
	AttrShared       = "zipkin.shared"
)

// Tags with a meaning beyond an attribute.
const (
	tagError             = "error"
	tagStatusCode        = "otel.status_code"
	tagStatusDescription = "otel.status_description"
	tagScopeName         = "otel.scope.name"
	tagScopeVersion      = "otel.scope.version"
	tagLibraryName       = "otel.library.name"
	tagLibraryVersion    = "otel.library.version"
)

type endpoint struct {
	ServiceName string `json:"serviceName"`
	IPv4        string `json:"ipv4"`
	IPv6        string `json:"ipv6"`
	Port        int64  `json:"port"`
}

type annotation struct {
	Timestamp uint64 `json:"timestamp"`
	Value     string `json:"value"`
}

type span struct {
	TraceID        string                     `json:"traceId"`
	ID             string                     `json:"id"`
	ParentID       string                     `json:"parentId"`
	Name           string                     `json:"name"`
	Kind           string                     `json:"kind"`
	Timestamp      uint64                     `json:"timestamp"`
	Duration       uint64                     `json:"duration"`
	LocalEndpoint  *endpoint                  `json:"localEndpoint"`
	RemoteEndpoint *endpoint                  `json:"remoteEndpoint"`
	Annotations    []annotation               `json:"annotations"`
	Tags           map[string]json.RawMessage `json:"tags"`
	Shared         bool                       `json:"shared"`
	Debug          bool                       `json:"debug"`
}

// ToOTLP translates a Zipkin v2 JSON span list into an OTLP ExportTraceServiceRequest in protobuf
// form. Spans are grouped by service and then by instrumentation scope, in order of first
// appearance; within a group they keep the order they came in.
func ToOTLP(body []byte) ([]byte, error) {
	req, err := toRequest(body)
	if err != nil {
		return nil, err
	}
	b, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("zipkin: encode OTLP: %w", err)
	}
	return b, nil
}

func toRequest(body []byte) (*coltracepb.ExportTraceServiceRequest, error) {
	var spans []span
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&spans); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the span list", ErrInvalid)
	}
	if spans == nil {
		// json decodes a literal null into a nil slice, and a span list must be a list.
		if !bytes.Equal(bytes.TrimSpace(body), []byte("[]")) {
			return nil, fmt.Errorf("%w: body is not a JSON array", ErrInvalid)
		}
	}
	type scopeKey struct{ service, name, version string }
	resources := map[string]*tracepb.ResourceSpans{}
	scopes := map[scopeKey]*tracepb.ScopeSpans{}
	req := &coltracepb.ExportTraceServiceRequest{}
	for i := range spans {
		zs := &spans[i]
		service := UnknownService
		if zs.LocalEndpoint != nil && zs.LocalEndpoint.ServiceName != "" {
			service = zs.LocalEndpoint.ServiceName
		}
		sp, scopeName, scopeVersion, err := toSpan(zs)
		if err != nil {
			return nil, fmt.Errorf("%w: span %d: %w", ErrInvalid, i, err)
		}
		rs := resources[service]
		if rs == nil {
			rs = &tracepb.ResourceSpans{Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{stringAttr("service.name", service)}}}
			resources[service] = rs
			req.ResourceSpans = append(req.ResourceSpans, rs)
		}
		k := scopeKey{service, scopeName, scopeVersion}
		ss := scopes[k]
		if ss == nil {
			ss = &tracepb.ScopeSpans{}
			if scopeName != "" || scopeVersion != "" {
				ss.Scope = &commonpb.InstrumentationScope{Name: scopeName, Version: scopeVersion}
			}
			scopes[k] = ss
			rs.ScopeSpans = append(rs.ScopeSpans, ss)
		}
		ss.Spans = append(ss.Spans, sp)
	}
	return req, nil
}

func toSpan(zs *span) (sp *tracepb.Span, scopeName, scopeVersion string, err error) {
	sp = &tracepb.Span{
		Name:              zs.Name,
		StartTimeUnixNano: zs.Timestamp * 1000,
		EndTimeUnixNano:   (zs.Timestamp + zs.Duration) * 1000,
	}
	if sp.TraceId, err = parseID(zs.TraceID, 16); err != nil {
		return nil, "", "", fmt.Errorf("traceId: %w", err)
	}
	if sp.SpanId, err = parseID(zs.ID, 8); err != nil {
		return nil, "", "", fmt.Errorf("id: %w", err)
	}
	if zs.ParentID != "" {
		if sp.ParentSpanId, err = parseID(zs.ParentID, 8); err != nil {
			return nil, "", "", fmt.Errorf("parentId: %w", err)
		}
	}
	switch strings.ToUpper(zs.Kind) {
	case "":
		sp.Kind = tracepb.Span_SPAN_KIND_INTERNAL
	case "CLIENT":
		sp.Kind = tracepb.Span_SPAN_KIND_CLIENT
	case "SERVER":
		sp.Kind = tracepb.Span_SPAN_KIND_SERVER
	case "PRODUCER":
		sp.Kind = tracepb.Span_SPAN_KIND_PRODUCER
	case "CONSUMER":
		sp.Kind = tracepb.Span_SPAN_KIND_CONSUMER
	default:
		return nil, "", "", fmt.Errorf("unknown kind %q", zs.Kind)
	}

	if e := zs.LocalEndpoint; e != nil {
		sp.Attributes = appendEndpoint(sp.Attributes, e, "", AttrLocalAddress, AttrLocalPort)
	}
	if e := zs.RemoteEndpoint; e != nil {
		sp.Attributes = appendEndpoint(sp.Attributes, e, AttrPeerService, AttrPeerAddress, AttrPeerPort)
	}

	var status *tracepb.Status
	var statusCode, statusDesc, errTag *string
	for _, k := range sortedKeys(zs.Tags) {
		v := tagText(zs.Tags[k])
		switch k {
		case tagStatusCode:
			statusCode = &v
		case tagStatusDescription:
			statusDesc = &v
		case tagError:
			errTag = &v
		case tagScopeName, tagLibraryName:
			if k == tagScopeName || scopeName == "" {
				scopeName = v
			}
		case tagScopeVersion, tagLibraryVersion:
			if k == tagScopeVersion || scopeVersion == "" {
				scopeVersion = v
			}
		default:
			sp.Attributes = append(sp.Attributes, stringAttr(k, v))
		}
	}
	switch {
	case statusCode != nil:
		status = &tracepb.Status{}
		switch strings.ToUpper(*statusCode) {
		case "OK":
			status.Code = tracepb.Status_STATUS_CODE_OK
		case "ERROR":
			status.Code = tracepb.Status_STATUS_CODE_ERROR
		case "UNSET", "":
		default:
			// Not a status this mapping knows: keep what was sent rather than guess.
			sp.Attributes = append(sp.Attributes, stringAttr(tagStatusCode, *statusCode))
		}
		if statusDesc != nil && status.Code == tracepb.Status_STATUS_CODE_ERROR {
			status.Message = *statusDesc
		}
		if errTag != nil && status.Code != tracepb.Status_STATUS_CODE_ERROR {
			// The explicit OTel status wins; the error tag stays visible as an attribute.
			sp.Attributes = append(sp.Attributes, stringAttr(tagError, *errTag))
		}
	case errTag != nil:
		status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}
		// Zipkin libraries often write "true" or nothing: that is no message.
		if m := *errTag; m != "" && !strings.EqualFold(m, "true") {
			status.Message = m
		}
		if statusDesc != nil && status.Message == "" {
			status.Message = *statusDesc
		}
	case statusDesc != nil:
		sp.Attributes = append(sp.Attributes, stringAttr(tagStatusDescription, *statusDesc))
	}
	if status != nil && status.Code != tracepb.Status_STATUS_CODE_UNSET {
		sp.Status = status
	}

	if zs.Shared {
		sp.Attributes = append(sp.Attributes, &commonpb.KeyValue{Key: AttrShared, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: true}}})
	}
	for _, a := range zs.Annotations {
		sp.Events = append(sp.Events, &tracepb.Span_Event{TimeUnixNano: a.Timestamp * 1000, Name: a.Value})
	}
	return sp, scopeName, scopeVersion, nil
}

// parseID decodes a hex ID of at most size bytes, padding shorter ones on the left as Zipkin does
// for 64-bit trace IDs.
func parseID(s string, size int) ([]byte, error) {
	if s == "" {
		return nil, errors.New("missing")
	}
	if len(s) > 2*size {
		return nil, fmt.Errorf("%q is longer than %d hex digits", s, 2*size)
	}
	if len(s)%2 == 1 {
		s = "0" + s
	}
	raw, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", s, err)
	}
	id := make([]byte, size)
	copy(id[size-len(raw):], raw)
	if bytes.Equal(id, make([]byte, size)) {
		return nil, errors.New("all zeros")
	}
	return id, nil
}

func appendEndpoint(attrs []*commonpb.KeyValue, e *endpoint, serviceKey, addrKey, portKey string) []*commonpb.KeyValue {
	if serviceKey != "" && e.ServiceName != "" {
		attrs = append(attrs, stringAttr(serviceKey, e.ServiceName))
	}
	addr := e.IPv4
	if addr == "" {
		addr = e.IPv6
	}
	if addr != "" {
		attrs = append(attrs, stringAttr(addrKey, addr))
	}
	if e.Port != 0 {
		attrs = append(attrs, &commonpb.KeyValue{Key: portKey, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: e.Port}}})
	}
	return attrs
}

// tagText is a tag's string value; Zipkin requires strings, but some senders write numbers and
// booleans, and keeping their JSON text loses nothing.
func tagText(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	return string(bytes.TrimSpace(raw))
}

// sortedKeys gives attributes a stable order: a JSON object's order does not survive Go's map.
func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func stringAttr(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}
