package ingestlog

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// startConsumer consumes partition pt after stream sequence after (0: from the start).
func (b *Builder) startConsumer(pt *part, after uint64) {
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	b.mu.Lock()
	pt.cancel, pt.exited, pt.lag = cancel, exited, 0
	if after > pt.committed {
		pt.committed = after
	}
	b.mu.Unlock()
	go func() {
		defer close(exited)
		next := after + 1
		for ctx.Err() == nil {
			var err error
			next, err = b.consume(ctx, pt, next)
			if err != nil && ctx.Err() == nil {
				b.l.log.Warn("ingest log: consumer failed; starting again", "partition", pt.p, "at", next, "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}
	}()
}

func (b *Builder) stopConsumer(pt *part) {
	b.mu.Lock()
	cancel, exited := pt.cancel, pt.exited
	pt.cancel = nil
	b.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-exited
	b.l.m.lag.DeleteLabelValues(strconv.Itoa(pt.p))
}

// consume reads the partition from stream sequence from with an ordered consumer (no
// acknowledgements of its own: the committed offset is the acknowledgement), appending every
// message to the sink, until ctx ends or the consumer fails. It returns where to go on.
func (b *Builder) consume(ctx context.Context, pt *part, from uint64) (uint64, error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{fmt.Sprintf("%s.*.%d", b.l.cfg.Stream, pt.p)}}
	if from > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	cons, err := b.l.js.OrderedConsumer(ctx, b.l.cfg.Stream, cfg)
	if err != nil {
		return from, fmt.Errorf("ordered consumer: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return from, fmt.Errorf("messages: %w", err)
	}
	// The ordered consumer resets itself when its server goes away, but after a NATS server's
	// kill -9 some never delivered again, retrying inside the library without a word. So a
	// watchdog: when nothing was delivered for stallCheck, it asks the stream whether the
	// partition has messages after the last one consumed (or cannot say), and if so stops the
	// iterator, and the consumer is started anew where it stopped.
	var progress atomic.Int64 // Unix nanoseconds of the last delivery (or head wait)
	var next atomic.Uint64    // the stream sequence to consume next
	var stalled atomic.Value  // error: why the watchdog stopped the iterator
	progress.Store(time.Now().UnixNano())
	next.Store(from)
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		defer it.Stop()
		t := time.NewTicker(stallCheck / 2)
		defer t.Stop()
		// Each question costs the stream a consumer, so an idle partition is asked less and
		// less often (up to stallCheckMax apart); any delivery brings it back to stallCheck.
		wait, asked := stallCheck, int64(0)
		for {
			select {
			case <-ctx.Done():
				return
			case <-stopped:
				return
			case <-t.C:
			}
			last := progress.Load()
			if last != asked {
				wait = stallCheck // delivered since the last question
			}
			if time.Since(time.Unix(0, last)) < wait {
				continue
			}
			if err := b.stalled(ctx, pt.p, next.Load()); err != nil {
				stalled.Store(err)
				return
			}
			asked = time.Now().UnixNano()
			progress.Store(asked)
			wait = min(2*wait, stallCheckMax)
		}
	}()
	lag := b.l.m.lag.WithLabelValues(strconv.Itoa(pt.p))
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return from, nil
			}
			if why, ok := stalled.Load().(error); ok {
				return from, why
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return from, nil
			}
			return from, err
		}
		progress.Store(time.Now().UnixNano())
		meta, err := msg.Metadata()
		if err != nil {
			return from, fmt.Errorf("message metadata: %w", err)
		}
		seq := meta.Sequence.Stream
		for waited := 0; b.o.Sink.HeadBytes() > b.o.MaxHeadBytes; waited++ {
			// The head is full: wait for blocks to take traces out of it. The stream holds the
			// rest, replicated, so nothing waits in this node's memory.
			progress.Store(time.Now().UnixNano()) // waiting for room, not stalled
			if waited%20 == 0 {
				// Every second of the wait: the lag grows while nothing is consumed, and a
				// gauge frozen at its last value would hide exactly the backlog to watch.
				b.refreshLag(ctx, pt, cons, meta.Sequence.Consumer, lag)
			}
			select {
			case <-ctx.Done():
				return from, nil
			case <-time.After(50 * time.Millisecond):
			}
		}
		tenant := msg.Headers().Get(HeaderTenant)
		for {
			err := b.o.Sink.AppendLogged(tenant, seq, msg.Data())
			if err == nil {
				break
			}
			if !errors.Is(err, ErrRetry) {
				// Validated before it was published; a message that still fails (a build with
				// other rules) is skipped rather than blocking the partition forever.
				b.l.log.Error("ingest log: message skipped", "partition", pt.p, "seq", seq, "tenant", tenant, "err", err)
				break
			}
			// Not consumed, so not committed: the message waits in the stream, not here.
			b.l.log.Warn("ingest log: message waits", "partition", pt.p, "seq", seq, "tenant", tenant, "err", err)
			select {
			case <-ctx.Done():
				return from, nil
			case <-time.After(time.Second):
			}
		}
		b.mu.Lock()
		pt.consumed = append(pt.consumed, seq)
		pt.lag = meta.NumPending
		b.mu.Unlock()
		b.l.m.consumed.Inc()
		lag.Set(float64(meta.NumPending))
		from = seq + 1
		next.Store(from)
	}
}

// stallCheck is how long a consumer may deliver nothing before the server is asked why.
const stallCheck = 2 * time.Second

// stallCheckMax is the longest an idle partition goes without the question.
const stallCheckMax = 16 * time.Second

