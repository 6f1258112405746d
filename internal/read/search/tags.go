package search

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// Tag scopes, as Tempo names them.
const (
	ScopeResource  = "resource"
	ScopeSpan      = "span"
	ScopeEvent     = "event"
	ScopeLink      = "link"
	ScopeIntrinsic = "intrinsic"
)

// intrinsicTags are the intrinsics offered for autocompletion.
var intrinsicTags = []string{"duration", "event:name", "kind", "name", "rootName", "rootServiceName",
	"status", "statusMessage", "traceDuration"}

// TagsRequest asks for tag names.
type TagsRequest struct {
	// Scope is one of the Scope constants, or "" for all.
	Scope      string
	Start, End time.Time
	// Limit caps the names per scope; 0 is no cap.
	Limit int
	// Query, when set, limits the names to those on spans matching it.
	Query *traceql.Query
}

// TagNames returns the tag names per scope, sorted.
func (e *Engine) TagNames(ctx context.Context, req TagsRequest) (map[string][]string, error) {
	want := func(s string) bool { return req.Scope == "" || req.Scope == s }
	sets := map[string]map[string]bool{ScopeResource: {}, ScopeSpan: {}, ScopeEvent: {}, ScopeLink: {}}
	addRes := func(r *resource) {
		for _, a := range r.attrs {
			sets[ScopeResource][a.key] = true
		}
	}
	addSpan := func(s *span) {
		for _, a := range s.attrs {
			sets[ScopeSpan][a.key] = true
		}
		for _, ev := range s.events {
			for _, a := range ev.attrs {
				sets[ScopeEvent][a.key] = true
			}
		}
		for _, l := range s.links {
			for _, a := range l.attrs {
				sets[ScopeLink][a.key] = true
			}
		}
		if s.res != nil {
			addRes(s.res)
		}
	}
	if req.Query != nil {
		if err := e.matchingSpans(ctx, req.Query, req.Start, req.End, true, false, func(_ *trace, s *span) { addSpan(s) }); err != nil {
			return nil, err
		}
	} else {
		// Blocks answer from dictionaries and groups; only the head needs decoding.
		// The head answers from its index, kept as spans arrive (see head/index.go); like a
		// block's dictionaries, it is not bounded by the time range.
		p := &plan{}
		p.minStart, p.maxStart = bounds(req.Start, req.End)
		if e.fullScan {
			heads, _ := headTraces(e.head(ctx), p.minStart, p.maxStart)
			for _, parts := range heads {
				t, err := decodeHead(parts, map[*otlpwire.Group]*resource{}, allWire())
				if err != nil {
					return nil, fmt.Errorf("search: head: %w", err)
				}
				for i := range t.spans {
					addSpan(&t.spans[i])
				}
			}
		}
		spanKeys, eventKeys, linkKeys := e.head(ctx).AttributeKeys()
		if e.fullScan {
			spanKeys, eventKeys, linkKeys = nil, nil, nil
		}
		for scope, keys := range map[string][]string{ScopeSpan: spanKeys, ScopeEvent: eventKeys, ScopeLink: linkKeys} {
			for _, k := range keys {
				sets[scope][k] = true
			}
		}
		var headErr error
		e.head(ctx).Groups(func(g *otlpwire.Group) {
			if e.fullScan {
				return
			}
			r, err := decodeResource(g.Resource, g.Scope)
			if err != nil {
				headErr = err
				return
			}
			addRes(r)
		})
		if headErr != nil {
			return nil, fmt.Errorf("search: head: %w", headErr)
		}
		blocks, release := e.src.AcquireBlocks()
		defer release()
		for _, b := range blocks {
			meta := b.Meta()
			if (p.minStart != 0 && meta.MaxEnd < p.minStart) || (p.maxStart != 0 && meta.MinStart > p.maxStart) || meta.Traces == 0 {
				continue
			}
			res, err := e.groups.get(b)
			if err != nil {
				return nil, fmt.Errorf("search: %w", err)
			}
			for _, r := range res {
				addRes(r)
			}
			for scope, col := range map[string]block.DictColumn{ScopeSpan: block.DictSpanAttrKey, ScopeEvent: block.DictEventAttrKey, ScopeLink: block.DictLinkAttrKey} {
				d, err := e.prune.distinct(b, col)
				if block.SkipDamaged(ctx, err) {
					continue
				}
				if err != nil {
					return nil, fmt.Errorf("search: %w", err)
				}
				if !d.complete {
					return nil, fmt.Errorf("search: block %s: %s attribute keys are not all dictionary-encoded", meta.ID, scope)
				}
				for _, k := range d.values {
					sets[scope][k] = true
				}
			}
		}
	}
	out := map[string][]string{}
	for scope, set := range sets {
		if !want(scope) {
			continue
		}
		names := make([]string, 0, len(set))
		for k := range set {
			names = append(names, k)
		}
		slices.Sort(names)
		if req.Limit > 0 && len(names) > req.Limit {
			names = names[:req.Limit]
		}
		out[scope] = names
	}
	if want(ScopeIntrinsic) {
		out[ScopeIntrinsic] = slices.Clone(intrinsicTags)
	}
	return out, nil
}

