package search

import (
	"slices"
	"sync"

	"github.com/ariadne-tracing/ariadne/internal/block"
	"github.com/ariadne-tracing/ariadne/internal/traceql"
)

// pruneCache remembers the distinct values of a block's dictionary columns, read from their
// dictionary pages once per block: the statistics that rule a block out without reading spans.
type pruneCache struct {
	mu sync.Mutex
	m  map[*block.Reader]map[block.DictColumn]distinct
}

type distinct struct {
	values   []string // sorted
	complete bool
}

func (c *pruneCache) distinct(r *block.Reader, col block.DictColumn) (distinct, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.m[r][col]; ok {
		return d, nil
	}
	vals, complete, err := r.Distinct(col)
	if err != nil {
		return distinct{}, err
	}
	if c.m == nil {
		c.m = map[*block.Reader]map[block.DictColumn]distinct{}
	}
	if c.m[r] == nil {
		c.m[r] = map[block.DictColumn]distinct{}
	}
	d := distinct{vals, complete}
	c.m[r][col] = d
	return d, nil
}

func (c *pruneCache) forget(live []*block.Reader) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for r := range c.m {
		if !slices.Contains(live, r) {
			delete(c.m, r)
		}
	}
}

// has reports whether a block may hold s in col: false only when the column's dictionaries are
// complete and lack it.
func (c *pruneCache) has(r *block.Reader, col block.DictColumn, s string) (bool, error) {
	d, err := c.distinct(r, col)
	if err != nil || !d.complete {
		return true, err
	}
	_, ok := slices.BinarySearch(d.values, s)
	return ok, nil
}

// mayMatch reports whether a block may hold a trace satisfying every required condition.
func (c *pruneCache) mayMatch(r *block.Reader, res []*resource, required []traceql.Condition) (bool, error) {
	for _, cond := range required {
		ok, err := c.mayHold(r, res, cond)
		if err != nil || !ok {
			return ok, err
		}
	}
	return true, nil
}

func (c *pruneCache) mayHold(r *block.Reader, res []*resource, cond traceql.Condition) (bool, error) {
	if cond.Value.Type == traceql.TypeNil && cond.Op == traceql.OpEq {
		return true, nil // "= nil" holds where the key is absent, which no statistic rules out
	}
	eqString := cond.Op == traceql.OpEq && cond.Value.Type == traceql.TypeString
	switch f := cond.Field.(type) {
	case traceql.Intrinsic:
		if !eqString {
			return true, nil
		}
		switch f {
		case traceql.IntrinsicName:
			return c.has(r, block.DictSpanName, cond.Value.Str)
		case traceql.IntrinsicRootName:
			return c.has(r, block.DictRootName, cond.Value.Str)
		case traceql.IntrinsicRootServiceName:
			return c.has(r, block.DictRootService, cond.Value.Str)
		case traceql.IntrinsicEventName:
			return c.has(r, block.DictEventName, cond.Value.Str)
		}
	case traceql.Attribute:
		inResources := func() bool {
			for _, g := range res {
				v, ok := findAttr(g.attrs, f.Name)
				if ok && (!eqString || compare(traceql.OpEq, v, value{k: kString, s: cond.Value.Str}, nil)) {
					return true
				}
			}
			return false
		}
		inSpans := func() (bool, error) {
			ok, err := c.has(r, block.DictSpanAttrKey, f.Name)
			if err != nil || !ok || !eqString {
				return ok, err
			}
			// A string value inside an array is stored raw, not in the str column.
			if d, err := c.distinct(r, block.DictSpanAttrStr); err != nil || !d.complete {
				return true, err
			}
			if ok, err := c.has(r, block.DictSpanAttrStr, cond.Value.Str); err != nil || ok {
				return true, err
			}
			return r.HasRawSpanAttrs(), nil
		}
		switch f.Scope {
		case traceql.ScopeResource:
			return inResources(), nil
		case traceql.ScopeSpan:
			return inSpans()
		case traceql.ScopeNone:
			if inResources() {
				return true, nil
			}
			return inSpans()
		case traceql.ScopeEvent:
			return c.has(r, block.DictEventAttrKey, f.Name)
		case traceql.ScopeLink:
			return c.has(r, block.DictLinkAttrKey, f.Name)
		}
	}
	return true, nil
}
