// Package queryscheduler admits queries: at most so many run at once, within a memory budget,
// and the ones waiting are served fairly between tenants, so one tenant's burst of searches can
// neither starve another tenant's queries nor take the CPU and memory ingest needs.
//
// A query asks for a slot with Acquire, naming its tenant and an estimate of the memory it will
// hold. When a slot and the memory are free it runs at once; otherwise it waits in its tenant's
// queue. Queues are served round-robin, one query per tenant per turn. A tenant whose queue is
// full is refused with ErrQueueFull (HTTP 429), with a Retry-After estimate, rather than left to
// pile up: queued requests hold memory and connections too.
package queryscheduler

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// ErrQueueFull is returned by Acquire when the tenant already has the most queries allowed
// waiting.
var ErrQueueFull = errors.New("too many queries queued for this tenant")

// Config bounds the scheduler.
type Config struct {
	// MaxConcurrent is how many queries run at once; at least 1.
	MaxConcurrent int
	// MaxMemoryBytes is the sum of the running queries' memory estimates past which further
	// queries wait; 0 is no budget. A query estimated above the whole budget runs only alone.
	MaxMemoryBytes int64
	// MaxQueuedPerTenant is how many queries a tenant may have waiting; past it Acquire fails
	// with ErrQueueFull. 0 means 100.
	MaxQueuedPerTenant int
	// CPUShare is the fraction of the time each running query works while ingest is busy
	// (see Yield); 0 means 0.25, 1 or more turns pacing off.
	CPUShare float64
}

// Stats is a snapshot of the scheduler, for metrics.
type Stats struct {
	Running       int
	Queued        int
	ReservedBytes int64
	Rejected      int64
	// Paused is the time queries have spent pausing for ingest, added up.
	Paused time.Duration
	// Canceled and TimedOut count admitted queries that stopped before their answer: their
	// client went away, or their timeout passed (see NoteStopped).
	Canceled, TimedOut int64
}

// Scheduler is safe for concurrent use.
type Scheduler struct {
	cfg Config

	mu       sync.Mutex
	running  int
	reserved int64
	queues   map[string]*[]*waiter
	order    []string // tenants with waiting queries, in round-robin order
	next     int      // index in order of the tenant served next
	queued   int
	rejected int64
	// avgRun is a moving average of how long queries run, for Retry-After.
	avgRun time.Duration

	ingestAt atomic.Int64 // nanotime of the last NoteIngest
	paused   atomic.Int64 // nanoseconds queries spent in Yield's pauses
	canceled atomic.Int64
	timedOut atomic.Int64
}

type waiter struct {
	cost    int64
	granted chan struct{}
	done    bool // granted or abandoned; guarded by Scheduler.mu
}

// New returns a scheduler.
func New(cfg Config) *Scheduler {
	if cfg.MaxConcurrent < 1 {
		cfg.MaxConcurrent = 1
	}
	if cfg.MaxQueuedPerTenant <= 0 {
		cfg.MaxQueuedPerTenant = 100
	}
	if cfg.CPUShare <= 0 {
		cfg.CPUShare = 0.25
	}
	return &Scheduler{cfg: cfg, queues: map[string]*[]*waiter{}, avgRun: 100 * time.Millisecond}
}

// Acquire waits for a slot for a query of tenant estimated to hold cost bytes. It returns the
// function to call when the query is done, ErrQueueFull when the tenant's queue is full, or
// ctx's error when ctx ends first (the client went away, or the timeout passed) — a query
// abandoned while waiting leaves the queue at once.
func (s *Scheduler) Acquire(ctx context.Context, tenant string, cost int64) (release func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cost = max(cost, 0)
	s.mu.Lock()
	if s.queued == 0 && s.fits(cost) {
		s.take(cost)
		s.mu.Unlock()
		return s.releaser(cost), nil
	}
	q := s.queues[tenant]
	if q == nil {
		q = new([]*waiter)
		s.queues[tenant] = q
	}
	if len(*q) >= s.cfg.MaxQueuedPerTenant {
		s.rejected++
		s.mu.Unlock()
		return nil, ErrQueueFull
	}
	w := &waiter{cost: cost, granted: make(chan struct{})}
	if len(*q) == 0 {
		s.order = append(s.order, tenant)
	}
	*q = append(*q, w)
	s.queued++
	// A slot may be free while others wait for memory: let the queue order decide.
	s.dispatch()
	s.mu.Unlock()

	select {
	case <-w.granted:
		return s.releaser(cost), nil
	case <-ctx.Done():
		s.mu.Lock()
		if w.done { // granted just as ctx ended: hand the slot back
			s.mu.Unlock()
			s.releaser(cost)()
			return nil, ctx.Err()
		}
		w.done = true
		s.remove(tenant, w)
		s.dispatch() // the abandoned query may have been what blocked the queue
		s.mu.Unlock()
		return nil, ctx.Err()
	}
}

