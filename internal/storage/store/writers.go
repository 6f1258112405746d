package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// Blocks are built by up to Options.BlockWriters goroutines at once. The flush loop cuts traces,
// gathers them into batches of BlockMaxBytes and hands each full batch to a writer, then goes on
// cutting: one block's encoding (decode every span, encode the columns, compress) is ~0.2 s of
// CPU per 16 MiB, and with a single writer the flush loop also sat idle through each block's
// fsyncs, open and release. With two writers one block encodes while the previous one is made
// durable; past that, each writer's pipeline (block/pipeline.go) takes about two cores.
//
// Nothing about durability changes. A batch's traces stay in the head's flushing set, readable
// and holding their WAL segments, until their block is published and open; only then does the
// writer release them (and the next trim may delete the segments). A batch whose block fails
// goes back to the front of pending and is written again at the next flush, as before. Blocks
// finish in any order and are listed by ID, which sorts by the time their writing began.
//
// Memory: every batch in flight is span data the head already counts (ingest.max_head_bytes
// refuses past it), plus one writer's scratch (its Parquet pages, about a tenth of the batch).

// blockJob is one block's worth of cut, kept traces.
type blockJob struct {
	traces []*head.Trace
	ratios []float64
	bytes  int64
}

// writeScratch is a writer's reusable slabs: a slice per trace would be a heap object per
// trace for the collector to track.
type writeScratch struct {
	traces []block.Trace
	spans  []block.Span
}

// dispatchBlocks takes back batches whose block failed, hands every full batch of pending
// traces (with all, every pending trace; when the oldest has waited BlockMaxWait, the rest) to
// a writer, waiting for a free one, and with all waits for every writer and reports what failed.
// Called under flushMu.
func (s *Store) dispatchBlocks(all bool) error {
	s.failedMu.Lock()
	failed := s.failed
	s.failed, s.failedErr = nil, nil
	s.failedMu.Unlock()
	for i := len(failed) - 1; i >= 0; i-- {
		j := failed[i]
		s.pending = append(j.traces, s.pending...)
		s.ratios = append(j.ratios, s.ratios...)
		s.pendingBytes += j.bytes
		// Due now: it was due when it was first handed out.
		s.pendingSince = time.Time{}
	}
	for len(s.pending) > 0 && (all || s.pendingBytes >= s.opts.BlockMaxBytes || time.Since(s.pendingSince) >= s.opts.BlockMaxWait) {
		n, bytes := 0, int64(0)
		for n < len(s.pending) && bytes < s.opts.BlockMaxBytes {
			bytes += int64(s.pending[n].Bytes())
			n++
		}
		job := blockJob{traces: slices.Clone(s.pending[:n]), ratios: slices.Clone(s.ratios[:n]), bytes: bytes}
		rest := copy(s.pending, s.pending[n:])
		clear(s.pending[rest:])
		s.pending = s.pending[:rest]
		s.ratios = s.ratios[:copy(s.ratios, s.ratios[n:])]
		s.pendingBytes -= bytes
		s.writers <- struct{}{}
		s.writing.Add(1)
		go func() {
			defer s.writing.Done()
			defer func() { <-s.writers }()
			if err := s.writeBlock(job); err != nil {
				setErr(&s.stats.lastFlushError, err)
				s.log.Error("block write failed; its traces stay in the head and the WAL and are written again", "err", err)
				s.failedMu.Lock()
				s.failed = append(s.failed, job)
				s.failedErr = errors.Join(s.failedErr, err)
				s.failedMu.Unlock()
			}
		}()
	}
	if !all {
		return nil
	}
	s.writing.Wait()
	s.failedMu.Lock()
	defer s.failedMu.Unlock()
	return s.failedErr
}

// writeBlock builds, publishes and opens one block of job's traces, then releases them from the
// head. On error nothing is left behind and the traces stay in the head.
func (s *Store) writeBlock(job blockJob) error {
	sc, _ := s.scratch.Get().(*writeScratch)
	if sc == nil {
		sc = new(writeScratch)
	}
	total := 0
	for _, t := range job.traces {
		total += t.SpanCount
	}
	traces := slices.Grow(sc.traces[:0], len(job.traces))[:len(job.traces)]
	slab := slices.Grow(sc.spans[:0], total)
	for i, t := range job.traces {
		from := len(slab)
		t.Spans(func(g *otlpwire.Group, raw []byte) {
			slab = append(slab, block.Span{Group: g, Raw: raw})
		})
		traces[i] = block.Trace{ID: t.ID, Spans: slab[from:len(slab):len(slab)], SampleRatio: job.ratios[i], Truncated: t.Truncated, Split: t.Split, Start: t.Start}
	}
	spans := len(slab)
	defer func() {
		// Drop the references so released traces can be collected, keep the capacity.
		clear(traces)
		clear(slab)
		sc.traces, sc.spans = traces[:0], slab[:0]
		s.scratch.Put(sc)
	}()
	ctx := context.Background()
	start := time.Now()
	meta, err := block.Write(ctx, s.objs, traces, block.WriteOptions{})
	if err != nil {
		return fmt.Errorf("store: write block: %w", err)
	}
	r, err := s.openBlock(ctx, meta.ID)
	if err != nil {
		// Unopened, the block must not linger: a restart would load it beside the WAL's copy.
		derr := block.Delete(ctx, s.objs, meta.ID)
		return errors.Join(fmt.Errorf("store: open new block %s: %w", meta.ID, err), derr)
	}
	s.modifyBlocks(func(cur []*block.Reader) []*block.Reader {
		cur = append(cur, r)
		// Writers finish in any order; the list stays oldest first.
		slices.SortStableFunc(cur, func(a, b *block.Reader) int { return cmp.Compare(a.Meta().ID, b.Meta().ID) })
		return cur
	})
	if s.opts.BlockWritten != nil {
		minSeq := job.traces[0].FirstSeq()
		for _, t := range job.traces[1:] {
			minSeq = min(minSeq, t.FirstSeq())
		}
		// Before the release: at every moment a trace's log position is held by the head or
		// by a block the caller knows of, so the caller never acknowledges its log too early.
		s.opts.BlockWritten(meta.ID, minSeq)
	}
	// Only now, with the block readable, do the traces leave the head: a reader always finds
	// them in one place or the other.
	s.head.Release(job.traces)
	s.log.Debug("block written", "id", meta.ID, "traces", len(traces), "spans", spans, "took", time.Since(start))
	s.stats.blocksWritten.Add(1)
	s.stats.tracesFlushed.Add(int64(len(traces)))
	s.stats.spansFlushed.Add(int64(spans))
	return nil
}
