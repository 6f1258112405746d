package lease_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/lease"
	"github.com/ariadne-tracing/ariadne/internal/storage/s3store"
	"github.com/ariadne-tracing/ariadne/internal/testkit/miniotest"
)

func bucket(t *testing.T) *s3store.Store {
	t.Helper()
	srv := miniotest.Start(t)
	s, err := s3store.New(s3store.Config{Endpoint: srv.Endpoint, Bucket: "lease", Insecure: true,
		AccessKey: miniotest.AccessKey, SecretKey: miniotest.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureBucket(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	return s
}

// Many contenders start at once: exactly one holds the lease, and renewing keeps it.
func TestOneWinner(t *testing.T) {
	ctx := context.Background()
	st := bucket(t)
	const n = 8
	leases := make([]*lease.Lease, n)
	for i := range leases {
		leases[i] = lease.New(st, "tenant/compactor.lease", string(rune('a'+i)), time.Hour)
	}
	var winners atomic.Int32
	var wg sync.WaitGroup
	for _, l := range leases {
		wg.Go(func() {
			ok, err := l.Acquire(ctx)
			if err != nil {
				t.Error(err)
			}
			if ok {
				winners.Add(1)
			}
		})
	}
	wg.Wait()
	if w := winners.Load(); w != 1 {
		t.Fatalf("%d contenders hold the lease, want exactly 1", w)
	}
	for round := 0; round < 3; round++ {
		held := 0
		for _, l := range leases {
			ok, err := l.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ok != l.Held() {
				t.Fatalf("Acquire said %v, Held %v", ok, l.Held())
			}
			if ok {
				held++
			}
		}
		if held != 1 {
			t.Fatalf("round %d: %d holders", round, held)
		}
	}
}

// A holder that stops renewing loses the lease to a contender that has watched it unchanged
// for the TTL; the old holder, coming back, finds it gone.
func TestExpiryAndTakeover(t *testing.T) {
	ctx := context.Background()
	st := bucket(t)
	const ttl = 400 * time.Millisecond
	a := lease.New(st, "l", "a", ttl)
	b := lease.New(st, "l", "b", ttl)
	if ok, err := a.Acquire(ctx); !ok || err != nil {
		t.Fatalf("a: %v %v", ok, err)
	}
	// While a renews, b never gets it, however long it watches.
	deadline := time.Now().Add(3 * ttl)
	var lastRenew time.Time
	for time.Now().Before(deadline) {
		lastRenew = time.Now()
		if ok, _ := a.Acquire(ctx); !ok {
			t.Fatal("a lost the lease while renewing")
		}
		if ok, err := b.Acquire(ctx); ok || err != nil {
			t.Fatalf("b took a renewed lease: %v %v", ok, err)
		}
		time.Sleep(ttl / 4)
	}
	// a stops renewing. b takes over only after watching the same version for the TTL.
	first := time.Now()
	var took time.Time
	for time.Since(first) < 20*ttl {
		ok, err := b.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			took = time.Now()
			break
		}
		time.Sleep(ttl / 8)
	}
	if took.IsZero() {
		t.Fatal("b never took over an abandoned lease")
	}
	if took.Sub(lastRenew) < ttl {
		t.Fatalf("b took over %v after a's last renewal, before the TTL of %v", took.Sub(lastRenew), ttl)
	}
	if a.Held() {
		t.Fatal("a still believes it holds the lease past its TTL")
	}
	if ok, err := a.Acquire(ctx); ok || err != nil {
		t.Fatalf("a renewed a lease b had taken over: %v %v", ok, err)
	}
	if ok, _ := b.Acquire(ctx); !ok {
		t.Fatal("b lost the lease it took over")
	}
}