// fits reports whether a query of cost can start now. Call with mu held.
func (s *Scheduler) fits(cost int64) bool {
	if s.running >= s.cfg.MaxConcurrent {
		return false
	}
	if s.cfg.MaxMemoryBytes <= 0 || s.running == 0 {
		return true // a query larger than the budget still runs, alone
	}
	return s.reserved+cost <= s.cfg.MaxMemoryBytes
}

func (s *Scheduler) take(cost int64) {
	s.running++
	s.reserved += cost
}

func (s *Scheduler) releaser(cost int64) func() {
	start := time.Now()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.running--
			s.reserved -= cost
			s.avgRun = (s.avgRun*7 + time.Since(start)) / 8
			s.dispatch()
			s.mu.Unlock()
		})
	}
}

// dispatch starts waiting queries while they fit, one tenant at a time in turn. When the
// query at the head of the tenant whose turn it is does not fit, dispatch stops there rather
// than let smaller queries of other tenants overtake it forever. Call with mu held.
func (s *Scheduler) dispatch() {
	for len(s.order) > 0 {
		if s.next >= len(s.order) {
			s.next = 0
		}
		tenant := s.order[s.next]
		q := s.queues[tenant]
		w := (*q)[0]
		if !s.fits(w.cost) {
			return
		}
		s.take(w.cost)
		w.done = true
		close(w.granted)
		s.pop(tenant)
	}
}

// pop removes the head of tenant's queue, advancing the round-robin turn. Call with mu held.
func (s *Scheduler) pop(tenant string) {
	q := s.queues[tenant]
	*q = (*q)[1:]
	s.queued--
	if len(*q) > 0 {
		s.next++ // this tenant had its turn
		return
	}
	s.dropTenant(tenant)
}

// remove takes an abandoned waiter out of its tenant's queue. Call with mu held.
func (s *Scheduler) remove(tenant string, w *waiter) {
	q := s.queues[tenant]
	for i, x := range *q {
		if x == w {
			*q = append((*q)[:i], (*q)[i+1:]...)
			s.queued--
			break
		}
	}
	if len(*q) == 0 {
		s.dropTenant(tenant)
	}
}

// dropTenant removes a tenant with an empty queue from the round-robin order, keeping the turn
// on the tenant that followed it. Call with mu held.
func (s *Scheduler) dropTenant(tenant string) {
	delete(s.queues, tenant)
	for i, t := range s.order {
		if t == tenant {
			s.order = append(s.order[:i], s.order[i+1:]...)
			if i < s.next {
				s.next--
			}
			break
		}
	}
}

// RetryAfter estimates when a refused query could be admitted: the time the queries ahead of it
// would take at the recent pace, between one second and a minute.
func (s *Scheduler) RetryAfter() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.avgRun * time.Duration(s.queued+s.running) / time.Duration(s.cfg.MaxConcurrent)
	return min(max(d.Round(time.Second), time.Second), time.Minute)
}

// Stats returns the scheduler's current state.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Running: s.running, Queued: s.queued, ReservedBytes: s.reserved, Rejected: s.rejected,
		Paused: time.Duration(s.paused.Load()), Canceled: s.canceled.Load(), TimedOut: s.timedOut.Load()}
}

// NoteStopped records why an admitted query stopped early, from the error its reading returned:
// context.Canceled when its client went away, context.DeadlineExceeded when its timeout passed.
// Other errors are not counted. It shows that a query whose client is gone stops reading.
func (s *Scheduler) NoteStopped(err error) {
	switch {
	case errors.Is(err, context.Canceled):
		s.canceled.Add(1)
	case errors.Is(err, context.DeadlineExceeded):
		s.timedOut.Add(1)
	}
}
