package ingestlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Sink is where a builder consumes into: the store of each tenant (store.Store with
// Options.ExternalLog), one partition carrying every tenant's traces of its trace IDs.
type Sink interface {
	// AppendLogged puts a request of tenant into its head, remembering the log position seq.
	// An error wrapping ErrRetry (the tenant's store cannot be opened now) stops the partition
	// until it succeeds; any other error skips the message.
	AppendLogged(tenant string, seq uint64, payload []byte) error
	// HeadBytes is the span data in memory, every tenant's; consumption pauses while it is
	// over the budget.
	HeadBytes() int64
	// MinSeq is the oldest log position still held by a head (store.Head().MinSegment, the
	// least over the tenants).
	MinSeq() (uint64, bool)
}

// ErrRetry marks a Sink error that must not skip the message.
var ErrRetry = errors.New("ingestlog: retry later")

// Pending tracks the blocks written but not yet whole in the bucket, each with the oldest log
// position of its traces. The store reports a block (BlockWritten) before its traces leave the
// head, the shipper reports it uploaded (Uploaded): between them the block holds back commits.
type Pending struct {
	mu     sync.Mutex
	blocks map[string]uint64
}

// NewPending returns an empty tracker.
func NewPending() *Pending { return &Pending{blocks: map[string]uint64{}} }

// BlockWritten is store.Options.BlockWritten.
func (p *Pending) BlockWritten(id string, minSeq uint64) {
	p.mu.Lock()
	p.blocks[id] = minSeq
	p.mu.Unlock()
}

// Uploaded is blockship.Options.Uploaded.
func (p *Pending) Uploaded(id string) {
	p.mu.Lock()
	delete(p.blocks, id)
	p.mu.Unlock()
}

func (p *Pending) min() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := uint64(math.MaxUint64)
	for _, s := range p.blocks {
		m = min(m, s)
	}
	return m
}

// Member is a block builder as listed in the members bucket.
type Member struct {
	ID         string `json:"id"`
	Addr       string `json:"addr"`       // its query API (http_addr), for peers' trace lookups
	Partitions []int  `json:"partitions"` // partitions it consumes, or still holds data of
	Heartbeat  int64  `json:"heartbeat"`  // Unix milliseconds of the entry
	// Lag is, per partition it consumes, the messages it has not consumed yet (its
	// ariadne_ingestlog_consumer_lag_messages), for `ariadne status`.
	Lag map[int]uint64 `json:"lag,omitempty"`
}

// BuilderOptions configure a Builder.
type BuilderOptions struct {
	NodeID  string // unique per process start
	Addr    string
	Sink    Sink
	Pending *Pending
	// MaxHeadBytes pauses consumption while the head holds more (default 48 MiB): the stream,
	// not the node's memory, absorbs a burst.
	MaxHeadBytes int64
	// Interval is how often membership, ownership and commits are looked at (default MemberTTL/5).
	Interval time.Duration
}

