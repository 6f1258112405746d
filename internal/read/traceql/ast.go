// Package traceql parses TraceQL queries into a typed AST.
//
// The package stops at the AST: it checks syntax and every type rule that
// can be decided without data, so the engine never sees a query that
// compares a duration with a string or applies a regex to a number.
//
// Shape of a parsed query:
//
//	Query
//	├── Stages []Stage        pipeline separated by "|"; Stages[0] is a SpansetExpr
//	│     SpansetExpr         *SpansetFilter | *SpansetOp
//	│     *ScalarFilter       count() > 2, avg(duration) > 100ms
//	│     *GroupBy            by(resource.service.name)
//	│     *Select             select(span.http.url, duration)
//	│     *Coalesce           coalesce()
//	├── Metrics *MetricsAggregate   rate(), quantile_over_time(...) by (...), compare(...)
//	├── MetricsStages []MetricsStage  > 10, | topk(5), | bottomk(5), after Metrics
//	├── Hints []Hint                with(sample=true)
//	└── Math *MetricsMath           ({ } | rate()) * 100, ({ } | rate()) / ({ } | count_over_time())
//	                                (instead of Stages and Metrics)
//
// A pipeline that starts with an aggregate, by() or select() reads as if
// it started with "{ } |", which is how it is stored and printed. A
// parenthesised pipeline is a spanset operand (*Pipeline), as in
// "({ } | count() > 1) && { .a }".
//
// Inside a spanset filter, conditions are FieldExprs: Attribute, Intrinsic,
// Static, *BinaryOp and *UnaryOp.
//
// Precedence, loosest first; every binary operator is left-associative
// except "^", and comparisons do not chain:
//
//	between spansets:  ||   &&   structural (>> > ~ << < and their ! and & forms)
//	inside a filter:   ||   &&   = != =~ !~ < <= > >=   + -   * / %   ^   unary ! -
//
// So "{a} && {b} >> {c}" is "{a} && ({b} >> {c})": the structural
// operators bind tighter, as comparisons do inside a filter.
//
// Bare attribute names end at whitespace or one of {}()=!~<>&|,"`+*%^ and
// may contain "-", "/", ":" and ".", so arithmetic needs spaces:
// "span.a - 1". Other names are quoted: span."with space".
//
// Every node prints a canonical form with String, and that form parses back
// to an equal AST, which is what the tests rely on.
package traceql

import (
	"regexp"
	"time"
)

// Query is a parsed TraceQL query.
type Query struct {
	// Stages is the pipeline, in order. Stages[0] is always a SpansetExpr.
	Stages []Stage
	// Metrics is non-nil for a metrics query (rate(), *_over_time(), ...).
	// It is the pipeline's final step, applied after every stage.
	Metrics *MetricsAggregate
	// MetricsStages are applied, in order, to the series Metrics produces:
	// thresholds that keep only the samples passing them, and topk/bottomk.
	MetricsStages []MetricsStage
	// Hints are the with(...) options, in source order.
	Hints []Hint
	// Math, when set, is arithmetic over parenthesised metrics queries and numbers, as in
	// "({ } | rate()) / ({ } | count_over_time())"; the query then has no Stages or
	// Metrics of its own, and MetricsStages apply to what Math computes.
	Math *MetricsMath
}

// MetricsMath is one arithmetic operation (+, -, *, /) between metrics queries
// and numbers. Series of two queries are paired by their labels (__name__
// aside); a series without labels pairs with every series of the other side.
type MetricsMath struct {
	Op       Operator // OpAdd, OpSub, OpMul or OpDiv
	LHS, RHS MetricsOperand
}

// MetricsOperand is a side of MetricsMath: a metrics *Query, a *MetricsMath or
// a MetricsNumber.
type MetricsOperand interface {
	String() string
	metricsOperand()
}

// MetricsNumber is a number in metrics arithmetic.
type MetricsNumber float64

func (*Query) metricsOperand()        {}
func (*MetricsMath) metricsOperand()  {}
func (MetricsNumber) metricsOperand() {}

// Hint returns the value of the last hint called name.
func (q *Query) Hint(name string) (Static, bool) {
	for i := len(q.Hints) - 1; i >= 0; i-- {
		if q.Hints[i].Name == name {
			return q.Hints[i].Value, true
		}
	}
	return Static{}, false
}

// IsMetrics reports whether q is a TraceQL metrics query.
func (q *Query) IsMetrics() bool { return q.Metrics != nil || q.Math != nil }

// Stage is one step of the pipeline. It is implemented by SpansetExpr
// (*SpansetFilter, *SpansetOp), *ScalarFilter, *GroupBy, *Select and
// *Coalesce.
type Stage interface {
	String() string
	stage()
}

