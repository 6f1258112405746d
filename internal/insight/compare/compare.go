// Package compare answers "what do these spans have in common?": given a selection (a TraceQL
// spanset filter such as { duration > 500ms }) and a baseline, it ranks every span, resource
// and event attribute value by how much more often the selection has it than the baseline, and
// every numeric attribute by how far its distribution shifts.
//
// Blocks are read by their columns (columns.go): dictionary entries are counted, not spans, and
// strings are built only for the values counted. The head, traces split across places and
// filters the columns cannot answer are read through the search engine's span scan
// (search.Engine.ScanSpans), which evaluates both filters with the same code as /api/search.
// What is kept per value is a count and a few example traces, so memory grows with the distinct
// values, which are capped per key: a key with more distinct values than that is an identifier,
// not a cause, and is left out.
package compare

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/read/search"
	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
)

// Request is one comparison.
type Request struct {
	Selection *traceql.Query
	// Baseline nil compares with the other spans of the span names the selection has, in the
	// same range; otherwise with the spans Baseline keeps, less those of the selection.
	Baseline   *traceql.Query
	Start, End time.Time
	// Limit is the most values and the most shifts listed; 20 when 0.
	Limit int
}

// Result is a comparison's answer.
type Result struct {
	SelectionSpans, BaselineSpans int64
	// Values are the attribute values over-represented in the selection, most significant
	// first.
	Values []ValueDiff
	// Shifts are the numeric attributes whose distribution differs, most significant first.
	Shifts []Shift
	// HighCardinality are the keys left out as identifiers (distinct values ≈ spans).
	HighCardinality []string
	// Tested are the keys the selection itself tests, left out: they differ by definition.
	Tested  []string
	Metrics search.Metrics
}

// ValueDiff is one attribute value, counted in spans.
type ValueDiff struct {
	Key   string // as TraceQL names it: span.k, resource.k, event.k, event:name, name, status, kind
	Value search.Value
	// Selection and Baseline are how many spans of each side have the value; the percentages
	// are of each side's spans.
	Selection, Baseline       int64
	SelectionPct, BaselinePct float64
	// Score is −log10 of the one-sided p-value of a two-proportion z-test; Significant holds
	// when it passes the threshold corrected for the number of values tested, the selection
	// has at least MinCount spans with the value and the share differs by MinShare or more.
	Score       float64
	Significant bool
	// ExampleTraceIDs are selection traces with the value.
	ExampleTraceIDs []string
}

// Shift is one numeric attribute compared by distribution.
type Shift struct {
	Key                 string
	Selection, Baseline Quantiles
	// D is the Kolmogorov–Smirnov statistic: the largest gap between the two cumulative
	// distributions (0 the same, 1 apart). Score is −log10 of its p-value.
	D               float64
	Score           float64
	Significant     bool
	ExampleTraceIDs []string
}

// Quantiles summarise one side's values of a numeric key. Durations are nanoseconds.
type Quantiles struct {
	Count         int64
	P50, P90, P99 float64
}

// Thresholds of significance. A value must be seen MinCount times in the selection before it is
// ranked at all: two sightings prove nothing however lopsided.
const (
	MinCount     = 5
	MinShare     = 0.05 // of the spans: 5 percentage points
	MinShiftD    = 0.1
	minShiftSize = 10
	// alpha is the family-wise false-positive rate: each test's p-value must be under
	// alpha/tests (Bonferroni), so that one comparison over hundreds of values on data without
	// a cause reports nothing.
	alpha = 0.01
	// maxDistinct values are counted per key and side before the key is taken for an ID.
	maxDistinct = 1000
	examples    = 3
)

// Compare runs a comparison over e's spans. Blocks are read by their columns when both filters
// are simple span conditions (columns.go); otherwise every span is read as a search reads it.
func Compare(ctx context.Context, e *search.Engine, req Request) (*Result, error) {
	if req.Selection == nil {
		return nil, errors.New("compare: no selection")
	}
	selF := compileFilter(req.Selection)
	var baseF *colFilter
	if req.Baseline != nil {
		baseF = compileFilter(req.Baseline)
	}
	if selF != nil && (req.Baseline == nil || baseF != nil) {
		return compareByColumns(ctx, e, req, selF, baseF)
	}
	return compareByScan(ctx, e, req)
}