// Builder owns partitions: it consumes them into its sink and commits their offsets once the
// data is durable in the bucket.
type Builder struct {
	l *Log
	o BuilderOptions

	mu    sync.Mutex
	parts []*part
	// members is the live member set as last read, by ID.
	members map[string]Member

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

type part struct {
	p      int
	rev    uint64             // the owner entry's revision while owned
	cancel context.CancelFunc // set while consuming
	exited chan struct{}
	// consumed are the stream sequences appended to the sink and not committed yet, ascending.
	consumed []uint64
	// toCommit is the offset waiting to be written (0: none); committed the last written.
	toCommit, committed uint64
	// lag is the messages not consumed yet as last seen while consuming.
	lag uint64
}

// NewBuilder prepares a builder; Start begins its work.
func (l *Log) NewBuilder(o BuilderOptions) *Builder {
	if o.MaxHeadBytes <= 0 {
		o.MaxHeadBytes = 48 << 20
	}
	if o.Interval <= 0 {
		o.Interval = l.cfg.MemberTTL / 5
	}
	if o.Pending == nil {
		o.Pending = NewPending()
	}
	b := &Builder{l: l, o: o, members: map[string]Member{}, stop: make(chan struct{}), done: make(chan struct{})}
	for p := 0; p < l.cfg.Partitions; p++ {
		b.parts = append(b.parts, &part{p: p})
	}
	return b
}

// Start joins the members and begins taking partitions.
func (b *Builder) Start() {
	go func() {
		defer close(b.done)
		t := time.NewTicker(b.o.Interval)
		defer t.Stop()
		for {
			b.tick()
			select {
			case <-b.stop:
				return
			case <-t.C:
			}
		}
	}()
}

// StopConsuming ends the loop and every consumer; what is in the head stays, to be written into
// blocks by the store's close, after which Close commits it.
func (b *Builder) StopConsuming() {
	b.stopOnce.Do(func() { close(b.stop) })
	<-b.done
	for _, pt := range b.parts {
		b.stopConsumer(pt)
	}
}

// Close commits what the store's last blocks made durable, gives up the partitions and leaves
// the members, so the next owners start at once rather than after the member TTL.
func (b *Builder) Close(ctx context.Context) error {
	b.StopConsuming()
	b.commit(ctx)
	var errs []error
	for _, pt := range b.parts {
		if pt.rev != 0 {
			if _, err := b.l.owners.Update(ctx, partitionKey(pt.p), nil, pt.rev); err != nil {
				errs = append(errs, fmt.Errorf("ingestlog: release partition %d: %w", pt.p, err))
			}
			pt.rev = 0
		}
	}
	if err := b.l.members.Delete(ctx, b.o.NodeID); err != nil {
		errs = append(errs, fmt.Errorf("ingestlog: leave members: %w", err))
	}
	return errors.Join(errs...)
}

func (b *Builder) tick() {
	ctx, cancel := context.WithTimeout(context.Background(), b.l.cfg.MemberTTL)
	defer cancel()
	if err := b.heartbeat(ctx); err != nil {
		b.l.log.Warn("ingest log: heartbeat failed", "err", err)
	}
	members, err := b.l.Members(ctx)
	if err != nil {
		// Without a view of the members, ownership stays as it is.
		b.l.log.Warn("ingest log: cannot list members", "err", err)
	} else {
		live := map[string]Member{b.o.NodeID: {ID: b.o.NodeID, Addr: b.o.Addr}}
		for _, m := range members {
			live[m.ID] = m
		}
		b.mu.Lock()
		b.members = live
		b.mu.Unlock()
		b.l.m.members.Set(float64(len(live)))
		before := b.consuming()
		b.rebalance(ctx, live)
		if !slices.Equal(before, b.consuming()) {
			// Tell the others at once which partitions this node now holds, rather than a
			// tick later: queries and `ariadne status` read it from the members bucket.
			if err := b.heartbeat(ctx); err != nil {
				b.l.log.Warn("ingest log: heartbeat failed", "err", err)
			}
		}
	}
	b.commit(ctx)
}

// consuming lists the partitions this node consumes now.
func (b *Builder) consuming() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []int
	for _, pt := range b.parts {
		if pt.cancel != nil {
			out = append(out, pt.p)
		}
	}
	return out
}

func (b *Builder) heartbeat(ctx context.Context) error {
	m := Member{ID: b.o.NodeID, Addr: b.o.Addr, Heartbeat: time.Now().UnixMilli()}
	b.mu.Lock()
	for _, pt := range b.parts {
		if pt.cancel != nil || len(pt.consumed) > 0 {
			m.Partitions = append(m.Partitions, pt.p)
		}
		if pt.cancel != nil {
			if m.Lag == nil {
				m.Lag = map[int]uint64{}
			}
			m.Lag[pt.p] = pt.lag
		}
	}
	b.mu.Unlock()
	v, _ := json.Marshal(m)
	_, err := b.l.members.Put(ctx, b.o.NodeID, v)
	return err
}