// SpansetExpr selects spansets. It is implemented by *SpansetFilter,
// *SpansetOp and *Pipeline.
type SpansetExpr interface {
	Stage
	spansetExpr()
}

// SpansetFilter is "{ cond }": the spans of a trace for which Cond is true.
type SpansetFilter struct {
	// Cond is a boolean expression, or nil for "{ }", which matches every
	// span.
	Cond FieldExpr
}

// Pipeline is a parenthesised pipeline used as a spanset operand, as in
// "({ } | count() > 1) && { .a }": its spans are those of every spanset
// the pipeline leaves. Stages[0] is a SpansetExpr; there are at least two.
type Pipeline struct {
	Stages []Stage
}

// SpansetOp combines two spanset expressions.
//
// Which spans survive depends on Op:
//   - SpansetAnd: both sides must match in the trace; the result is the
//     union of both sides' spans.
//   - SpansetOr: the union of the spans of whichever sides match.
//   - structural operators (Descendant, Child, ...): the RHS spans that stand
//     in the relation to some LHS span, so "{a} >> {b}" returns b spans.
//   - negated structural operators (NotDescendant, ...): the RHS spans that
//     stand in the relation to no LHS span.
//   - union structural operators (UnionDescendant, ...): the spans on both
//     sides that take part in the relation.
type SpansetOp struct {
	Op       SpansetOperator
	LHS, RHS SpansetExpr
}

// SpansetOperator is an operator between spanset expressions.
type SpansetOperator int

// Spanset operators. For structural ones, "X" in the comments is an LHS
// span and "Y" the RHS span the result is drawn from.
const (
	SpansetAnd SpansetOperator = iota + 1 // &&
	SpansetOr                             // ||

	Descendant // >>   Y is a descendant of X
	Child      // >    Y is a child of X
	Sibling    // ~    Y shares a parent with X (and is not X)
	Ancestor   // <<   Y is an ancestor of X
	Parent     // <    Y is the parent of X

	NotDescendant // !>>
	NotChild      // !>
	NotSibling    // !~
	NotAncestor   // !<<
	NotParent     // !<

	UnionDescendant // &>>
	UnionChild      // &>
	UnionSibling    // &~
	UnionAncestor   // &<<
	UnionParent     // &<
)

// IsStructural reports whether op relates spans by their place in the tree.
func (op SpansetOperator) IsStructural() bool { return op >= Descendant && op <= UnionParent }

// ScalarFilter keeps the spansets whose aggregate compares true with Value,
// as in "count() > 2".
type ScalarFilter struct {
	Agg   Aggregate
	Op    Operator // one of OpEq, OpNeq, OpLt, OpLte, OpGt, OpGte
	Value Static
}

// Aggregate is an aggregate over the spans of a spanset.
type Aggregate struct {
	Func AggregateFunc
	// Field is what is aggregated; nil for count().
	Field FieldExpr
}

// AggregateFunc names a spanset aggregate.
type AggregateFunc int

// Spanset aggregates.
const (
	AggCount AggregateFunc = iota + 1
	AggAvg
	AggMin
	AggMax
	AggSum
)

// GroupBy splits each spanset into one spanset per distinct value of Fields,
// as in "by(resource.service.name)".
type GroupBy struct{ Fields []FieldExpr }

// Select asks for Fields to be returned with each matching span. It does not
// filter.
type Select struct{ Fields []FieldExpr }

// Coalesce merges the spansets of a trace, undoing an earlier by().
type Coalesce struct{}

// MetricsAggregate is the metrics function that ends a metrics query, as in
// "quantile_over_time(duration, .5, .99) by (resource.service.name)".
type MetricsAggregate struct {
	Func MetricsFunc
	// Field is the value the function reads; nil for rate and
	// count_over_time.
	Field FieldExpr
	// Quantiles holds the requested quantiles of quantile_over_time, each in
	// [0, 1]; nil for the other functions.
	Quantiles []float64
	// By is the grouping of the output series; empty means one series.
	By []FieldExpr
	// Selection, TopN, CompareStart and CompareEnd are compare()'s
	// arguments: the spans compared with the rest (the baseline), how many
	// values per attribute to report (10 when 0), and an optional time
	// window, in unix nanoseconds, that narrows the selection.
	Selection                SpansetExpr
	TopN                     int
	CompareStart, CompareEnd int64
}

// MetricsStage is a step applied to a metrics query's series. It is
// implemented by *MetricsFilter and *TopK.
type MetricsStage interface {
	String() string
	metricsStage()
}

// MetricsFilter keeps the samples whose value compares true with Value,
// as in "{ } | rate() > 10". A duration Value is compared in seconds, the
// unit duration series are reported in.
type MetricsFilter struct {
	Op    Operator // a comparison other than a regex
	Value Static   // a number or a duration
}