// stalled says why a consumer of partition p that delivered nothing for stallCheck must be
// replaced: the stream holds messages of p from sequence next on, or cannot say. nil: idle.
func (b *Builder) stalled(ctx context.Context, p int, next uint64) error {
	ictx, cancel := context.WithTimeout(ctx, stallCheck)
	defer cancel()
	n, err := b.l.pendingAfter(ictx, p, next-1)
	switch {
	case ctx.Err() != nil:
		return nil
	case err != nil:
		return fmt.Errorf("consumer delivers nothing and the stream cannot say why: %w", err)
	case n > 0:
		return fmt.Errorf("consumer delivers nothing with %d messages after it in the stream", n)
	}
	return nil
}

// refreshLag reads the partition's lag from the server while consumption waits: the messages
// it has not delivered yet, those delivered after the one in hand (read ahead into the
// client's buffer) and the one in hand. consumerSeq is the consumer sequence of the message in
// hand; after the ordered consumer has been recreated the count is low until the next message.
func (b *Builder) refreshLag(ctx context.Context, pt *part, cons jetstream.Consumer, consumerSeq uint64, g prometheus.Gauge) {
	ictx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	info, err := cons.Info(ictx)
	if err != nil {
		return // the next second tries again
	}
	n := info.NumPending + 1
	if info.Delivered.Consumer > consumerSeq {
		n += info.Delivered.Consumer - consumerSeq
	}
	b.mu.Lock()
	pt.lag = n
	b.mu.Unlock()
	g.Set(float64(n))
}

// commit writes, for each partition, the newest consumed sequence whose data is all durable:
// below the oldest log position still in the head and in blocks not yet in the bucket. Stream
// sequences grow across the whole stream, so one such bound serves every partition.
func (b *Builder) commit(ctx context.Context) {
	b.mu.Lock()
	counts := make([]int, len(b.parts))
	for i, pt := range b.parts {
		counts[i] = len(pt.consumed)
	}
	b.mu.Unlock()
	// The head first, then the blocks: the store reports a block before its traces leave the
	// head, so a trace is seen in one or the other (or both), never in neither.
	bound := uint64(math.MaxUint64)
	if s, ok := b.o.Sink.MinSeq(); ok {
		bound = s
	}
	bound = min(bound, b.o.Pending.min())
	b.mu.Lock()
	for i, pt := range b.parts {
		n := 0
		for n < counts[i] && pt.consumed[n] < bound {
			n++
		}
		if n > 0 {
			pt.toCommit = max(pt.toCommit, pt.consumed[n-1])
			pt.consumed = append(pt.consumed[:0], pt.consumed[n:]...)
		}
		if label := strconv.Itoa(pt.p); len(pt.consumed) > 0 || pt.cancel != nil {
			b.l.m.uncommitted.WithLabelValues(label).Set(float64(len(pt.consumed)))
		} else {
			b.l.m.uncommitted.DeleteLabelValues(label)
		}
	}
	b.mu.Unlock()
	for _, pt := range b.parts {
		b.mu.Lock()
		to := pt.toCommit
		b.mu.Unlock()
		if to == 0 {
			continue
		}
		if err := b.l.commitOffset(ctx, pt.p, to); err != nil {
			b.l.log.Warn("ingest log: cannot commit offset; retried", "partition", pt.p, "seq", to, "err", err)
			continue
		}
		b.mu.Lock()
		if pt.toCommit == to {
			pt.toCommit = 0
		}
		pt.committed = max(pt.committed, to)
		b.mu.Unlock()
		b.l.m.committed.WithLabelValues(strconv.Itoa(pt.p)).Set(float64(to))
		// What is committed is in the bucket: drop it from the stream rather than keep it
		// (replicated) until nats.max_age, so the servers' disks hold the backlog, not a day
		// of traffic. Nothing reads below the committed offset; a failure only leaves the
		// messages to max_age, and the next commit purges them with its own.
		if err := b.l.stream.Purge(ctx, jetstream.WithPurgeSubject(fmt.Sprintf("%s.*.%d", b.l.cfg.Stream, pt.p)),
			jetstream.WithPurgeSequence(to+1)); err != nil {
			b.l.log.Warn("ingest log: cannot purge committed messages", "partition", pt.p, "below", to+1, "err", err)
		}
	}
}

// committedOffset is the partition's last committed stream sequence (0: none).
func (l *Log) committedOffset(ctx context.Context, p int) (uint64, error) {
	e, err := l.offsets.Get(ctx, partitionKey(p))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ingestlog: read offset of partition %d: %w", p, err)
	}
	v, err := strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("ingestlog: offset of partition %d: %w", p, err)
	}
	return v, nil
}

// commitOffset raises the partition's offset to seq, never lowers it: an old owner still
// committing what its last blocks made durable and the new owner replaying behind it both
// write, and whatever either says is durable is. Compare-and-set on the revision keeps two
// writers from losing each other's raise.
func (l *Log) commitOffset(ctx context.Context, p int, seq uint64) error {
	key := partitionKey(p)
	for try := 0; try < 3; try++ {
		e, err := l.offsets.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if _, err = l.offsets.Create(ctx, key, []byte(strconv.FormatUint(seq, 10))); err == nil {
				return nil
			}
		case err != nil:
			return fmt.Errorf("ingestlog: read offset: %w", err)
		default:
			cur, _ := strconv.ParseUint(string(e.Value()), 10, 64)
			if cur >= seq {
				return nil
			}
			if _, err = l.offsets.Update(ctx, key, []byte(strconv.FormatUint(seq, 10)), e.Revision()); err == nil {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("ingestlog: offset of partition %d changed under three attempts", p)
}
