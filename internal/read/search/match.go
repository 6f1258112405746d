package search

import (
	"slices"

	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
)

// Readers of block columns outside the engine (compare counts dictionary entries rather than
// spans) test a filter's comparisons one distinct value at a time with these, so that a value
// matches there exactly when it matches in a search.

// RowValue is an attribute row of a block (block.ScanAttrs' columns) as the engine reads it:
// bytes as hex strings, maps as absent (Type "").
func RowValue(typ int32, str string, num int64, dbl float64, b bool, raw []byte) Value {
	return exportValue(rowValue(typ, str, num, dbl, b, raw))
}

// Matches reports whether "v op static" holds as a filter tests it, for a comparison b (its
// Op, its compiled Regex) whose RHS is a Static. A missing value (Type "") matches nothing.
func Matches(b *traceql.BinaryOp, v Value) bool {
	st, ok := b.RHS.(traceql.Static)
	if !ok || !b.Op.IsComparison() {
		return false
	}
	l, r := importValue(v), staticValue(st)
	if l.k == kNil || r.k == kNil {
		return false
	}
	return compare(b.Op, l, r, b)
}

// importValue is exportValue's inverse.
func importValue(v Value) value {
	switch v.Type {
	case "string":
		return value{k: kString, s: v.String}
	case "int":
		return value{k: kInt, i: v.Int}
	case "float":
		return value{k: kFloat, f: v.Float}
	case "bool":
		return value{k: kBool, b: v.Bool}
	case "duration":
		return value{k: kDuration, i: v.Int}
	case "status":
		return value{k: kStatus, i: int64(slices.Index(statusNames, v.String))}
	case "kind":
		return value{k: kKind, i: int64(slices.Index(kindNames, v.String))}
	case "array":
		out := value{k: kArray}
		for _, e := range v.Array {
			out.arr = append(out.arr, importValue(e))
		}
		return out
	}
	return value{}
}
