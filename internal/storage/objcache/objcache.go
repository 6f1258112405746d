// Package objcache puts a bounded on-disk cache in front of an object store whose requests are
// slow and billed (S3): blocks are immutable, so a byte range read once is valid for ever and
// the cache never has to check for changes.
//
// What a query reads from a block is small and repetitive: the Parquet footers and page indexes
// at the end of each file, the bloom filter, the trace-ID pages, and then the few pages holding
// a trace's rows. The cache keeps exactly those ranges, least recently used evicted first, up to
// a byte budget. Reads are ranged requests of the pages asked for (at least MinFetch bytes, so a
// Parquet reader reading a page in 16 KiB steps costs one request, not several), and Prefetch
// fetches the tails of many files in parallel, which turns opening a block into one wave of
// requests instead of a dozen round trips one after another.
//
// Only immutable objects belong behind the cache: the block index and lease objects are read
// from the backend directly.
package objcache

import (
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
)

// Backend is an object store with ranged reads.
type Backend interface {
	objstore.Store
	// ReadRange reads n bytes at off in one request.
	ReadRange(ctx context.Context, name string, off, n int64) ([]byte, error)
	// ReadTail reads the last n bytes (fewer if the object is smaller) and the object's size,
	// in one request.
	ReadTail(ctx context.Context, name string, n int64) ([]byte, int64, error)
}

// Options size the cache. Zero values take the defaults.
type Options struct {
	Dir      string // where cached ranges are kept; emptied on open
	MaxBytes int64  // budget on disk (default 512 MiB)
	// TailBytes is read from the end of a file when it is first opened: the Parquet footer and
	// page index are there (default 64 KiB).
	TailBytes int64
	// MinFetch is the smallest range fetched on a miss (default 64 KiB).
	MinFetch int64
}

// Stats count what the cache served.
type Stats struct {
	Hits, Misses        int64 // reads served from disk, reads that needed a request
	HitBytes, MissBytes int64 // bytes read by callers from each
	FetchedBytes        int64 // bytes fetched from the backend (read-ahead included)
	Entries             int
	Bytes               int64 // on disk now
	Evictions           int64
}

// Store is an objstore.Store whose reads go through the cache.
type Store struct {
	be   Backend
	opts Options

	mu      sync.Mutex
	lru     *list.List // of *entry, most recent first
	byName  map[string][]*entry
	sizes   map[string]int64
	used    int64
	nextSeq int64

	hits, misses, hitBytes, missBytes, fetched, evictions atomic.Int64
}

type entry struct {
	name   string
	off, n int64
	file   string
	elem   *list.Element
}

var _ objstore.Store = (*Store)(nil)

// New returns a caching view of be. The cache folder is emptied: its index lives in memory.
func New(be Backend, opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("objcache: no cache directory")
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 512 << 20
	}
	if opts.TailBytes <= 0 {
		opts.TailBytes = 64 << 10
	}
	if opts.MinFetch <= 0 {
		opts.MinFetch = 64 << 10
	}
	if err := os.RemoveAll(opts.Dir); err != nil {
		return nil, fmt.Errorf("objcache: clear %s: %w", opts.Dir, err)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("objcache: create %s: %w", opts.Dir, err)
	}
	return &Store{be: be, opts: opts, lru: list.New(), byName: map[string][]*entry{}, sizes: map[string]int64{}}, nil
}

// Stats returns the cache's counters.
func (c *Store) Stats() Stats {
	c.mu.Lock()
	n, used := c.lru.Len(), c.used
	c.mu.Unlock()
	return Stats{Hits: c.hits.Load(), Misses: c.misses.Load(), HitBytes: c.hitBytes.Load(), MissBytes: c.missBytes.Load(),
		FetchedBytes: c.fetched.Load(), Entries: n, Bytes: used, Evictions: c.evictions.Load()}
}

// lookup returns the cached bytes of [off, off+n) of name, or nil.
func (c *Store) lookup(name string, off, n int64) []byte {
	c.mu.Lock()
	var hit *entry
	for _, e := range c.byName[name] {
		if e.off <= off && off+n <= e.off+e.n {
			hit = e
			break
		}
	}
	if hit == nil {
		c.mu.Unlock()
		return nil
	}
	c.lru.MoveToFront(hit.elem)
	file := hit.file
	c.mu.Unlock()
	f, err := os.Open(file)
	if err != nil {
		return nil // evicted meanwhile: a miss
	}
	defer f.Close()
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, off-hit.off); err != nil {
		return nil
	}
	return buf
}