// compareByScan reads every span in range through the search engine's span scan.
func compareByScan(ctx context.Context, e *search.Engine, req Request) (*Result, error) {
	sel := newSide()
	baseByName := map[string]*side{}
	selNames := map[string]bool{}
	var m search.Metrics
	if req.Baseline == nil {
		// The default baseline is the selection's span names only: a first pass reads the
		// selection as a search does (pruned, its own columns) to learn them, so that the full
		// pass below counts no span of another name. Spans arriving between the passes can only
		// add a name whose earlier spans the baseline then lacks, which live data allows anyway.
		var err error
		m, err = e.ScanSpans(ctx, search.SpanScanRequest{Selection: req.Selection, Start: req.Start, End: req.End, SelectedOnly: true},
			func(s *search.ScannedSpan) {
				if !selNames[s.Name] {
					selNames[strings.Clone(s.Name)] = true
				}
			})
		if err != nil {
			return nil, fmt.Errorf("compare: %w", err)
		}
		if len(selNames) == 0 {
			res := rank(sel, sel, testedKeys(req.Selection), cmp.Or(req.Limit, 20))
			res.Metrics = m
			return res, nil
		}
	}
	c := &spanCounter{sel: sel, baseByName: baseByName, selNames: selNames, given: req.Baseline != nil}
	m2, err := e.ScanSpans(ctx, search.SpanScanRequest{Selection: req.Selection, Baseline: req.Baseline, Start: req.Start, End: req.End}, c.count)
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	sel.addResources()
	for _, sd := range baseByName {
		sd.addResources()
	}
	base := newSide()
	for name, sd := range baseByName {
		if req.Baseline != nil || selNames[name] {
			base.merge(sd)
		}
	}
	res := rank(sel, base, testedKeys(req.Selection), cmp.Or(req.Limit, 20))
	res.Metrics = addMetrics(m, m2)
	return res, nil
}

// spanCounter counts the spans a span scan hands it, each to the selection or to its name's
// share of the baseline.
type spanCounter struct {
	sel        *side
	baseByName map[string]*side
	selNames   map[string]bool
	// given: the baseline is a query's, not the selection's span names.
	given bool
	// all counts the baseline spans of every name, for a caller that learns the selection's
	// names only afterwards.
	all bool
	// The span being counted and its side, for addAttr: one closure for the whole scan rather
	// than one per span.
	cur     *side
	curSpan *search.ScannedSpan
	addAttr func(scope search.AttrScope, key string, v search.Value)
}

func (c *spanCounter) count(s *search.ScannedSpan) {
	if c.addAttr == nil {
		c.addAttr = func(scope search.AttrScope, key string, v search.Value) {
			c.cur.add(attrKey{scope: scopeOf[scope], name: key}, v, c.curSpan.TraceID)
		}
	}
	var sd *side
	switch {
	case s.Selected:
		sd = c.sel
		if !c.selNames[s.Name] {
			c.selNames[strings.Clone(s.Name)] = true
		}
	case s.InBaseline && (c.given || c.all || c.selNames[s.Name]):
		sd = c.baseByName[s.Name]
		if sd == nil {
			sd = newSide()
			c.baseByName[strings.Clone(s.Name)] = sd
		}
	default:
		return
	}
	c.cur, c.curSpan = sd, s
	sd.spans++
	sd.seen = sd.seen[:0]
	sd.add(keyName, search.Value{Type: "string", String: s.Name}, s.TraceID)
	sd.add(keyStatus, search.Value{Type: "status", String: s.Status()}, s.TraceID)
	sd.add(keyKind, search.Value{Type: "kind", String: s.Kind()}, s.TraceID)
	sd.add(keyDuration, search.Value{Type: "duration", Int: s.DurationNanos}, s.TraceID)
	if r := s.Resource(); r != nil {
		ra := sd.res[r]
		if ra == nil {
			ra = &resAcc{}
			sd.res[r] = ra
		}
		ra.spans++
		addExample(&ra.examples, s.TraceID)
	}
	s.Attributes(c.addAttr)
}

// addMetrics adds up what two passes read.
func addMetrics(a, b search.Metrics) search.Metrics {
	a.InspectedTraces += b.InspectedTraces
	a.InspectedSpans += b.InspectedSpans
	a.InspectedBytes += b.InspectedBytes
	a.TotalBlocks += b.TotalBlocks
	a.SkippedBlocks += b.SkippedBlocks
	return a
}

