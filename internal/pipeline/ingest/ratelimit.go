package ingest

import (
	"sync"
	"time"
)

// DefaultMaxTenants is how many tenants' rate-limit state a server keeps at once by default.
const DefaultMaxTenants = 10000

// rateLimiter is a token bucket per tenant, with bounded memory whatever tenants callers name.
//
// A bucket left alone long enough to refill is indistinguishable from a new one, so it is
// forgotten: expiry changes no decision. Past maxTenants buckets still refilling, a new tenant
// is refused outright rather than tracked, which is what keeps a sender who rotates tenant
// names from growing the map without bound.
type rateLimiter struct {
	limits     func(tenant string) (rate, burst float64)
	maxTenants int
	now        func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

func newRateLimiter(limits func(string) (float64, float64), maxTenants int, now func() time.Time) *rateLimiter {
	if maxTenants <= 0 {
		maxTenants = DefaultMaxTenants
	}
	if now == nil {
		now = time.Now
	}
	return &rateLimiter{limits: limits, maxTenants: maxTenants, now: now, buckets: map[string]*bucket{}, lastSweep: now()}
}

// sweepEvery is the least time between two sweeps forced by a full map.
const sweepEvery = 100 * time.Millisecond

// limitDecision is what take answers.
type limitDecision int

const (
	limitAllow          limitDecision = iota
	limitOverRate                     // the tenant is over its rate: retry after the wait
	limitTooManyTenants               // the server tracks as many tenants as it may
)

// take spends n spans of tenant's budget. rate <= 0 means unlimited, and such a tenant costs no
// memory at all.
func (l *rateLimiter) take(tenant string, n float64) (limitDecision, time.Duration) {
	rate, burst := l.limits(tenant)
	if rate <= 0 {
		return limitAllow, 0
	}
	if burst <= 0 {
		burst = rate
	}
	now := l.now()
	l.mu.Lock()
	b := l.buckets[tenant]
	if b == nil {
		// A full map is swept at most every sweepEvery: a flood of new names must not cost a
		// pass over every bucket per request.
		if len(l.buckets) >= l.maxTenants && now.Sub(l.lastSweep) >= sweepEvery {
			l.sweep(now)
		}
		if len(l.buckets) >= l.maxTenants {
			l.mu.Unlock()
			return limitTooManyTenants, time.Second
		}
		b = &bucket{tokens: burst, last: now}
		l.buckets[tenant] = b
	} else if now.Sub(l.lastSweep) > time.Minute {
		// Keep the map near its live size even when no new tenant forces a sweep.
		l.sweep(now)
	}
	l.mu.Unlock()
	wait, ok := b.take(n, rate, burst, now)
	if !ok {
		return limitOverRate, wait
	}
	return limitAllow, 0
}

// sweep forgets every bucket that has refilled by now. Called with l.mu held; it costs one pass
// over at most maxTenants buckets, and runs only when the map is full (at most every
// sweepEvery) or a minute has passed.
func (l *rateLimiter) sweep(now time.Time) {
	l.lastSweep = now
	for t, b := range l.buckets {
		rate, burst := l.limits(t)
		if b.full(now, rate, burst) {
			delete(l.buckets, t)
		}
	}
}

// tracked is how many tenants' buckets are held.
func (l *rateLimiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// bucket is a token bucket in spans. Rate and burst are passed in on each use, so a changed
// per-tenant override applies at once.
type bucket struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// take spends n tokens, or says how long until there would be enough.
func (b *bucket) take(n, rate, burst float64, now time.Time) (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens >= n || (b.tokens == burst && n > burst) {
		// A request larger than the whole burst passes when the bucket is full, or it could
		// never pass at all.
		b.tokens -= n
		return 0, true
	}
	return time.Duration((n - b.tokens) / rate * float64(time.Second)), false
}

// full reports whether the bucket has refilled completely by now.
func (b *bucket) full(now time.Time, rate, burst float64) bool {
	if rate <= 0 {
		return true
	}
	if burst <= 0 {
		burst = rate
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tokens+now.Sub(b.last).Seconds()*rate >= burst
}
