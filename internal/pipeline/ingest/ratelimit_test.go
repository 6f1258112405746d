package ingest

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func heapAlloc() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// A sender naming 100,000 different tenants cannot grow the limiter past its cap, and the cap
// gives way as soon as tenants go idle.
func TestRateLimiterBoundedUnder100kTenants(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	const maxTenants = 1000
	l := newRateLimiter(func(string) (float64, float64) { return 100, 100 }, maxTenants, clock.now)
	names := make([]string, 100_000)
	for i := range names {
		names[i] = fmt.Sprintf("tenant-%06d", i)
	}

	// All at once: the first maxTenants are tracked, the rest refused with the tenant-cap answer.
	before := heapAlloc()
	var allowed, refused int
	for _, n := range names {
		switch d, _ := l.take(n, 1); d {
		case limitAllow:
			allowed++
		case limitTooManyTenants:
			refused++
		default:
			t.Fatalf("%s: decision %d", n, d)
		}
	}
	grown := int64(heapAlloc()) - int64(before)
	if allowed != maxTenants || refused != len(names)-maxTenants || l.tracked() != maxTenants {
		t.Fatalf("allowed %d, refused %d, tracked %d; want %d, %d, %d", allowed, refused, l.tracked(), maxTenants, len(names)-maxTenants, maxTenants)
	}
	// A bucket and its map entry are about 150 bytes; 100,000 of them would be 15 MB.
	if grown > 2<<20 {
		t.Fatalf("heap grew %d bytes for %d tracked tenants", grown, l.tracked())
	}

	// Once the buckets have refilled they are forgotten, and new tenants are taken again.
	clock.t = clock.t.Add(2 * time.Second)
	if d, _ := l.take("newcomer", 1); d != limitAllow {
		t.Fatalf("a new tenant after the others went idle: decision %d", d)
	}
	if n := l.tracked(); n != 1 {
		t.Fatalf("%d tenants tracked after the sweep, want 1", n)
	}

	// Tenants that rotate slowly enough to go idle are never refused, and never pile up:
	// 100 new tenants a second against buckets that refill in a second.
	peak := 0
	for _, n := range names {
		clock.t = clock.t.Add(10 * time.Millisecond)
		if d, _ := l.take(n, 1); d != limitAllow {
			t.Fatalf("%s refused (%d) with %d tracked", n, d, l.tracked())
		}
		peak = max(peak, l.tracked())
	}
	if peak > maxTenants {
		t.Fatalf("peak %d tracked, over the cap %d", peak, maxTenants)
	}
}

// Forgetting a refilled bucket changes no decision; a tenant over its rate stays limited.
func TestRateLimiterPerTenant(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	rates := map[string]float64{"a": 100, "b": 1000}
	l := newRateLimiter(func(t string) (float64, float64) { return rates[t], rates[t] }, 10, clock.now)
	if d, _ := l.take("a", 100); d != limitAllow {
		t.Fatalf("a within its burst: %d", d)
	}
	d, wait := l.take("a", 50)
	if d != limitOverRate || wait != 500*time.Millisecond {
		t.Fatalf("a over its rate: %d, wait %v; want over rate, 500ms", d, wait)
	}
	if d, _ := l.take("b", 900); d != limitAllow {
		t.Fatalf("b has its own budget: %d", d)
	}
	if d, _ := l.take("unlimited", 1e9); d != limitAllow || l.tracked() != 2 {
		t.Fatalf("a tenant without a rate: %d, %d tracked (it should cost nothing)", d, l.tracked())
	}
	clock.t = clock.t.Add(time.Second)
	if d, _ := l.take("a", 100); d != limitAllow {
		t.Fatalf("a after refilling: %d", d)
	}
	// A changed override applies at once.
	rates["a"] = 10
	clock.t = clock.t.Add(10 * time.Second)
	if d, _ := l.take("a", 10); d != limitAllow {
		t.Fatalf("a at its new burst: %d", d)
	}
	if d, _ := l.take("a", 5); d != limitOverRate {
		t.Fatalf("a over its new rate: %d", d)
	}
}
