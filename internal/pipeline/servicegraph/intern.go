package servicegraph

import (
	"strings"
	"sync"
)

// interner turns node names read from spans into shared strings, so that a span waiting in the
// store or counted on an edge costs no allocation once its names have been seen. It is bounded:
// names past the limit become OverflowValue, because span attributes are sender-controlled.
type interner struct {
	mu    sync.RWMutex
	names map[string]string
	max   int
}

func (in *interner) init(max int) {
	in.names = make(map[string]string)
	in.max = max
}

func (in *interner) get(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	in.mu.RLock()
	s, ok := in.names[string(b)]
	in.mu.RUnlock()
	if ok {
		return s
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if s, ok := in.names[string(b)]; ok {
		return s
	}
	if len(in.names) >= in.max {
		return OverflowValue
	}
	// Label values must be UTF-8 or the exposition fails.
	s = strings.ToValidUTF8(string(b), "\uFFFD")
	in.names[string(b)] = s
	return s
}
