// Package blockship uploads an ingest node's blocks to the bucket. The store keeps writing
// blocks to local disk as it always does, so a slow or unreachable bucket never holds up a
// flush or an acknowledgement: built blocks wait in a local queue (bounded by a byte budget,
// past which ingest refuses with retryable errors), are uploaded oldest first with backoff on
// failure, and leave the node only a while after their upload, once query nodes have had time
// to find them in the bucket.
package blockship

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
)

// Source is the store whose blocks are shipped.
type Source interface {
	Blocks() []*block.Reader
	// Forget drops a block from the store and deletes its local files.
	Forget(id string) error
}

// Options configure a Shipper. Zero durations take the defaults.
type Options struct {
	Source Source
	Local  objstore.Store // where the source's blocks are
	Bucket objstore.Store // the tenant's view of the bucket
	// StateDir records which blocks are uploaded, so a restart neither uploads them again
	// nor forgets the hold.
	StateDir string
	// Hold is how long an uploaded block stays on the node (default 1m).
	Hold time.Duration
	// QueueBytes is the budget of blocks waiting for upload (default 1 GiB).
	QueueBytes int64
	Interval   time.Duration // how often to look for new blocks (default 1s)
	MaxBackoff time.Duration // longest wait between failed attempts (default 10s)
	// Uploaded, when set, is told of each block once it is whole in the bucket: a node whose
	// replicated ingest log is its WAL acknowledges the log only then.
	Uploaded func(id string)
	Logger   *slog.Logger
}

// Stats count the shipper's work.
type Stats struct {
	Uploaded      int64 // blocks
	UploadedBytes int64
	Failures      int64
	Forgotten     int64
	QueuedBlocks  int
	QueuedBytes   int64
	LastError     string
}

// Shipper moves blocks from the local store to the bucket.
type Shipper struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex // one round at a time
	shipped   map[string]time.Time
	backoff   time.Duration
	nextTry   time.Time
	queued    atomic.Int64
	queuedN   atomic.Int64
	uploaded  atomic.Int64
	upBytes   atomic.Int64
	failures  atomic.Int64
	forgotten atomic.Int64
	lastErr   atomic.Value // string

	stop, stopped chan struct{}
	started       bool
}

// New loads the upload state.
func New(opts Options) (*Shipper, error) {
	if opts.Hold <= 0 {
		opts.Hold = time.Minute
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = 1 << 30
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("blockship: %w", err)
	}
	s := &Shipper{opts: opts, log: opts.Logger, shipped: map[string]time.Time{}, stop: make(chan struct{}), stopped: make(chan struct{})}
	ents, err := os.ReadDir(opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("blockship: %w", err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(opts.StateDir, e.Name()))
		if err != nil {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
		if err != nil {
			continue // a torn marker: the block is uploaded again, which is harmless
		}
		s.shipped[e.Name()] = at
	}
	s.lastErr.Store("")
	s.updateQueue(opts.Source.Blocks())
	return s, nil
}

// Start ships in the background until Close.
func (s *Shipper) Start() {
	s.started = true
	go func() {
		defer close(s.stopped)
		t := time.NewTicker(s.opts.Interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.Round(context.Background(), true)
			}
		}
	}()
}

// Stop ends the background loop, then tries once more to upload what is queued (the store's
// last block, written as it closed), within ctx. What fails stays queued for the next start.
func (s *Shipper) Stop(ctx context.Context) error {
	close(s.stop)
	if s.started {
		<-s.stopped
	}
	s.mu.Lock()
	s.nextTry = time.Time{}
	s.mu.Unlock()
	return s.Round(ctx, false)
}

// Refusal returns why ingest must refuse now, or "" when the queue is within its budget.
func (s *Shipper) Refusal() string {
	if q := s.queued.Load(); q > s.opts.QueueBytes {
		return fmt.Sprintf("%d MiB of blocks waiting for the object store (budget %d MiB): %s", q>>20, s.opts.QueueBytes>>20, s.lastErr.Load())
	}
	return ""
}

// Stats reports the counters.
func (s *Shipper) Stats() Stats {
	return Stats{Uploaded: s.uploaded.Load(), UploadedBytes: s.upBytes.Load(), Failures: s.failures.Load(),
		Forgotten: s.forgotten.Load(), QueuedBlocks: int(s.queuedN.Load()), QueuedBytes: s.queued.Load(),
		LastError: s.lastErr.Load().(string)}
}

