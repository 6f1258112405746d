// Package otlpjson converts between OTLP/JSON and protobuf for traces.
//
// OTLP/JSON is almost, but not quite, the canonical protobuf JSON mapping:
// trace and span IDs are hex strings rather than base64, and receivers must
// ignore unknown fields. Everything else (lowerCamelCase or original field
// names, enums as numbers or names, 64-bit integers as strings or numbers) is
// what protojson already accepts, so the conversion only has to fix up the ID
// fields and then lean on protojson.
package otlpjson

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// invalidID stands in for an ID that is not hex. It has a length no trace or
// span ID can have, so the span is rejected downstream on its own instead of
// the whole request failing here.
var invalidID = []byte{0}

var unmarshalOpts = protojson.UnmarshalOptions{DiscardUnknown: true}

var marshalOpts = protojson.MarshalOptions{UseEnumNumbers: true}

// RequestToProto converts an OTLP/JSON ExportTraceServiceRequest body into
// the protobuf wire form of the same request.
//
// Only syntactically broken JSON, or JSON whose values do not fit the schema
// (a string where a number belongs, say), is an error. IDs of the wrong
// length or that are not hex are passed on as (invalid) bytes so that
// validation can reject just the affected spans.
func RequestToProto(body []byte) ([]byte, error) {
	tree, err := decodeTree(body)
	if err != nil {
		return nil, err
	}
	if _, ok := tree.(map[string]any); !ok {
		return nil, fmt.Errorf("otlpjson: request body must be a JSON object, got %s", jsonKind(tree))
	}
	req := &coltracepb.ExportTraceServiceRequest{}
	rewriteIDs(tree, req.ProtoReflect().Descriptor(), hexToBase64)
	canon, err := encodeTree(tree)
	if err != nil {
		return nil, fmt.Errorf("otlpjson: re-encoding request: %w", err)
	}
	if err := unmarshalOpts.Unmarshal(canon, req); err != nil {
		return nil, fmt.Errorf("otlpjson: decoding ExportTraceServiceRequest: %w", err)
	}
	out, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("otlpjson: encoding ExportTraceServiceRequest: %w", err)
	}
	return out, nil
}

// Marshal encodes m as OTLP/JSON: lowerCamelCase field names, enums as
// integers, 64-bit integers as strings, and trace/span IDs as lowercase hex.
// m may be any message; IDs are rewritten wherever OTLP trace, log or metric
// types occur inside it.
func Marshal(m proto.Message) ([]byte, error) {
	raw, err := marshalOpts.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("otlpjson: encoding %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	md := m.ProtoReflect().Descriptor()
	if !reachesID(md) {
		return raw, nil
	}
	tree, err := decodeTree(raw)
	if err != nil {
		return nil, fmt.Errorf("otlpjson: reparsing protojson output: %w", err)
	}
	rewriteIDs(tree, md, base64ToHex)
	out, err := encodeTree(tree)
	if err != nil {
		return nil, fmt.Errorf("otlpjson: re-encoding %s: %w", md.FullName(), err)
	}
	return out, nil
}

// decodeTree parses exactly one JSON value, keeping numbers as their literal
// text so that 64-bit integers survive the trip through the generic tree.
func decodeTree(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("otlpjson: empty body, want a JSON object")
		}
		return nil, fmt.Errorf("otlpjson: invalid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err == nil {
			err = errors.New("more than one JSON value")
		}
		return nil, fmt.Errorf("otlpjson: invalid JSON after the top-level value: %w", err)
	}
	return tree, nil
}

func encodeTree(tree any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// IDs and attribute strings are data, not HTML; escaping them only
	// bloats the output.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(tree); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// hexToBase64 turns an OTLP/JSON ID into the base64 protojson expects.
func hexToBase64(v any) any {
	switch s := v.(type) {
	case nil:
		return nil
	case string:
		if s == "" {
			return ""
		}
		b, err := hex.DecodeString(s)
		if err != nil {
			b = invalidID
		}
		return base64.StdEncoding.EncodeToString(b)
	default:
		// A number or object is as wrong as non-hex text, and gets the
		// same per-span treatment rather than failing the request.
		return base64.StdEncoding.EncodeToString(invalidID)
	}
}

// base64ToHex turns protojson's base64 bytes into OTLP/JSON hex.
func base64ToHex(v any) any {
	s, ok := v.(string)
	if !ok {
		return v
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		// protojson always writes standard padded base64, so this cannot
		// happen for its output; leave the value alone rather than guess.
		return v
	}
	return hex.EncodeToString(b)
}