func bounds(start, end time.Time) (int64, int64) {
	var lo, hi int64
	if !start.IsZero() {
		lo = start.UnixNano()
	}
	if !end.IsZero() {
		hi = end.UnixNano()
	}
	return lo, hi
}

// matchingSpans calls fn for every span of the spansets q leaves, over head and blocks. allAttrs
// reads every attribute, for tag discovery.
func (e *Engine) matchingSpans(ctx context.Context, q *traceql.Query, start, end time.Time, allAttrs, skipHead bool, fn func(*trace, *span)) error {
	p := newPlan(q, start, end)
	p.skipHead = skipHead
	if allAttrs {
		p.cols.AllSpanAttrs, p.cols.AllEventAttrs, p.cols.AllLinkAttrs = true, true, true
		p.cols.Events, p.cols.Links = true, true
	}
	var m Metrics
	return e.scanAll(ctx, p, &m, func(t *trace) {
		seen := map[int32]bool{}
		for _, ss := range evalPipeline(q, t) {
			for _, i := range ss.spans {
				if !seen[i] {
					seen[i] = true
					fn(t, &t.spans[i])
				}
			}
		}
	}, func() (int64, bool) { return 0, false })
}

// TagValuesRequest asks for the values of one tag.
type TagValuesRequest struct {
	// Tag is a scoped attribute ("resource.service.name", "span.http.method"), an unscoped one
	// (".http.method" or, as the v1 API has it, "http.method"), or an intrinsic ("name").
	Tag        string
	Start, End time.Time
	Limit      int
	// MaxBytes caps the size of the values gathered (their text), as Tempo's
	// max_bytes_per_tag_values_query: a tag holding an ID per trace cannot fill memory with every
	// one of them. 0 is no cap.
	MaxBytes int64
	// Query, when set, limits the values to those on spans matching it.
	Query *traceql.Query
}

// ParseTag parses a tag as the tag values APIs name it. Names without a scope or a leading dot
// that are not intrinsics are taken as unscoped attributes, as Tempo's v1 API does.
func ParseTag(tag string) (traceql.FieldExpr, error) {
	if tag == "" {
		return nil, fmt.Errorf("empty tag name")
	}
	for _, src := range []string{tag, "." + tag} {
		// select() takes exactly one plain field, so this accepts a tag and nothing else.
		q, err := traceql.Parse("{ } | select(" + src + ")")
		if err != nil || len(q.Stages) != 2 {
			continue
		}
		if sel, ok := q.Stages[1].(*traceql.Select); ok && len(sel.Fields) == 1 {
			return sel.Fields[0], nil
		}
	}
	return nil, fmt.Errorf("tag %q is neither an attribute nor an intrinsic", tag)
}

// TagValues returns the distinct values of a tag, typed, sorted by type and then value.
func (e *Engine) TagValues(ctx context.Context, req TagValuesRequest) ([]Value, error) {
	field, err := ParseTag(req.Tag)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	seen := map[string]bool{}
	var out []Value
	full := false
	skipHead := false
	var size int64
	add := func(v value) {
		if full {
			return
		}
		n := len(out)
		if v.k == kArray {
			for _, el := range v.arr {
				if el.k != kArray {
					addOne(seen, &out, el)
				}
			}
		} else if v.k != kNil {
			addOne(seen, &out, v)
		}
		for _, nv := range out[n:] {
			size += int64(len(nv.String)) + 16 // the text, and the type and framing around it
		}
		full = (req.Limit > 0 && len(out) >= req.Limit) || (req.MaxBytes > 0 && size >= req.MaxBytes)
	}
	switch f := field.(type) {
	case traceql.Intrinsic:
		switch f {
		case traceql.IntrinsicStatus:
			if req.Query == nil {
				for i := int64(1); i <= 3; i++ {
					add(value{k: kStatus, i: i})
				}
				return sortValues(out), nil
			}
		case traceql.IntrinsicKind:
			if req.Query == nil {
				for i := int64(1); i <= 6; i++ {
					add(value{k: kKind, i: i})
				}
				return sortValues(out), nil
			}
		}
	case traceql.Attribute:
		if f.Scope == traceql.ScopeSpan && req.Query == nil && !e.fullScan {
			// The head's value lists, when complete, stand for decoding every head trace.
			if kv := e.head(ctx).SpanAttributeValues(f.Name); kv.Complete {
				for _, vk := range kv.Values {
					add(headValue(vk))
				}
				skipHead = true
				// And each block's value lists, built once per block; like tag names, a block is
				// taken whole when its time range meets the request's.
				done, err := e.blockValues(ctx, f.Name, req.Start, req.End, func(vk string) { add(headValue(vk)) })
				if err != nil {
					return nil, err
				}
				if done {
					return sortValues(out), nil
				}
			}
		}
		if f.Scope == traceql.ScopeResource && req.Query == nil {
			// Resources are few: the head's groups and each block's, all in memory.
			err := e.resourceValues(ctx, f.Name, req.Start, req.End, func(v value) { add(v) })
			return sortValues(out), err
		}
	}
	q := req.Query
	if q == nil {
		q = &traceql.Query{Stages: []traceql.Stage{&traceql.SpansetFilter{Cond: &traceql.BinaryOp{
			Op: traceql.OpNeq, LHS: field, RHS: traceql.Static{Type: traceql.TypeNil}}}}}
		if _, ok := field.(traceql.Intrinsic); ok {
			q = &traceql.Query{Stages: []traceql.Stage{&traceql.SpansetFilter{}}}
		}
	}
	withField := &traceql.Query{Stages: append(slices.Clone(q.Stages), &traceql.Select{Fields: []traceql.FieldExpr{field}})}
	err = e.matchingSpans(ctx, withField, req.Start, req.End, false, skipHead, func(t *trace, s *span) {
		if !full {
			add(evalField(field, t, s))
		}
	})
	if err != nil {
		return nil, err
	}
	return sortValues(out), nil
}

