package otlpwire

import "google.golang.org/protobuf/encoding/protowire"

// FilterRequest appends to dst a copy of the ExportTraceServiceRequest req without the spans for
// which keep returns false, and without scope and resource groups left empty by that. Every other
// field is copied byte for byte, so what is kept is exactly what was sent.
func FilterRequest(dst, req []byte, keep func(*Span) bool) ([]byte, error) {
	var s Span
	var rsBuf, ssBuf []byte
	err := eachRawField(req, func(num protowire.Number, typ protowire.Type, raw, v []byte) error {
		if num != fieldRequestResourceSpans || typ != protowire.BytesType {
			dst = append(dst, raw...)
			return nil
		}
		rsBuf = rsBuf[:0]
		kept := 0
		err := eachRawField(v, func(num protowire.Number, typ protowire.Type, raw, v []byte) error {
			if num != fieldResourceSpansScopeSpans || typ != protowire.BytesType {
				rsBuf = append(rsBuf, raw...)
				return nil
			}
			ssBuf = ssBuf[:0]
			keptHere := 0
			err := eachRawField(v, func(num protowire.Number, typ protowire.Type, raw, v []byte) error {
				if num != fieldScopeSpansSpans || typ != protowire.BytesType {
					ssBuf = append(ssBuf, raw...)
					return nil
				}
				if err := ScanSpan(v, &s); err != nil {
					return err
				}
				if keep(&s) {
					ssBuf = append(ssBuf, raw...)
					keptHere++
				}
				return nil
			})
			if err != nil || keptHere == 0 {
				return err
			}
			kept += keptHere
			rsBuf = protowire.AppendTag(rsBuf, fieldResourceSpansScopeSpans, protowire.BytesType)
			rsBuf = protowire.AppendBytes(rsBuf, ssBuf)
			return nil
		})
		if err != nil || kept == 0 {
			return err
		}
		dst = protowire.AppendTag(dst, fieldRequestResourceSpans, protowire.BytesType)
		dst = protowire.AppendBytes(dst, rsBuf)
		return nil
	})
	return dst, err
}

// eachRawField is eachField that also passes the field's whole encoding, tag included.
func eachRawField(b []byte, fn func(num protowire.Number, typ protowire.Type, raw, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("%v", protowire.ParseError(n))
		}
		tagLen := n
		var v []byte
		if typ == protowire.BytesType {
			v, n = protowire.ConsumeBytes(b[tagLen:])
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b[tagLen:])
		}
		if n < 0 {
			return malformed("field %d: %v", num, protowire.ParseError(n))
		}
		if err := fn(num, typ, b[:tagLen+n], v); err != nil {
			return err
		}
		b = b[tagLen+n:]
	}
	return nil
}
