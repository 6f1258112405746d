// Package ingestlog is the replicated ingest log on NATS JetStream: with it a cluster loses no
// acknowledged span when a node (or its disk) dies, and every span of a trace reaches one block
// builder however many receiving nodes its spans went through.
//
// Data flows one way:
//
//	receiving node ─ Publish ─► stream <stream>, subject <stream>.<tenant>.<partition>
//	                            (partition = FNV-1a of the trace ID mod partitions; replicas R)
//	block builder (owner of the partition) ─ Builder ─► head ─► tail sampling ─► block ─► bucket
//	                            └─ commits its offset per partition in KV once the block is up
//
// A receiving node acknowledges its sender only when JetStream acknowledged every part of the
// request (a PubAck comes after a quorum of the stream's replicas stored it). A builder
// acknowledges what it consumed by committing the partition's offset in a KV bucket (monotonic,
// compare-and-set on the entry's revision) once every span at or before it is in a block in the
// bucket (or dropped by tail sampling): in this mode the stream is the write-ahead log, and like
// a WAL's trimmed segments the partition's messages up to the offset are then purged. The
// partition's next owner starts consuming after the committed offset; what it replays that was
// already in a block is removed by span ID when read.
//
// Coordination uses NATS itself, not a protocol of our own: members heartbeat into a KV bucket
// whose entries expire (TTL), partitions are assigned by rendezvous hashing over the live
// members, and an owner holds a partition by a KV entry written with compare-and-set, so two
// nodes never consume one partition at once while they agree on the member set.
package ingestlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Config says where the log is. Zero values take the defaults.
type Config struct {
	URLs       []string
	Stream     string // stream name (default "ariadne"); KV buckets are named after it
	Replicas   int    // copies of the stream and its KV buckets (default 3)
	Partitions int    // default 16; fixed for the stream's life (changing it moves traces between partitions)
	// Credentials: user and password, a token, or a creds file (JWT + NKey seed).
	User, Password, Token, CredsFile string
	// MaxAge is how long the stream keeps messages not yet committed (default 24h): the
	// longest a builder may stay behind before data is lost. Committed ones are purged.
	MaxAge time.Duration
	// MemberTTL is how long a member stays listed without a heartbeat (default 5s): how soon
	// a dead builder's partitions are taken over.
	MemberTTL time.Duration
	// PublishTimeout bounds the wait for a request's acknowledgements (default 10s).
	PublishTimeout time.Duration
	Name           string // connection name shown by the NATS server
	Logger         *slog.Logger
	Registerer     prometheus.Registerer
}