// testedKeys are the keys, as compare names them, that q's conditions read.
func testedKeys(q *traceql.Query) map[string]bool {
	out := map[string]bool{}
	cols := q.Columns()
	for _, a := range cols.Attributes {
		switch a.Scope {
		case traceql.ScopeSpan:
			out["span."+a.Name] = true
		case traceql.ScopeResource:
			out["resource."+a.Name] = true
		case traceql.ScopeEvent:
			out["event."+a.Name] = true
		case traceql.ScopeNone:
			out["span."+a.Name], out["resource."+a.Name] = true, true
		}
	}
	for _, i := range cols.Intrinsics {
		switch i {
		case traceql.IntrinsicName:
			out["name"] = true
		case traceql.IntrinsicStatus:
			out["status"] = true
		case traceql.IntrinsicKind:
			out["kind"] = true
		case traceql.IntrinsicDuration:
			out["duration"] = true
		case traceql.IntrinsicEventName:
			out["event:name"] = true
		}
	}
	return out
}

// Where a key is, as compare counts it: keys are counted by scope and bare name, and written
// the TraceQL way (span.k, resource.k, event.k, event:name, name) only for the answer, so no
// string is built per attribute.
const (
	scopeIntrinsic uint8 = iota
	scopeResource
	scopeSpan
	scopeEvent
	scopeEventName
)

var scopeOf = map[search.AttrScope]uint8{search.AttrSpan: scopeSpan, search.AttrEvent: scopeEvent, search.AttrEventName: scopeEventName}

type attrKey struct {
	scope uint8
	name  string
}

var (
	keyName     = attrKey{scopeIntrinsic, "name"}
	keyStatus   = attrKey{scopeIntrinsic, "status"}
	keyKind     = attrKey{scopeIntrinsic, "kind"}
	keyDuration = attrKey{scopeIntrinsic, "duration"}
)

func (k attrKey) String() string {
	switch k.scope {
	case scopeResource:
		return "resource." + k.name
	case scopeSpan:
		return "span." + k.name
	case scopeEvent:
		return "event." + k.name
	case scopeEventName:
		return "event:name"
	}
	return k.name
}

// valueKey is a counted value without its text built: strings (and status and kind names) by
// themselves, ints and bools by their bits.
type valueKey struct {
	typ uint8
	s   string
	n   uint64
}

const (
	vString uint8 = iota + 1
	vInt
	vBool
	vStatus
	vKind
	vOther
)

func keyOf(v search.Value) valueKey {
	switch v.Type {
	case "string":
		return valueKey{typ: vString, s: v.String}
	case "int":
		return valueKey{typ: vInt, n: uint64(v.Int)}
	case "bool":
		if v.Bool {
			return valueKey{typ: vBool, n: 1}
		}
		return valueKey{typ: vBool}
	case "status":
		return valueKey{typ: vStatus, s: v.String}
	case "kind":
		return valueKey{typ: vKind, s: v.String}
	}
	return valueKey{typ: vOther, s: valueText(v)}
}

type valueAcc struct {
	val      search.Value
	spans    int64
	examples [][16]byte
}

type keyAcc struct {
	// values is nil once the key has had more than maxDistinct values.
	values   map[valueKey]*valueAcc
	highCard bool
	// numeric: how many values of an int, float or duration key were seen, their histogram
	// and a few example traces.
	numSeen  int64
	hist     histogram
	examples [][16]byte
}

// side counts one side of the comparison (or one span name's share of the baseline).
type side struct {
	spans int64
	keys  map[attrKey]*keyAcc
	// res counts spans by resource: a resource's attributes are added once, weighted by its
	// spans, after the scan (addResources), not once per span.
	res map[any]*resAcc
	// seen are the key/value pairs of the current span's events, so that a value on several of
	// its events counts once. A span's own and its resource's keys are unique.
	seen []seenKey
}

type resAcc struct {
	spans    int64
	examples [][16]byte
}

type seenKey struct {
	k attrKey
	v valueKey
}

func newSide() *side { return &side{keys: map[attrKey]*keyAcc{}, res: map[any]*resAcc{}} }