// Members lists the live block builders.
func (l *Log) Members(ctx context.Context) ([]Member, error) {
	lister, err := l.members.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("ingestlog: list members: %w", err)
	}
	var out []Member
	for k := range lister.Keys() {
		e, err := l.members.Get(ctx, k)
		if err != nil {
			continue // expired or deleted since listed
		}
		var m Member
		if json.Unmarshal(e.Value(), &m) == nil {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b Member) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out, nil
}

// assigned is the member that partition p belongs to: rendezvous hashing, so a member joining
// or leaving moves only the partitions it takes or had.
func assigned(p int, live map[string]Member) string {
	var best string
	var bestScore uint64
	for id := range live {
		h := fnv.New64a()
		fmt.Fprintf(h, "%s/%d", id, p)
		if s := mix(h.Sum64()); best == "" || s > bestScore || (s == bestScore && id < best) {
			best, bestScore = id, s
		}
	}
	return best
}

// mix is splitmix64's finalizer: FNV alone leaves the high bits of IDs that differ in one
// character too alike, and rendezvous hashing compares whole values.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func (b *Builder) rebalance(ctx context.Context, live map[string]Member) {
	b.l.m.owner.Reset()
	owned := 0
	for _, pt := range b.parts {
		key := partitionKey(pt.p)
		e, err := b.l.owners.Get(ctx, key)
		var holder string
		var rev uint64
		switch {
		case err == nil:
			holder, rev = string(e.Value()), e.Revision()
		case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		default:
			b.l.log.Warn("ingest log: cannot read partition owner", "partition", pt.p, "err", err)
			if pt.cancel != nil {
				owned++
			}
			continue
		}
		want := assigned(pt.p, live) == b.o.NodeID
		switch {
		case pt.cancel != nil && holder != b.o.NodeID:
			// Taken over (this node was thought dead): stop at once.
			b.l.log.Warn("ingest log: partition taken by another node", "partition", pt.p, "owner", holder)
			b.stopConsumer(pt)
			pt.rev = 0
			b.l.m.rebalances.WithLabelValues("lost").Inc()
		case pt.cancel != nil && !want:
			b.stopConsumer(pt)
			if _, err := b.l.owners.Update(ctx, key, nil, rev); err != nil {
				b.l.log.Warn("ingest log: cannot release partition", "partition", pt.p, "err", err)
			}
			holder, pt.rev = "", 0
			b.l.m.rebalances.WithLabelValues("released").Inc()
			b.l.log.Info("ingest log: partition handed over", "partition", pt.p)
		case pt.cancel == nil && want && (holder == "" || holder == b.o.NodeID || live[holder].ID == ""):
			// Free, or its holder is gone from the members: take it by compare-and-set, so of
			// two nodes trying at once one wins.
			var nrev uint64
			if err == nil {
				nrev, err = b.l.owners.Update(ctx, key, []byte(b.o.NodeID), rev)
			} else {
				nrev, err = b.l.owners.Create(ctx, key, []byte(b.o.NodeID))
			}
			if err != nil {
				b.l.log.Debug("ingest log: partition claim lost", "partition", pt.p, "err", err)
				break
			}
			start, err := b.l.committedOffset(ctx, pt.p)
			if err != nil {
				b.l.log.Warn("ingest log: cannot read partition offset; claim given back", "partition", pt.p, "err", err)
				b.l.owners.Update(ctx, key, nil, nrev)
				break
			}
			b.l.log.Info("ingest log: partition taken", "partition", pt.p, "after", start, "previous_owner", holder)
			pt.rev, holder = nrev, b.o.NodeID
			b.startConsumer(pt, start)
			b.l.m.rebalances.WithLabelValues("taken").Inc()
		}
		if pt.cancel != nil {
			owned++
		}
		if holder != "" {
			b.l.m.owner.WithLabelValues(strconv.Itoa(pt.p), holder, live[holder].Addr).Set(1)
		}
	}
	b.l.m.owned.Set(float64(owned))
}