func (c *Config) defaults() {
	if c.Stream == "" {
		c.Stream = "ariadne"
	}
	if c.Replicas <= 0 {
		c.Replicas = 3
	}
	if c.Partitions <= 0 {
		c.Partitions = 16
	}
	if c.MaxAge <= 0 {
		c.MaxAge = 24 * time.Hour
	}
	if c.MemberTTL <= 0 {
		c.MemberTTL = 5 * time.Second
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Log is a connection to the stream and its KV buckets.
type Log struct {
	cfg     Config
	log     *slog.Logger
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  jetstream.Stream
	members jetstream.KeyValue // node ID → Member, expiring
	owners  jetstream.KeyValue // p.<n> → owning node ID ("" when released)
	offsets jetstream.KeyValue // p.<n> → last committed stream sequence
	m       *metrics
}

// Open connects, and creates the stream and KV buckets if missing (or updates them to the
// configuration).
func Open(ctx context.Context, cfg Config) (*Log, error) {
	cfg.defaults()
	if len(cfg.URLs) == 0 {
		return nil, errors.New("ingestlog: no NATS URLs (nats.urls)")
	}
	if !validName(cfg.Stream) {
		return nil, fmt.Errorf("ingestlog: stream name %q: use letters, digits, - and _", cfg.Stream)
	}
	opts := []nats.Option{nats.Name(cfg.Name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false)}
	switch {
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	nc, err := nats.Connect(strings.Join(cfg.URLs, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("ingestlog: connect %s: %w", strings.Join(cfg.URLs, ","), err)
	}
	l := &Log{cfg: cfg, log: cfg.Logger, nc: nc}
	if err := l.setup(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	if l.m, err = newMetrics(cfg.Registerer, cfg.Partitions); err != nil {
		nc.Close()
		return nil, err
	}
	return l, nil
}

func (l *Log) setup(ctx context.Context) error {
	var err error
	if l.js, err = jetstream.New(l.nc); err != nil {
		return fmt.Errorf("ingestlog: %w", err)
	}
	c := l.cfg
	err = l.untilReady(ctx, "stream", func(ctx context.Context) (err error) {
		l.stream, err = l.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: c.Stream, Subjects: []string{c.Stream + ".>"}, Replicas: c.Replicas,
			Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld,
			MaxAge: c.MaxAge, Duplicates: time.Minute,
			Description: "Ariadne's ingest log: OTLP trace requests by tenant and trace-ID partition",
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("ingestlog: stream %s (replicas %d): %w", c.Stream, c.Replicas, err)
	}
	kv := func(name string, ttl time.Duration) (b jetstream.KeyValue, err error) {
		err = l.untilReady(ctx, "KV bucket "+name, func(ctx context.Context) (err error) {
			b, err = l.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: c.Stream + "_" + name, History: 1,
				TTL: ttl, Replicas: c.Replicas, Storage: jetstream.FileStorage})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("ingestlog: KV bucket %s_%s: %w", c.Stream, name, err)
		}
		return b, nil
	}
	if l.members, err = kv("members", c.MemberTTL); err != nil {
		return err
	}
	if l.owners, err = kv("owners", 0); err != nil {
		return err
	}
	l.offsets, err = kv("offsets", 0)
	return err
}

// untilReady runs create until it succeeds, fails for good, or ctx ends. A JetStream cluster
// without a meta leader (servers started together with the nodes, or a quorum coming back)
// drops or refuses API requests for a while; one request waiting out the whole start deadline
// for an answer that never comes would fail a start that a retry seconds later completes.
func (l *Log) untilReady(ctx context.Context, what string, create func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := create(actx)
		cancel()
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		l.log.Warn("ingest log: JetStream not ready, retrying", "what", what, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(min(time.Duration(attempt)*250*time.Millisecond, 2*time.Second)):
		}
	}
}

// transient tells a cluster not ready yet (no meta leader, too few servers up for the
// replicas, a request nobody answered) from a configuration the servers refuse (JetStream off,
// more replicas than a single server can hold, a stream of that name with other subjects),
// which no retry mends.
func transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) {
		return true
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case 10005, // no suitable peers for placement
		10008, // JetStream system temporarily unavailable
		10023: // insufficient resources
		return true
	}
	return apiErr.Code == 503
}

// Close drains nothing: a caller stops its Builder first.
func (l *Log) Close() { l.nc.Close() }

// Partitions is the configured number of partitions.
func (l *Log) Partitions() int { return l.cfg.Partitions }

// Partition is the partition of a trace ID among n: FNV-1a over all sixteen bytes, so that it is
// independent of the ratio sampler, which reads the low eight.
func Partition(traceID []byte, n int) int {
	// hash/fnv's 64-bit FNV-1a, written out: it runs for every span published, and the
	// hash.Hash interface cost more than the hashing.
	h := uint64(14695981039346656037)
	for _, c := range traceID {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return int(h % uint64(n))
}

// subject is where a tenant's partition is published.
func (l *Log) subject(tenant string, p int) string {
	return fmt.Sprintf("%s.%s.%d", l.cfg.Stream, tenantToken(tenant), p)
}

// tenantToken makes a tenant name one subject token: names of letters, digits, - and _ stay as
// they are (readable in `nats stream view`), anything else is hex with a leading "x-".
func tenantToken(t string) string {
	if t != "" && validName(t) && !strings.HasPrefix(t, "x-") {
		return t
	}
	return fmt.Sprintf("x-%x", t)
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// partitionKey is the KV key of a partition's owner and offset.
func partitionKey(p int) string { return fmt.Sprintf("p.%d", p) }