func (sd *side) key(key attrKey) *keyAcc {
	k := sd.keys[key]
	if k == nil {
		k = &keyAcc{values: map[valueKey]*valueAcc{}}
		sd.keys[key] = k
	}
	return k
}

// add counts value v of key for one span of trace id. Event values are counted once per span:
// the caller resets seen per span.
func (sd *side) add(key attrKey, v search.Value, id [16]byte) {
	if key.scope == scopeEvent || key.scope == scopeEventName {
		sk := seenKey{key, keyOf(v)}
		if slices.Contains(sd.seen, sk) {
			return
		}
		sd.seen = append(sd.seen, sk)
	}
	ex := [1][16]byte{id}
	sd.addN(key, v, 1, ex[:])
}

// addN counts value v of key for weight spans (one, or a resource's spans, or a value's count
// in a block), with up to a few example traces.
func (sd *side) addN(key attrKey, v search.Value, weight int64, examples [][16]byte) {
	k := sd.key(key)
	if num, ok := numeric(v); ok {
		k.numSeen += weight
		k.hist.add(num, weight)
		for _, id := range examples {
			addExample(&k.examples, id)
		}
	}
	// Floats and durations are measurements, compared only by distribution; ints may be codes
	// (http.response.status_code), so they are counted as values too.
	if v.Type == "float" || v.Type == "duration" || k.values == nil {
		return
	}
	k.addValue(keyOf(v), v, weight, examples)
}

// addValue counts weight spans with value vk (v) of a counted key.
func (k *keyAcc) addValue(vk valueKey, v search.Value, weight int64, examples [][16]byte) {
	va := k.values[vk]
	if va == nil {
		if len(k.values) >= maxDistinct {
			k.values, k.highCard = nil, true
			return
		}
		va = &valueAcc{val: v}
		k.values[vk] = va
	}
	va.spans += weight
	for _, id := range examples {
		addExample(&va.examples, id)
	}
}

// numeric is v's number when it is an int, float or duration.
func numeric(v search.Value) (float64, bool) {
	switch v.Type {
	case "int", "duration":
		return float64(v.Int), true
	case "float":
		return v.Float, true
	}
	return 0, false
}

// addResources adds each counted resource's attributes, weighted by its spans.
func (sd *side) addResources() {
	for r, ra := range sd.res {
		search.ResourceAttributes(r, func(key string, v search.Value) {
			sd.addN(attrKey{scopeResource, key}, v, ra.spans, ra.examples)
		})
	}
	sd.res = map[any]*resAcc{}
}

func addExample(ex *[][16]byte, id [16]byte) {
	if len(*ex) < examples && !slices.Contains(*ex, id) {
		*ex = append(*ex, id)
	}
}

func valueText(v search.Value) string {
	switch v.Type {
	case "int":
		return strconv.FormatInt(v.Int, 10)
	case "bool":
		return strconv.FormatBool(v.Bool)
	case "float":
		return strconv.FormatFloat(v.Float, 'g', -1, 64)
	}
	return v.String
}

// merge adds o's counts to sd.
func (sd *side) merge(o *side) {
	sd.spans += o.spans
	for key, ok := range o.keys {
		k := sd.key(key)
		k.hist.merge(&ok.hist)
		k.numSeen += ok.numSeen
		for _, id := range ok.examples {
			addExample(&k.examples, id)
		}
		if ok.values == nil || k.values == nil {
			k.values, k.highCard = nil, true
			continue
		}
		for vk, va := range ok.values {
			mine := k.values[vk]
			if mine == nil {
				mine = &valueAcc{val: va.val}
				k.values[vk] = mine
			}
			mine.spans += va.spans
			for _, id := range va.examples {
				addExample(&mine.examples, id)
			}
		}
		if len(k.values) > maxDistinct {
			k.values, k.highCard = nil, true
		}
	}
}

// isHighCardinality: a key whose values are mostly distinct (an ID) says nothing about a group.
func isHighCardinality(k *keyAcc, spansWithKey int64) bool {
	if k.highCard {
		return true
	}
	n := int64(len(k.values))
	return n > 20 && float64(n) > 0.5*float64(spansWithKey)
}

