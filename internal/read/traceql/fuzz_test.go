package traceql

import (
	"errors"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, that every error is a
// *ParseError pointing inside the input, and that whatever parses prints a
// canonical form that parses back to the same AST.
func FuzzParse(f *testing.F) {
	for _, c := range parseCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		q, err := Parse(in)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q) returned %T, want *ParseError", in, err)
			}
			if pe.Pos < 0 || pe.Pos > len(in) || pe.Line < 1 || pe.Col < 1 {
				t.Fatalf("Parse(%q): position out of range: %+v", in, pe)
			}
			return
		}
		s := q.String()
		q2, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q) ok, but its String %q does not parse: %v", in, s, err)
		}
		if !reflect.DeepEqual(q, q2) {
			t.Fatalf("Parse(%q) and Parse(%q) differ:\n%#v\n%#v", in, s, q, q2)
		}
		if s2 := q2.String(); s2 != s {
			t.Fatalf("String not a fixed point for %q: %q then %q", in, s, s2)
		}
	})
}
