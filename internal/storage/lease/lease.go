// Package lease gives one process at a time a named lease in an object store, using the
// store's conditional writes (If-None-Match: * to create, If-Match: <etag> to renew or take
// over), which S3 and MinIO honour. Nothing else is needed: no consensus of our own.
//
// Expiry does not trust clocks across machines. A contender takes over a lease only after it
// has seen the same version of the lease object (same ETag) for longer than the TTL by its own
// clock; the holder, renewing every TTL/3, treats the lease as lost once TTL has passed since
// its last successful renewal by its own clock. A holder that stops (crash, partition) is
// replaced within about two TTLs, and two holders never overlap as long as clocks run at
// roughly the same rate.
package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
	"github.com/ariadne-tracing/ariadne/internal/storage/s3store"
)

// Conditional is what the lease needs from a store.
type Conditional interface {
	GetWithETag(ctx context.Context, name, ifNoneMatch string) (io.ReadCloser, string, error)
	PutIfAbsent(ctx context.Context, name string, data []byte) (string, error)
	PutIfMatch(ctx context.Context, name string, data []byte, etag string) (string, error)
}

// Lease is one named lease as seen by one holder. Safe for concurrent use.
type Lease struct {
	st     Conditional
	name   string
	holder string
	ttl    time.Duration
	now    func() time.Time

	mu        sync.Mutex
	etag      string    // of our own write, while we hold it
	renewed   time.Time // when our last write succeeded
	seenETag  string    // another holder's version we are watching
	seenSince time.Time
}

type content struct {
	Holder  string    `json:"holder"`
	Renewed time.Time `json:"renewed"` // for people reading the object; not used to decide
	TTL     string    `json:"ttl"`
}

// New returns the lease called name for holder (unique per process, e.g. host and start time).
func New(st Conditional, name, holder string, ttl time.Duration) *Lease {
	return &Lease{st: st, name: name, holder: holder, ttl: ttl, now: time.Now}
}

// Held reports whether the lease is ours now: taken or renewed less than TTL ago.
func (l *Lease) Held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.etag != "" && l.now().Sub(l.renewed) < l.ttl
}

// Holder is the name this lease writes.
func (l *Lease) Holder() string { return l.holder }

// Acquire takes, renews or takes over the lease and reports whether this holder has it. Call
// it at least every TTL/3 while working. An error means the store could not be asked; the lease
// then counts as held only until its TTL runs out.
func (l *Lease) Acquire(ctx context.Context) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	body, _ := json.Marshal(content{Holder: l.holder, Renewed: l.now().UTC(), TTL: l.ttl.String()})
	if l.etag != "" {
		start := l.now()
		etag, err := l.st.PutIfMatch(ctx, l.name, body, l.etag)
		if errors.Is(err, s3store.ErrPrecondition) {
			l.etag = "" // someone took it over: our TTL had passed in their eyes
			return false, nil
		}
		if err != nil {
			return l.etag != "" && l.now().Sub(l.renewed) < l.ttl, fmt.Errorf("lease %s: renew: %w", l.name, err)
		}
		// The lease runs from when the write was sent, not when it was answered.
		l.etag, l.renewed = etag, start
		return true, nil
	}
	rc, etag, err := l.st.GetWithETag(ctx, l.name, "")
	if errors.Is(err, objstore.ErrNotFound) {
		start := l.now()
		etag, err := l.st.PutIfAbsent(ctx, l.name, body)
		if errors.Is(err, s3store.ErrPrecondition) {
			return false, nil // another contender created it first
		}
		if err != nil {
			return false, fmt.Errorf("lease %s: create: %w", l.name, err)
		}
		l.etag, l.renewed = etag, start
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("lease %s: read: %w", l.name, err)
	}
	var c content
	err = json.NewDecoder(rc).Decode(&c)
	rc.Close()
	if err == nil && c.Holder == l.holder {
		// Our own write whose answer we lost: renew it.
		l.seenETag = ""
		start := l.now()
		if etag, err = l.st.PutIfMatch(ctx, l.name, body, etag); err != nil {
			if errors.Is(err, s3store.ErrPrecondition) {
				return false, nil
			}
			return false, fmt.Errorf("lease %s: renew: %w", l.name, err)
		}
		l.etag, l.renewed = etag, start
		return true, nil
	}
	if etag != l.seenETag {
		// A version we have not watched yet (or the holder renewed): start the clock.
		l.seenETag, l.seenSince = etag, l.now()
		return false, nil
	}
	if l.now().Sub(l.seenSince) <= l.ttl {
		return false, nil
	}
	// Unchanged for longer than the TTL: the holder is gone. Only one contender's If-Match
	// succeeds.
	start := l.now()
	newTag, err := l.st.PutIfMatch(ctx, l.name, body, etag)
	if errors.Is(err, s3store.ErrPrecondition) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lease %s: take over: %w", l.name, err)
	}
	l.seenETag = ""
	l.etag, l.renewed = newTag, start
	return true, nil
}

// Release stops holding the lease. A successor takes it over once it has watched the object
// unchanged for the TTL, as after a crash: expiry is judged by watching, never by a timestamp.
func (l *Lease) Release() {
	l.mu.Lock()
	l.etag = ""
	l.mu.Unlock()
}