func rank(sel, base *side, tested map[string]bool, limit int) *Result {
	res := &Result{SelectionSpans: sel.spans, BaselineSpans: base.spans, Values: []ValueDiff{}, Shifts: []Shift{},
		HighCardinality: []string{}, Tested: []string{}}
	for k := range sel.keys {
		if tested[k.String()] {
			res.Tested = append(res.Tested, k.String())
		}
	}
	slices.Sort(res.Tested)
	if sel.spans == 0 {
		return res
	}
	empty := &keyAcc{values: map[valueKey]*valueAcc{}}
	var tests int
	for ak, sk := range sel.keys {
		key := ak.String()
		if tested[key] {
			continue
		}
		bk := base.keys[ak]
		if bk == nil {
			bk = empty
		}
		if sk.numSeen >= minShiftSize && bk.numSeen >= minShiftSize {
			tests++
			res.Shifts = append(res.Shifts, shiftOf(key, sk, bk))
		}
		var selWith, baseWith int64
		for _, va := range sk.values {
			selWith += va.spans
		}
		for _, va := range bk.values {
			baseWith += va.spans
		}
		if isHighCardinality(sk, selWith) || isHighCardinality(bk, baseWith) {
			res.HighCardinality = append(res.HighCardinality, key)
			continue
		}
		for vk, va := range sk.values {
			tests++
			var b int64
			if bv := bk.values[vk]; bv != nil {
				b = bv.spans
			}
			if va.spans < MinCount {
				continue
			}
			d := ValueDiff{Key: key, Value: va.val, Selection: va.spans, Baseline: b,
				SelectionPct: 100 * float64(va.spans) / float64(sel.spans), ExampleTraceIDs: hexIDs(va.examples)}
			if base.spans > 0 {
				d.BaselinePct = 100 * float64(b) / float64(base.spans)
			}
			if d.SelectionPct <= d.BaselinePct {
				continue
			}
			d.Score = proportionScore(va.spans, sel.spans, b, base.spans)
			res.Values = append(res.Values, d)
		}
	}
	// Bonferroni: each of the tests must pass alpha/tests.
	need := -math.Log10(alpha / float64(max(tests, 1)))
	for i := range res.Values {
		d := &res.Values[i]
		d.Significant = base.spans > 0 && d.Score >= need && d.SelectionPct-d.BaselinePct >= 100*MinShare
	}
	for i := range res.Shifts {
		s := &res.Shifts[i]
		s.Significant = s.Score >= need && s.D >= MinShiftD
	}
	slices.SortFunc(res.Values, func(a, b ValueDiff) int {
		return cmp.Or(cmpBool(b.Significant, a.Significant), cmp.Compare(b.Score, a.Score), cmp.Compare(b.Selection, a.Selection),
			cmp.Compare(a.Key, b.Key), cmp.Compare(valueText(a.Value), valueText(b.Value)))
	})
	slices.SortFunc(res.Shifts, func(a, b Shift) int {
		return cmp.Or(cmpBool(b.Significant, a.Significant), cmp.Compare(b.Score, a.Score), cmp.Compare(a.Key, b.Key))
	})
	slices.Sort(res.HighCardinality)
	res.Values = res.Values[:min(limit, len(res.Values))]
	res.Shifts = res.Shifts[:min(limit, len(res.Shifts))]
	return res
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func hexIDs(ids [][16]byte) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		out = append(out, hex.EncodeToString(id[:]))
	}
	return out
}

// proportionScore is −log10 of the one-sided p-value that the selection's share (x1 of n1) is
// no larger than the baseline's (x2 of n2), by the pooled two-proportion z-test.
func proportionScore(x1, n1, x2, n2 int64) float64 {
	if n2 == 0 {
		return 0
	}
	p1, p2 := float64(x1)/float64(n1), float64(x2)/float64(n2)
	p := float64(x1+x2) / float64(n1+n2)
	se := math.Sqrt(p * (1 - p) * (1/float64(n1) + 1/float64(n2)))
	if se == 0 {
		return 0
	}
	return normalTailScore((p1 - p2) / se)
}

// normalTailScore is −log10 P(Z > z) for a standard normal Z, by its asymptote where erfc
// underflows.
func normalTailScore(z float64) float64 {
	if z <= 0 {
		return 0
	}
	if z < 30 {
		return -math.Log10(0.5 * math.Erfc(z/math.Sqrt2))
	}
	lnP := -z*z/2 - math.Log(z*math.Sqrt(2*math.Pi))
	return -lnP / math.Ln10
}

