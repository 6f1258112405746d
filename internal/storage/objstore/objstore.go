// Package objstore is the small slice of an object store that blocks need. Blocks are written
// once and never modified, so the interface has no append or rename: an object either exists
// whole or not at all, which is what lets a local directory and S3 share one contract.
package objstore

import (
	"context"
	"errors"
	"io"
)

// ErrNotFound is wrapped by Get and ReaderAt when the object does not exist.
var ErrNotFound = errors.New("object not found")

// ReaderAtCloser is random access to one object, for formats such as Parquet whose readers
// start at the footer and then jump to the pages they need.
type ReaderAtCloser interface {
	io.ReaderAt
	io.Closer
}

// Store holds immutable objects addressed by '/'-separated names.
type Store interface {
	// Put stores the object atomically: concurrent readers see either the previous object or
	// the complete new one, never a prefix.
	Put(ctx context.Context, name string, r io.Reader) error
	// Get opens the object for sequential reading; errors.Is(err, ErrNotFound) when missing.
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	// ReaderAt opens the object for random access and returns its size.
	ReaderAt(ctx context.Context, name string) (ReaderAtCloser, int64, error)
	// List returns the names of the objects under prefix, sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	// Delete removes the object; a missing object is not an error.
	Delete(ctx context.Context, name string) error
}
