package traceql

import (
	"cmp"
	"regexp"
	"slices"
)

// Columns is what a query reads from the data, so the engine can skip every
// other column.
type Columns struct {
	// Intrinsics are sorted and distinct.
	Intrinsics []Intrinsic
	// Attributes are sorted by scope, then name, and distinct. ScopeNone
	// entries need both the span and the resource attribute of that name.
	Attributes []Attribute
}

// Columns returns every intrinsic and attribute q reads, in any stage,
// aggregate, by() or select(), and in the metrics function.
func (q *Query) Columns() Columns {
	var c Columns
	for _, s := range q.Stages {
		c.addStage(s)
	}
	if m := q.Metrics; m != nil {
		if m.Selection != nil {
			c.addStage(m.Selection)
		}
		c.addField(m.Field)
		for _, f := range m.By {
			c.addField(f)
		}
	}
	slices.Sort(c.Intrinsics)
	c.Intrinsics = slices.Compact(c.Intrinsics)
	slices.SortFunc(c.Attributes, func(a, b Attribute) int {
		return cmp.Or(cmp.Compare(a.Scope, b.Scope), cmp.Compare(a.Name, b.Name))
	})
	c.Attributes = slices.Compact(c.Attributes)
	return c
}

func (c *Columns) addStage(s Stage) {
	switch s := s.(type) {
	case *SpansetFilter:
		c.addField(s.Cond)
	case *SpansetOp:
		c.addStage(s.LHS)
		c.addStage(s.RHS)
	case *Pipeline:
		for _, st := range s.Stages {
			c.addStage(st)
		}
	case *ScalarFilter:
		c.addField(s.Agg.Field)
	case *GroupBy:
		for _, f := range s.Fields {
			c.addField(f)
		}
	case *Select:
		for _, f := range s.Fields {
			c.addField(f)
		}
	}
}

func (c *Columns) addField(e FieldExpr) {
	switch e := e.(type) {
	case Attribute:
		c.Attributes = append(c.Attributes, e)
	case Intrinsic:
		c.Intrinsics = append(c.Intrinsics, e)
	case *BinaryOp:
		c.addField(e.LHS)
		c.addField(e.RHS)
	case *UnaryOp:
		c.addField(e.Expr)
	}
}

// Condition is one "field op literal" test, the unit of predicate pushdown.
type Condition struct {
	// Field is an Attribute or an Intrinsic.
	Field FieldExpr
	// Op is a comparison operator, oriented so Field is on the left.
	Op    Operator
	Value Static
	// Regex is the compiled pattern when Op is OpRegex or OpNotRegex.
	Regex *regexp.Regexp
}

// Conditions returns the filter's tests when its condition is a plain
// conjunction of "field op literal" comparisons (either way round), which a
// column reader can apply before assembling spans. ok is false for anything
// else: "||", "!", arithmetic, or field-to-field comparisons. The empty
// filter "{ }" has no conditions and ok true.
func (f *SpansetFilter) Conditions() (conds []Condition, ok bool) {
	if f.Cond == nil {
		return nil, true
	}
	if !collectConditions(f.Cond, &conds) {
		return nil, false
	}
	return conds, true
}

func collectConditions(e FieldExpr, out *[]Condition) bool {
	b, ok := e.(*BinaryOp)
	if !ok {
		return false
	}
	if b.Op == OpAnd {
		return collectConditions(b.LHS, out) && collectConditions(b.RHS, out)
	}
	if !b.Op.IsComparison() {
		return false
	}
	if isColumn(b.LHS) {
		if v, ok := b.RHS.(Static); ok {
			*out = append(*out, Condition{Field: b.LHS, Op: b.Op, Value: v, Regex: b.Regex})
			return true
		}
	}
	if isColumn(b.RHS) {
		if v, ok := b.LHS.(Static); ok {
			*out = append(*out, Condition{Field: b.RHS, Op: flip(b.Op), Value: v})
			return true
		}
	}
	return false
}

func isColumn(e FieldExpr) bool {
	switch e.(type) {
	case Attribute, Intrinsic:
		return true
	}
	return false
}

// flip mirrors a comparison so "5 < x" becomes "x > 5". Regexes never get
// here with a field on the right: the parser requires a literal there.
func flip(op Operator) Operator {
	switch op {
	case OpLt:
		return OpGt
	case OpLte:
		return OpGte
	case OpGt:
		return OpLt
	case OpGte:
		return OpLte
	}
	return op
}