// headValue is the value a head value key (see head.IntKey) stands for.
func headValue(vk string) value {
	if len(vk) == 0 {
		return value{}
	}
	b := []byte(vk[1:])
	switch vk[0] {
	case head.ValueString:
		return value{k: kString, s: vk[1:]}
	case head.ValueInt:
		return value{k: kInt, i: int64(binary.LittleEndian.Uint64(b))}
	case head.ValueDouble:
		return value{k: kFloat, f: math.Float64frombits(binary.LittleEndian.Uint64(b))}
	case head.ValueBool:
		return value{k: kBool, b: b[0] != 0}
	}
	return value{}
}

func addOne(seen map[string]bool, out *[]Value, v value) {
	k := string(rune('a'+v.k)) + v.text()
	if !seen[k] {
		seen[k] = true
		*out = append(*out, exportValue(v))
	}
}

func sortValues(vs []Value) []Value {
	slices.SortFunc(vs, func(a, b Value) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.String, b.String), cmp.Compare(a.Int, b.Int),
			cmp.Compare(a.Float, b.Float), boolCmp(a.Bool, b.Bool))
	})
	return vs
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

func (e *Engine) resourceValues(ctx context.Context, key string, start, end time.Time, fn func(value)) error {
	minStart, maxStart := bounds(start, end)
	resources := map[*otlpwire.Group]*resource{}
	heads, _ := headTraces(e.head(ctx), minStart, maxStart)
	for _, parts := range heads {
		for _, p := range parts {
			for _, g := range p.groups {
				if _, ok := resources[g]; ok {
					continue
				}
				r, err := decodeResource(g.Resource, g.Scope)
				if err != nil {
					return fmt.Errorf("search: head: %w", err)
				}
				resources[g] = r
				if v, ok := findAttr(r.attrs, key); ok {
					fn(v)
				}
			}
		}
	}
	blocks, release := e.src.AcquireBlocks()
	defer release()
	for _, b := range blocks {
		if err := ctx.Err(); err != nil {
			return err
		}
		meta := b.Meta()
		if (minStart != 0 && meta.MaxEnd < minStart) || (maxStart != 0 && meta.MinStart > maxStart) || meta.Traces == 0 {
			continue
		}
		res, err := e.groups.get(b)
		if err != nil {
			return fmt.Errorf("search: %w", err)
		}
		for _, r := range res {
			if v, ok := findAttr(r.attrs, key); ok {
				fn(v)
			}
		}
	}
	return nil
}

// blockValues calls fn with the values of span attribute key in every block whose range meets
// [start, end], from the blocks' value lists; false when some block's list is incomplete and the
// caller must read the blocks instead (fn may have been called).
func (e *Engine) blockValues(ctx context.Context, key string, start, end time.Time, fn func(string)) (bool, error) {
	minStart, maxStart := bounds(start, end)
	blocks, release := e.src.AcquireBlocks()
	defer release()
	for _, b := range blocks {
		meta := b.Meta()
		if (minStart != 0 && meta.MaxEnd < minStart) || (maxStart != 0 && meta.MinStart > maxStart) || meta.Traces == 0 {
			continue
		}
		kv, err := e.prune.keyValues(ctx, b, key)
		if err != nil {
			return false, fmt.Errorf("search: %w", err)
		}
		if kv == nil {
			continue
		}
		if !kv.complete {
			return false, nil
		}
		for vk := range kv.vals {
			fn(vk)
		}
	}
	return true, nil
}