// TopK keeps the K series with the largest values (the smallest for
// bottomk), ranked at each step as Prometheus's topk does.
type TopK struct {
	K      int
	Bottom bool
}

func (*MetricsFilter) metricsStage() {}
func (*TopK) metricsStage()          {}

// MetricsFunc names a metrics function.
type MetricsFunc int

// Metrics functions.
const (
	MetricsRate MetricsFunc = iota + 1
	MetricsCountOverTime
	MetricsMinOverTime
	MetricsMaxOverTime
	MetricsAvgOverTime
	MetricsSumOverTime
	MetricsQuantileOverTime
	MetricsHistogramOverTime
	MetricsCompare
)

// Hint is one with(...) option, as in "with(sample=true)". Hints never change
// which spans match, so the engine may ignore the ones it does not know.
type Hint struct {
	Name  string
	Value Static
}

// FieldExpr is an expression evaluated per span. It is implemented by
// Attribute, Intrinsic, Static, *BinaryOp and *UnaryOp.
type FieldExpr interface {
	// StaticType is the type of the expression; TypeAttribute when it is
	// only known once the data is read.
	StaticType() Type
	String() string
	fieldExpr()
}

// Attribute is a user-defined attribute, as in "span.http.request.method".
type Attribute struct {
	Scope AttributeScope
	Name  string
}

// AttributeScope says where an attribute is looked up.
type AttributeScope int

// Attribute scopes.
const (
	// ScopeNone is the unscoped ".name": the span attribute, or the resource
	// attribute when the span has none of that name.
	ScopeNone AttributeScope = iota
	ScopeResource
	ScopeSpan
	ScopeEvent
	ScopeLink
	ScopeInstrumentation
)

// Intrinsic is a field every span has, such as its name or duration. Aliases
// are normalised at parse time: "rootServiceName" and "trace:rootService"
// both give IntrinsicRootServiceName.
type Intrinsic int

// Intrinsics.
const (
	IntrinsicName                   Intrinsic = iota + 1 // name, span:name
	IntrinsicStatus                                      // status, span:status
	IntrinsicStatusMessage                               // statusMessage, span:statusMessage
	IntrinsicKind                                        // kind, span:kind
	IntrinsicDuration                                    // duration, span:duration
	IntrinsicSpanID                                      // span:id
	IntrinsicParentID                                    // span:parentID
	IntrinsicRootName                                    // rootName, trace:rootName
	IntrinsicRootServiceName                             // rootServiceName, trace:rootService
	IntrinsicTraceDuration                               // traceDuration, trace:duration
	IntrinsicTraceID                                     // trace:id
	IntrinsicEventName                                   // event:name
	IntrinsicEventTimeSinceStart                         // event:timeSinceStart
	IntrinsicLinkTraceID                                 // link:traceID
	IntrinsicLinkSpanID                                  // link:spanID
	IntrinsicInstrumentationName                         // instrumentation:name
	IntrinsicInstrumentationVersion                      // instrumentation:version
	IntrinsicChildCount                                  // span:childCount
	IntrinsicNestedSetLeft                               // nestedSetLeft, span:nestedSetLeft
	IntrinsicNestedSetRight                              // nestedSetRight, span:nestedSetRight
	IntrinsicNestedSetParent                             // nestedSetParent, span:nestedSetParent
)

// Static is a literal value. Type says which of the value fields is set.
type Static struct {
	Type   Type
	Str    string        // TypeString
	Int    int64         // TypeInt
	Float  float64       // TypeFloat
	Bool   bool          // TypeBool
	Dur    time.Duration // TypeDuration
	Status Status        // TypeStatus
	Kind   Kind          // TypeKind
}

// Status is a span status literal.
type Status int

// Span statuses.
const (
	StatusUnset Status = iota + 1
	StatusOk
	StatusError
)

// Kind is a span kind literal.
type Kind int

// Span kinds.
const (
	KindUnspecified Kind = iota + 1
	KindInternal
	KindServer
	KindClient
	KindProducer
	KindConsumer
)

// Type is the static type of a field expression.
type Type int

// Static types.
const (
	// TypeAttribute is an attribute's type, unknown until the data is read.
	// Expressions that mix attributes in arithmetic have it too.
	TypeAttribute Type = iota + 1
	TypeNil
	TypeBool
	TypeInt
	TypeFloat
	TypeString
	TypeDuration
	TypeStatus
	TypeKind
)

// BinaryOp is "LHS Op RHS" over field expressions.
type BinaryOp struct {
	Op       Operator
	LHS, RHS FieldExpr
	// Regex is RHS compiled, anchored at both ends, when Op is OpRegex or
	// OpNotRegex; RHS is then a string Static.
	Regex *regexp.Regexp
}

