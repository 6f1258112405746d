// Package partial lets the parts of a query that had to skip data (a damaged block) say so, and
// the API tell the user: an answer is never silently incomplete. A request's context carries a
// Report; readers call Note, and the API reads the report before it writes the response.
package partial

import (
	"context"
	"slices"
	"sync"
)

// Report collects why one request's answer is partial. Safe for concurrent use.
type Report struct {
	mu      sync.Mutex
	reasons []string
}

type key struct{}

// New returns ctx carrying a fresh Report, and the report.
func New(ctx context.Context) (context.Context, *Report) {
	r := &Report{}
	return context.WithValue(ctx, key{}, r), r
}

// From returns the Report ctx carries, or nil.
func From(ctx context.Context) *Report {
	r, _ := ctx.Value(key{}).(*Report)
	return r
}

// Note records that the answer of ctx's request is missing something, and why. Without a
// Report in ctx it does nothing. A reason given twice is kept once.
func Note(ctx context.Context, reason string) {
	r := From(ctx)
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Contains(r.reasons, reason) {
		r.reasons = append(r.reasons, reason)
	}
}

// Partial reports whether anything was noted.
func (r *Report) Partial() bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reasons) > 0
}

// Reasons returns what was noted, in order.
func (r *Report) Reasons() []string {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reasons)
}