func shiftOf(key string, sk, bk *keyAcc) Shift {
	a, b := sk.hist.sorted(), bk.hist.sorted()
	s := Shift{Key: key, Selection: quantiles(a, sk.numSeen), Baseline: quantiles(b, bk.numSeen), ExampleTraceIDs: hexIDs(sk.examples)}
	s.D = ksD(a, b)
	na, nb := float64(sk.numSeen), float64(bk.numSeen)
	ne := na * nb / (na + nb)
	s.Score = ksScore(s.D, ne)
	return s
}

// histogram counts a numeric key's values: small integers exactly, anything else in bins
// 0.5% wide (log scale), so that a distribution over millions of spans costs a few thousand
// bins and quantiles and the KS statistic are within 0.5% of the values'.
type histogram struct {
	bins map[float64]int64
}

const histAccuracy = 0.005

var histGamma = math.Log1p(2 * histAccuracy)

func binOf(x float64) float64 {
	if x == math.Trunc(x) && math.Abs(x) <= 1<<20 {
		return x
	}
	if math.IsInf(x, 0) {
		return x
	}
	i := math.Round(math.Log(math.Abs(x)) / histGamma)
	return math.Copysign(math.Exp(i*histGamma), x)
}

func (h *histogram) add(x float64, w int64) {
	if math.IsNaN(x) {
		return
	}
	if h.bins == nil {
		h.bins = map[float64]int64{}
	}
	h.bins[binOf(x)] += w
}

func (h *histogram) merge(o *histogram) {
	for v, w := range o.bins {
		if h.bins == nil {
			h.bins = map[float64]int64{}
		}
		h.bins[v] += w
	}
}

type bin struct {
	v float64
	w int64
}

func (h *histogram) sorted() []bin {
	out := make([]bin, 0, len(h.bins))
	for v, w := range h.bins {
		out = append(out, bin{v, w})
	}
	slices.SortFunc(out, func(x, y bin) int { return cmp.Compare(x.v, y.v) })
	return out
}

func total(bs []bin) int64 {
	var w int64
	for _, b := range bs {
		w += b.w
	}
	return w
}

func quantiles(bs []bin, seen int64) Quantiles {
	q := Quantiles{Count: seen}
	if len(bs) == 0 {
		return q
	}
	w := float64(total(bs))
	at := func(p float64) float64 {
		var acc float64
		for _, b := range bs {
			acc += float64(b.w)
			if acc >= p*w {
				return b.v
			}
		}
		return bs[len(bs)-1].v
	}
	q.P50, q.P90, q.P99 = at(0.5), at(0.9), at(0.99)
	return q
}

// ksD is the two-sample Kolmogorov–Smirnov statistic of two sorted histograms.
func ksD(a, b []bin) float64 {
	wa, wb := float64(total(a)), float64(total(b))
	var i, j int
	var fa, fb, d float64
	for i < len(a) || j < len(b) {
		var v float64
		switch {
		case j >= len(b) || (i < len(a) && a[i].v <= b[j].v):
			v = a[i].v
		default:
			v = b[j].v
		}
		for i < len(a) && a[i].v == v {
			fa += float64(a[i].w) / wa
			i++
		}
		for j < len(b) && b[j].v == v {
			fb += float64(b[j].w) / wb
			j++
		}
		d = max(d, math.Abs(fa-fb))
	}
	return d
}

// ksScore is −log10 of the asymptotic Kolmogorov p-value of statistic d for effective size ne.
func ksScore(d, ne float64) float64 {
	if d <= 0 {
		return 0
	}
	sq := math.Sqrt(ne)
	l := (sq + 0.12 + 0.11/sq) * d
	var p float64
	for k := 1; k <= 100; k++ {
		term := 2 * math.Exp(-2*float64(k*k)*l*l)
		if k%2 == 0 {
			term = -term
		}
		p += term
		if math.Abs(term) < 1e-12*p {
			break
		}
	}
	if p >= 1 {
		return 0
	}
	if p <= 1e-300 {
		// The series' first term dominates where the sum underflows.
		return -(math.Log(2) - 2*l*l) / math.Ln10
	}
	return -math.Log10(p)
}