// UnaryOp is "Op Expr"; Op is OpNot or OpNeg. Negation of a number or
// duration literal is folded into the literal at parse time.
type UnaryOp struct {
	Op   Operator
	Expr FieldExpr
}

// Operator is an operator inside a spanset filter.
type Operator int

// Field operators.
const (
	OpOr  Operator = iota + 1 // ||
	OpAnd                     // &&

	OpEq       // =
	OpNeq      // !=
	OpRegex    // =~  (whole-string match)
	OpNotRegex // !~
	OpGt       // >
	OpGte      // >=
	OpLt       // <
	OpLte      // <=

	OpAdd // +
	OpSub // -
	OpMul // *
	OpDiv // /
	OpMod // %
	OpPow // ^

	OpNot // ! (unary)
	OpNeg // - (unary)
)

// IsComparison reports whether op compares two values to a bool.
func (op Operator) IsComparison() bool { return op >= OpEq && op <= OpLte }

// IsArithmetic reports whether op is a binary arithmetic operator.
func (op Operator) IsArithmetic() bool { return op >= OpAdd && op <= OpPow }

func (*SpansetFilter) stage() {}
func (*SpansetOp) stage()     {}
func (*ScalarFilter) stage()  {}
func (*GroupBy) stage()       {}
func (*Select) stage()        {}
func (*Coalesce) stage()      {}

func (*Pipeline) stage()            {}
func (*Pipeline) spansetExpr()      {}
func (*SpansetFilter) spansetExpr() {}
func (*SpansetOp) spansetExpr()     {}

func (Attribute) fieldExpr() {}
func (Intrinsic) fieldExpr() {}
func (Static) fieldExpr()    {}
func (*BinaryOp) fieldExpr() {}
func (*UnaryOp) fieldExpr()  {}

// StaticType implements FieldExpr.
func (Attribute) StaticType() Type { return TypeAttribute }

// StaticType implements FieldExpr.
func (s Static) StaticType() Type { return s.Type }

// StaticType implements FieldExpr.
func (i Intrinsic) StaticType() Type {
	switch i {
	case IntrinsicStatus:
		return TypeStatus
	case IntrinsicKind:
		return TypeKind
	case IntrinsicDuration, IntrinsicTraceDuration, IntrinsicEventTimeSinceStart:
		return TypeDuration
	case IntrinsicChildCount, IntrinsicNestedSetLeft, IntrinsicNestedSetRight, IntrinsicNestedSetParent:
		return TypeInt
	}
	// Names, messages and IDs (compared as hex strings) are all strings.
	return TypeString
}

// StaticType implements FieldExpr.
func (b *BinaryOp) StaticType() Type {
	if b.Op == OpAnd || b.Op == OpOr || b.Op.IsComparison() {
		return TypeBool
	}
	return arithmeticType(b.LHS.StaticType(), b.RHS.StaticType())
}

// StaticType implements FieldExpr.
func (u *UnaryOp) StaticType() Type {
	if u.Op == OpNot {
		return TypeBool
	}
	return u.Expr.StaticType()
}

// arithmeticType is the result type of arithmetic on operands of types a
// and b, both already known to be numeric or attributes.
func arithmeticType(a, b Type) Type {
	switch {
	case a == TypeAttribute || b == TypeAttribute:
		return TypeAttribute
	case a == TypeDuration || b == TypeDuration:
		return TypeDuration
	case a == TypeFloat || b == TypeFloat:
		return TypeFloat
	}
	return TypeInt
}

// Scope is the part of the data an intrinsic belongs to.
func (i Intrinsic) Scope() IntrinsicScope {
	switch i {
	case IntrinsicRootName, IntrinsicRootServiceName, IntrinsicTraceDuration, IntrinsicTraceID:
		return IntrinsicScopeTrace
	case IntrinsicEventName, IntrinsicEventTimeSinceStart:
		return IntrinsicScopeEvent
	case IntrinsicLinkTraceID, IntrinsicLinkSpanID:
		return IntrinsicScopeLink
	case IntrinsicInstrumentationName, IntrinsicInstrumentationVersion:
		return IntrinsicScopeInstrumentation
	}
	return IntrinsicScopeSpan
}

// IntrinsicScope is the level of the data model an intrinsic is read from.
type IntrinsicScope int

// Intrinsic scopes.
const (
	IntrinsicScopeSpan IntrinsicScope = iota + 1
	IntrinsicScopeTrace
	IntrinsicScopeEvent
	IntrinsicScopeLink
	IntrinsicScopeInstrumentation
)
