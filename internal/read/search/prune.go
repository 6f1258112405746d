package search

import (
	"context"
	"math"
	"slices"
	"sync"

	"github.com/ariadne-tracing/ariadne/internal/read/traceql"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
)

// pruneCache remembers the distinct values of a block's dictionary columns, read from their
// dictionary pages once per block: the statistics that rule a block out without reading spans.
type pruneCache struct {
	mu   sync.Mutex
	m    map[*block.Reader]map[block.DictColumn]distinct
	vals map[*block.Reader]blockValues
	// indexed are value sets taken from blocks' index files, converted on first use per key.
	indexed map[*block.Reader]blockValues
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
	for r := range c.vals {
		if !slices.Contains(live, r) {
			delete(c.vals, r)
		}
	}
	for r := range c.indexed {
		if !slices.Contains(live, r) {
			delete(c.indexed, r)
		}
	}
}

// keyValues returns a block's distinct values of one span attribute key (nil when no span of
// it has the key): from the block's index file when it lists them, which costs nothing after
// a restart, else from one pass over the attribute columns (blocks of format 2, and keys with
// array values, whose elements the index does not list).
func (c *pruneCache) keyValues(ctx context.Context, r *block.Reader, key string) (*keyValueSet, error) {
	idx, err := r.Index(ctx)
	if err == nil && idx != nil {
		av := idx.Values[key]
		if av == nil {
			return nil, nil
		}
		if !av.Raw {
			c.mu.Lock()
			defer c.mu.Unlock()
			if kv, ok := c.indexed[r][key]; ok {
				return kv, nil
			}
			kv := &keyValueSet{vals: make(map[string]bool, len(av.Values)), complete: av.Complete}
			for _, v := range av.Values {
				kv.vals[v] = true
			}
			if c.indexed == nil {
				c.indexed = map[*block.Reader]blockValues{}
			}
			if c.indexed[r] == nil {
				c.indexed[r] = blockValues{}
			}
			c.indexed[r][key] = kv
			return kv, nil
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	bv, err := c.values(ctx, r)
	if err != nil {
		return nil, err
	}
	return bv[key], nil
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
func (c *pruneCache) mayMatch(ctx context.Context, r *block.Reader, res []*resource, required []traceql.Condition) (bool, error) {
	for _, cond := range required {
		ok, err := c.mayHold(ctx, r, res, cond)
		if err != nil || !ok {
			return ok, err
		}
	}
	return true, nil
}

func (c *pruneCache) mayHold(ctx context.Context, r *block.Reader, res []*resource, cond traceql.Condition) (bool, error) {
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
			if err != nil || !ok {
				return ok, err
			}
			if cond.Op == traceql.OpEq {
				if keys := eqValueKeys(cond.Value); keys != nil {
					kv, err := c.keyValues(ctx, r, f.Name)
					if err != nil {
						return true, err
					}
					if kv != nil && kv.complete {
						return slices.ContainsFunc(keys, func(k string) bool { return kv.vals[k] }), nil
					}
				}
			}
			if !eqString {
				return true, nil
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

// blockValues is a block's distinct span attribute values per key, keyed as the head keys them
// (head.IntKey and friends), built from one pass over the attribute columns the first time a
// search or tag lookup needs it; blocks are immutable, so it stays good while the reader lives.
type blockValues map[string]*keyValueSet

type keyValueSet struct {
	vals     map[string]bool
	complete bool // false past maxBlockValues
}

// maxBlockValues caps the values kept per key and block, as the head caps its own.
const maxBlockValues = 1000

func (c *pruneCache) values(ctx context.Context, r *block.Reader) (blockValues, error) {
	c.mu.Lock()
	bv, ok := c.vals[r]
	c.mu.Unlock()
	if ok {
		return bv, nil
	}
	bv = blockValues{}
	err := r.Scan(ctx, block.ScanOptions{Columns: block.ScanColumns{AllSpanAttrs: true}, NoCacheFill: true}, func(b *block.ScanBatch) bool {
		a := &b.Attrs
		for i := range a.Owner {
			kv := bv[a.Key[i]]
			if kv == nil {
				kv = &keyValueSet{vals: map[string]bool{}, complete: true}
				bv[a.Key[i]] = kv
			}
			if !kv.complete {
				continue
			}
			for _, vk := range valueKeys(rowValue(a.Type[i], a.Str[i], a.Int[i], a.Double[i], a.Bool[i], a.Raw[i])) {
				if len(kv.vals) >= maxBlockValues {
					kv.complete = false
					kv.vals = nil
					break
				}
				kv.vals[vk] = true
			}
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.vals == nil {
		c.vals = map[*block.Reader]blockValues{}
	}
	c.vals[r] = bv
	c.mu.Unlock()
	return bv, nil
}

// valueKeys are the head value keys of v: one for a scalar, one per scalar element of an array.
func valueKeys(v value) []string {
	switch v.k {
	case kString:
		return []string{head.StringKey(v.s)}
	case kInt:
		return []string{head.IntKey(v.i)}
	case kFloat:
		return []string{head.DoubleKey(v.f)}
	case kBool:
		return []string{head.BoolKey(v.b)}
	case kArray:
		var out []string
		for _, e := range v.arr {
			if e.k != kArray {
				out = append(out, valueKeys(e)...)
			}
		}
		return out
	}
	return nil
}

// eqValueKeys are the value keys an attribute equal to v may have: an int literal equals a
// double of the same value and the reverse; -0 equals 0. nil when equality is too loose to list
// them (floats past 2^53, where many ints share one double) or v is not a scalar literal.
func eqValueKeys(v traceql.Static) []string {
	switch v.Type {
	case traceql.TypeString:
		return []string{head.StringKey(v.Str)}
	case traceql.TypeInt:
		return []string{head.IntKey(v.Int), head.DoubleKey(float64(v.Int)), head.DoubleKey(-float64(v.Int))}
	case traceql.TypeFloat:
		if math.IsNaN(v.Float) || math.Abs(v.Float) >= 1<<53 {
			return nil
		}
		keys := []string{head.DoubleKey(v.Float), head.DoubleKey(-v.Float)} // -v: only to catch -0
		if v.Float == math.Trunc(v.Float) {
			keys = append(keys, head.IntKey(int64(v.Float)))
		}
		return keys
	case traceql.TypeBool:
		return []string{head.BoolKey(v.Bool)}
	}
	return nil
}
