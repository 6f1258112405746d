package queryscheduler

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// enqueue starts an Acquire in the background and returns once it is waiting in the queue, so
// tests control the order queries arrive in without sleeping.
func enqueue(t *testing.T, s *Scheduler, ctx context.Context, tenant string, cost int64, granted chan<- string, name string) <-chan error {
	t.Helper()
	before := s.Stats().Queued
	errc := make(chan error, 1)
	go func() {
		release, err := s.Acquire(ctx, tenant, cost)
		if err != nil {
			errc <- err
			return
		}
		granted <- name
		errc <- nil
		_ = release // released by the test through holders
		holders.Store(name, release)
	}()
	waitFor(t, func() bool { return s.Stats().Queued > before })
	return errc
}

var holders sync.Map

func release(t *testing.T, name string) {
	t.Helper()
	var f any
	waitFor(t, func() bool { var ok bool; f, ok = holders.Load(name); return ok })
	holders.Delete(name)
	f.(func())()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestConcurrencyBound(t *testing.T) {
	s := New(Config{MaxConcurrent: 2})
	ctx := context.Background()
	r1, err := s.Acquire(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.Acquire(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	granted := make(chan string, 1)
	enqueue(t, s, ctx, "a", 0, granted, "third")
	select {
	case <-granted:
		t.Fatal("a third query ran while two held both slots")
	default:
	}
	if st := s.Stats(); st.Running != 2 || st.Queued != 1 {
		t.Fatalf("stats %+v, want 2 running and 1 queued", st)
	}
	r1()
	r1() // a second release must not free a second slot
	if got := <-granted; got != "third" {
		t.Fatalf("granted %s", got)
	}
	if st := s.Stats(); st.Running != 2 || st.Queued != 0 {
		t.Fatalf("stats %+v after hand-over, want 2 running", st)
	}
	r2()
	release(t, "third")
	if st := s.Stats(); st.Running != 0 {
		t.Fatalf("stats %+v after all released", st)
	}
}

func TestTenantsServedInTurn(t *testing.T) {
	s := New(Config{MaxConcurrent: 1})
	ctx := context.Background()
	hold, err := s.Acquire(ctx, "busy", 0)
	if err != nil {
		t.Fatal(err)
	}
	granted := make(chan string, 10)
	// Tenant a queues four searches before tenant b queues one: b must not wait behind all of a's.
	for _, n := range []string{"a1", "a2", "a3", "a4"} {
		enqueue(t, s, ctx, "a", 0, granted, n)
	}
	enqueue(t, s, ctx, "b", 0, granted, "b1")
	enqueue(t, s, ctx, "c", 0, granted, "c1")
	hold()
	var order []string
	for range 6 {
		n := <-granted
		order = append(order, n)
		release(t, n)
	}
	want := []string{"a1", "b1", "c1", "a2", "a3", "a4"}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("served %v, want %v", order, want)
		}
	}
}

func TestQueueFullIsRefused(t *testing.T) {
	s := New(Config{MaxConcurrent: 1, MaxQueuedPerTenant: 2})
	ctx := context.Background()
	hold, _ := s.Acquire(ctx, "a", 0)
	granted := make(chan string, 10)
	enqueue(t, s, ctx, "a", 0, granted, "q1")
	enqueue(t, s, ctx, "a", 0, granted, "q2")
	if _, err := s.Acquire(ctx, "a", 0); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third queued query of a: %v, want ErrQueueFull", err)
	}
	if s.Stats().Rejected != 1 {
		t.Fatalf("rejected %d", s.Stats().Rejected)
	}
	if ra := s.RetryAfter(); ra < time.Second || ra > time.Minute {
		t.Fatalf("Retry-After %v out of bounds", ra)
	}
	// Another tenant still queues: the cap is per tenant.
	enqueue(t, s, ctx, "b", 0, granted, "b1")
	hold()
	for range 3 {
		release(t, <-granted)
	}
}

func TestAbandonedQueryLeavesTheQueue(t *testing.T) {
	s := New(Config{MaxConcurrent: 1})
	hold, _ := s.Acquire(context.Background(), "a", 0)
	ctx, cancel := context.WithCancel(context.Background())
	granted := make(chan string, 2)
	errc := enqueue(t, s, ctx, "a", 0, granted, "gone")
	enqueue(t, s, context.Background(), "a", 0, granted, "next")
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned query: %v", err)
	}
	if st := s.Stats(); st.Queued != 1 {
		t.Fatalf("stats %+v: the abandoned query is still queued", st)
	}
	hold()
	if got := <-granted; got != "next" {
		t.Fatalf("granted %s", got)
	}
	release(t, "next")
}

func TestMemoryBudget(t *testing.T) {
	s := New(Config{MaxConcurrent: 4, MaxMemoryBytes: 100})
	ctx := context.Background()
	big, err := s.Acquire(ctx, "a", 60)
	if err != nil {
		t.Fatal(err)
	}
	granted := make(chan string, 2)
	enqueue(t, s, ctx, "b", 60, granted, "second")
	select {
	case <-granted:
		t.Fatal("a query past the memory budget started while slots were free")
	default:
	}
	big()
	if got := <-granted; got != "second" {
		t.Fatal(got)
	}
	release(t, "second")
	// A query larger than the whole budget runs, alone.
	huge, err := s.Acquire(ctx, "a", 500)
	if err != nil {
		t.Fatal(err)
	}
	enqueue(t, s, ctx, "b", 1, granted, "small")
	huge()
	if got := <-granted; got != "small" {
		t.Fatal(got)
	}
	release(t, "small")
	if st := s.Stats(); st.ReservedBytes != 0 || st.Running != 0 {
		t.Fatalf("stats %+v", st)
	}
}