func (s *Shipper) updateQueue(blocks []*block.Reader) {
	var n, bytes int64
	for _, r := range blocks {
		if _, ok := s.shipped[r.Meta().ID]; !ok {
			n++
			bytes += r.Meta().Bytes + 1 // +1: an empty block still waits
		}
	}
	s.queued.Store(bytes)
	s.queuedN.Store(n)
}

// Round uploads the queued blocks, oldest first, stopping at the first failure, and (when
// forget is set) drops uploaded blocks whose hold has passed.
func (s *Shipper) Round(ctx context.Context, forget bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	blocks := s.opts.Source.Blocks()
	defer func() { s.updateQueue(s.opts.Source.Blocks()) }()
	now := time.Now()
	var err error
	if now.After(s.nextTry) || now.Equal(s.nextTry) {
		for _, r := range blocks {
			m := r.Meta()
			if _, ok := s.shipped[m.ID]; ok {
				continue
			}
			if err = s.upload(ctx, m); err != nil {
				s.failures.Add(1)
				s.lastErr.Store(err.Error())
				s.backoff = min(max(2*s.backoff, time.Second), s.opts.MaxBackoff)
				s.nextTry = time.Now().Add(s.backoff)
				if s.backoff == time.Second {
					s.log.Warn("block upload failed; blocks stay queued on local disk, retried with backoff", "id", m.ID, "err", err)
				}
				break
			}
			at := time.Now()
			if werr := os.WriteFile(filepath.Join(s.opts.StateDir, m.ID), []byte(at.Format(time.RFC3339Nano)), 0o644); werr != nil {
				s.log.Warn("cannot record an upload; the block will be uploaded again", "id", m.ID, "err", werr)
			}
			s.shipped[m.ID] = at
			if s.opts.Uploaded != nil {
				s.opts.Uploaded(m.ID)
			}
			s.uploaded.Add(1)
			s.upBytes.Add(m.Bytes)
			s.updateQueue(blocks)
		}
		if err == nil {
			if s.backoff > 0 {
				s.log.Info("block uploads work again")
			}
			s.backoff = 0
			s.lastErr.Store("")
		}
	}
	if !forget {
		return err
	}
	present := map[string]bool{}
	for _, r := range blocks {
		present[r.Meta().ID] = true
	}
	for id, at := range s.shipped {
		if !present[id] {
			// Gone from the store already (retention, or forgotten before a restart).
			delete(s.shipped, id)
			os.Remove(filepath.Join(s.opts.StateDir, id))
			continue
		}
		if time.Since(at) < s.opts.Hold {
			continue
		}
		if ferr := s.opts.Source.Forget(id); ferr != nil {
			err = errors.Join(err, ferr)
			continue
		}
		delete(s.shipped, id)
		os.Remove(filepath.Join(s.opts.StateDir, id))
		s.forgotten.Add(1)
	}
	return err
}

// upload copies the block's files, meta.json last: the bucket shows the block only once every
// file is there, and an upload cut short is an incomplete folder that readers skip and the
// next attempt overwrites.
func (s *Shipper) upload(ctx context.Context, m block.Meta) error {
	dir := block.Prefix + m.ID + "/"
	names := make([]string, 0, len(m.Files)+1)
	for name := range m.Files {
		names = append(names, name)
	}
	sort.Strings(names)
	names = slices.DeleteFunc(names, func(n string) bool { return n == "meta.json" })
	names = append(names, "meta.json")
	for _, name := range names {
		if err := s.copy(ctx, dir+name); err != nil {
			return err
		}
	}
	return nil
}

func (s *Shipper) copy(ctx context.Context, name string) error {
	rc, err := s.opts.Local.Get(ctx, name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, objstore.ErrNotFound) {
			return fmt.Errorf("blockship: %s vanished locally: %w", name, err)
		}
		return fmt.Errorf("blockship: read %s: %w", name, err)
	}
	defer rc.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := s.opts.Bucket.Put(ctx, name, rc); err != nil {
		return fmt.Errorf("blockship: upload %s: %w", name, err)
	}
	return nil
}