// insert stores data as [off, off+len) of name and evicts past the budget.
func (c *Store) insert(name string, off int64, data []byte) {
	n := int64(len(data))
	if n == 0 || n > c.opts.MaxBytes {
		return
	}
	c.mu.Lock()
	c.nextSeq++
	seq := c.nextSeq
	c.mu.Unlock()
	sum := sha256.Sum256([]byte(name))
	file := filepath.Join(c.opts.Dir, fmt.Sprintf("%s-%d", hex.EncodeToString(sum[:12]), seq))
	if err := os.WriteFile(file, data, 0o644); err != nil {
		return // a full or broken cache disk only costs requests
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &entry{name: name, off: off, n: n, file: file}
	e.elem = c.lru.PushFront(e)
	es := append(c.byName[name], e)
	// Larger ranges first, so a lookup finds the entry that covers most.
	sort.Slice(es, func(i, j int) bool { return es[i].n > es[j].n })
	c.byName[name] = es
	c.used += n
	for c.used > c.opts.MaxBytes {
		c.evict(c.lru.Back().Value.(*entry))
	}
}

// evict drops one entry; c.mu is held.
func (c *Store) evict(e *entry) {
	c.lru.Remove(e.elem)
	es := c.byName[e.name]
	for i, x := range es {
		if x == e {
			es = append(es[:i], es[i+1:]...)
			break
		}
	}
	if len(es) == 0 {
		delete(c.byName, e.name)
		delete(c.sizes, e.name)
	} else {
		c.byName[e.name] = es
	}
	c.used -= e.n
	c.evictions.Add(1)
	os.Remove(e.file)
}

// Put writes through to the backend.
func (c *Store) Put(ctx context.Context, name string, r io.Reader) error {
	return c.be.Put(ctx, name, r)
}

// List lists the backend.
func (c *Store) List(ctx context.Context, prefix string) ([]string, error) {
	return c.be.List(ctx, prefix)
}

// Delete deletes from the backend and forgets the object's cached ranges.
func (c *Store) Delete(ctx context.Context, name string) error {
	c.Forget(name)
	return c.be.Delete(ctx, name)
}

// Forget drops the cached ranges of an object (its block was deleted).
func (c *Store) Forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range append([]*entry(nil), c.byName[name]...) {
		c.evict(e)
		c.evictions.Add(-1)
	}
	delete(c.sizes, name)
}

// Get returns the whole object, cached whole: it is used for small objects (meta.json, the
// bloom filter) that are always read entire.
func (c *Store) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	c.mu.Lock()
	size, known := c.sizes[name]
	c.mu.Unlock()
	if known {
		if b := c.lookup(name, 0, size); b != nil {
			c.hits.Add(1)
			c.hitBytes.Add(size)
			return io.NopCloser(bytes.NewReader(b)), nil
		}
	}
	rc, err := c.be.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("objcache: get %q: %w", name, err)
	}
	c.misses.Add(1)
	c.missBytes.Add(int64(len(data)))
	c.fetched.Add(int64(len(data)))
	c.setSize(name, int64(len(data)))
	c.insert(name, 0, data)
	return io.NopCloser(bytes.NewReader(data)), nil
}

func (c *Store) setSize(name string, size int64) {
	c.mu.Lock()
	c.sizes[name] = size
	c.mu.Unlock()
}

// open learns the object's size, fetching its tail on first use.
func (c *Store) open(ctx context.Context, name string) (int64, error) {
	c.mu.Lock()
	size, known := c.sizes[name]
	c.mu.Unlock()
	if known {
		return size, nil
	}
	tail, size, err := c.be.ReadTail(ctx, name, c.opts.TailBytes)
	if err != nil {
		return 0, err
	}
	c.fetched.Add(int64(len(tail)))
	c.setSize(name, size)
	c.insert(name, size-int64(len(tail)), tail)
	return size, nil
}

// ReaderAt opens the object for ranged reads through the cache.
func (c *Store) ReaderAt(ctx context.Context, name string) (objstore.ReaderAtCloser, int64, error) {
	size, err := c.open(ctx, name)
	if err != nil {
		return nil, 0, err
	}
	return &reader{c: c, name: name, size: size}, size, nil
}

// Prefetch fetches, in parallel, what opening the given files will read: for each ranged file
// (name → size, known from the block's meta) its tail (footer, page index) and its first bytes
// (Parquet readers check the magic number at offset 0), or the whole file when it is small; and
// the whole of the objects to be read with Get. Opening a block afterwards is served from the
// cache. Errors are returned joined; what was fetched stays cached.
func (c *Store) Prefetch(ctx context.Context, ranged map[string]int64, wholes []string) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	fetch := func(name string, off, n int64) {
		data, err := c.be.ReadRange(ctx, name, off, n)
		if err != nil {
			fail(err)
			return
		}
		c.fetched.Add(int64(len(data)))
		c.insert(name, off, data)
	}
	for name, size := range ranged {
		c.setSize(name, size)
		if size <= c.opts.TailBytes+c.opts.MinFetch {
			wg.Go(func() { fetch(name, 0, size) })
			continue
		}
		wg.Go(func() { fetch(name, size-c.opts.TailBytes, c.opts.TailBytes) })
		wg.Go(func() { fetch(name, 0, c.opts.MinFetch) })
	}
	for _, name := range wholes {
		wg.Go(func() {
			rc, err := c.Get(ctx, name)
			if err != nil {
				fail(err)
				return
			}
			rc.Close()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

type reader struct {
	c    *Store
	name string
	size int64
}

// ReadAt has no context (io.ReaderAt); a minute bounds one request to a hung endpoint.
func (r *reader) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), r.size-off)
	c := r.c
	if b := c.lookup(r.name, off, n); b != nil {
		c.hits.Add(1)
		c.hitBytes.Add(n)
		copy(p, b)
	} else {
		fetch := min(max(n, c.opts.MinFetch), r.size-off)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		data, err := c.be.ReadRange(ctx, r.name, off, fetch)
		cancel()
		if err != nil {
			return 0, err
		}
		c.misses.Add(1)
		c.missBytes.Add(n)
		c.fetched.Add(int64(len(data)))
		c.insert(r.name, off, data)
		copy(p, data[:n])
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

func (r *reader) Close() error { return nil }
