package servicegraph

import (
	"sync"
	"sync/atomic"
)

// pendingKey is a trace ID followed by the span ID that joins the two halves of a request: the
// client span's own ID, the server span's parent ID.
type pendingKey [24]byte

// half is what one side of a request contributes to its edge.
type half struct {
	service   string
	nanos     uint64
	failed    bool
	messaging bool
	// peer names the virtual node a client half turns into if no server half comes.
	peer string
}

type entry struct {
	key            pendingKey
	expires        int64
	client, server half
	hasClient      bool
	hasServer      bool
	// prev and next link the entries in arrival order, which is also expiry order since every
	// entry waits the same time; next doubles as the free-list link.
	prev, next int32
}

const none = -1

// pendingShard keeps unpaired halves. Entries live in a slab indexed by int32 so that once the
// slab has grown to its working size, storing a half allocates nothing.
type pendingShard struct {
	mu         sync.Mutex
	index      map[pendingKey]int32
	slab       []entry
	free       int32
	head, tail int32
}

func (s *pendingShard) init() {
	s.index = make(map[pendingKey]int32)
	s.free, s.head, s.tail = none, none, none
}

// store is the bounded set of halves waiting for their other half.
type store struct {
	shards   [16]pendingShard
	size     atomic.Int64
	maxItems int64
}

func newStore(maxItems int) *store {
	st := &store{maxItems: int64(maxItems)}
	for i := range st.shards {
		st.shards[i].init()
	}
	return st
}

func (st *store) shard(k *pendingKey) *pendingShard {
	// The span ID bytes are the most random part of the key.
	return &st.shards[k[16]%byte(len(st.shards))]
}

// upsertResult says what became of a half passed to upsert.
type upsertResult int

const (
	stored upsertResult = iota
	paired
	dropped
)

// upsert pairs h with the other half waiting under k, or stores it until expires. When paired,
// the completed request is written to out and removed from the store.
func (st *store) upsert(k *pendingKey, isClient bool, h half, expires int64, out *entry) upsertResult {
	s := st.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.index[*k]; ok {
		e := &s.slab[i]
		if isClient && e.hasServer || !isClient && e.hasClient {
			if isClient {
				e.client, e.hasClient = h, true
			} else {
				e.server, e.hasServer = h, true
			}
			*out = *e
			s.remove(i)
			st.size.Add(-1)
			return paired
		}
		// The same side twice (a retried export, say): the later copy replaces the earlier.
		if isClient {
			e.client = h
		} else {
			e.server = h
		}
		return stored
	}
	for {
		n := st.size.Load()
		if n >= st.maxItems {
			return dropped
		}
		if st.size.CompareAndSwap(n, n+1) {
			break
		}
	}
	i := s.alloc()
	e := &s.slab[i]
	*e = entry{key: *k, expires: expires, prev: s.tail, next: none}
	if isClient {
		e.client, e.hasClient = h, true
	} else {
		e.server, e.hasServer = h, true
	}
	if s.tail != none {
		s.slab[s.tail].next = i
	} else {
		s.head = i
	}
	s.tail = i
	s.index[*k] = i
	return stored
}

func (s *pendingShard) alloc() int32 {
	if s.free != none {
		i := s.free
		s.free = s.slab[i].next
		return i
	}
	s.slab = append(s.slab, entry{})
	return int32(len(s.slab) - 1)
}

// remove unlinks entry i and puts it on the free list.
func (s *pendingShard) remove(i int32) {
	e := &s.slab[i]
	if e.prev != none {
		s.slab[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next != none {
		s.slab[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
	delete(s.index, e.key)
	// Dropping the strings lets interned names that fell out of use be collected.
	*e = entry{next: s.free}
	s.free = i
}

// expire removes every entry due at or before now and passes each to fn, outside the lock.
func (st *store) expire(now int64, fn func(*entry)) {
	var batch []entry
	for i := range st.shards {
		s := &st.shards[i]
		batch = batch[:0]
		s.mu.Lock()
		for s.head != none && s.slab[s.head].expires <= now {
			batch = append(batch, s.slab[s.head])
			s.remove(s.head)
		}
		s.mu.Unlock()
		st.size.Add(-int64(len(batch)))
		for j := range batch {
			fn(&batch[j])
		}
	}
}
