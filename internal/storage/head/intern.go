package head

import (
	"bytes"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// interner keeps one copy of each resource+scope group. Every span of a service instance carries
// the same resource, so storing it once per trace would multiply the head's size.
type interner struct {
	mu sync.Mutex
	m  map[uint64][]*entry
	n  int
}

type entry struct {
	g        *otlpwire.Group
	lastUsed atomic.Int64
}

func (in *interner) init() { in.m = map[uint64][]*entry{} }

func groupHash(g *otlpwire.Group) uint64 {
	d := xxhash.New()
	for _, b := range [][]byte{g.Resource, g.ResourceSchemaURL, g.Scope, g.ScopeSchemaURL} {
		var l [4]byte
		l[0], l[1], l[2], l[3] = byte(len(b)), byte(len(b)>>8), byte(len(b)>>16), byte(len(b)>>24)
		d.Write(l[:])
		d.Write(b)
	}
	return d.Sum64()
}

func sameGroup(a, b *otlpwire.Group) bool {
	return bytes.Equal(a.Resource, b.Resource) && bytes.Equal(a.ResourceSchemaURL, b.ResourceSchemaURL) &&
		bytes.Equal(a.Scope, b.Scope) && bytes.Equal(a.ScopeSchemaURL, b.ScopeSchemaURL)
}

// intern returns the shared copy of g, making one if needed.
func (in *interner) intern(g *otlpwire.Group, now int64) *otlpwire.Group {
	h := groupHash(g)
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, e := range in.m[h] {
		if sameGroup(e.g, g) {
			e.lastUsed.Store(now)
			return e.g
		}
	}
	// One allocation for all four byte fields.
	buf := make([]byte, 0, len(g.Resource)+len(g.ResourceSchemaURL)+len(g.Scope)+len(g.ScopeSchemaURL))
	take := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		start := len(buf)
		buf = append(buf, b...)
		return buf[start:len(buf):len(buf)]
	}
	c := &otlpwire.Group{Resource: take(g.Resource), ResourceSchemaURL: take(g.ResourceSchemaURL),
		Scope: take(g.Scope), ScopeSchemaURL: take(g.ScopeSchemaURL)}
	if g.ServiceName != nil {
		c.ServiceName = append([]byte(nil), g.ServiceName...)
	}
	e := &entry{g: c}
	e.lastUsed.Store(now)
	in.m[h] = append(in.m[h], e)
	in.n++
	return c
}

// sweep forgets groups unused since before. Traces that still point at a forgotten group keep it
// alive; a later span with the same group just gets a new copy.
func (in *interner) sweep(before int64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for h, es := range in.m {
		kept := es[:0]
		for _, e := range es {
			if e.lastUsed.Load() >= before {
				kept = append(kept, e)
			}
		}
		in.n -= len(es) - len(kept)
		if len(kept) == 0 {
			delete(in.m, h)
		} else {
			in.m[h] = kept
		}
	}
}

func (in *interner) len() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.n
}
