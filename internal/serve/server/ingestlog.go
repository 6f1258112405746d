package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ariadne-tracing/ariadne/internal/pipeline/ingest"
	"github.com/ariadne-tracing/ariadne/internal/serve/config"
	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/ingestlog"
	"github.com/ariadne-tracing/ariadne/internal/storage/store"
	"github.com/ariadne-tracing/ariadne/internal/storage/wal"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// jetLog is a cluster node's part in the JetStream ingest log (ingest.log: jetstream): the
// connection, the tracker of blocks not yet in the bucket, and on nodes that build blocks the
// builder owning partitions.
type jetLog struct {
	log     *ingestlog.Log
	pending *ingestlog.Pending
	builder *ingestlog.Builder
	nodeID  string

	peersMu sync.Mutex
	peers   []string // the last list of the other builders, read at peersAt
	peersAt time.Time
}

func openJetLog(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (*jetLog, error) {
	n := cfg.NATS
	host, _ := os.Hostname()
	// A new ID per process start: a restarted node is a new member, and the old one's entries
	// are recognisably dead.
	id := fmt.Sprintf("%s-%s", sanitizeID(host), block.NewID(time.Now()))
	// Long enough for a NATS cluster started alongside to elect its leaders: Open retries.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := ingestlog.Open(ctx, ingestlog.Config{URLs: n.URLs, Stream: n.Stream, Replicas: n.Replicas, Partitions: n.Partitions,
		User: n.User, Password: n.Password, Token: n.Token, CredsFile: n.CredsFile, MaxAge: time.Duration(n.MaxAge),
		MemberTTL: time.Duration(n.MemberTTL), Name: "ariadne " + id, Logger: log, Registerer: reg})
	if err != nil {
		return nil, err
	}
	return &jetLog{log: l, pending: ingestlog.NewPending(), nodeID: id}, nil
}

// sanitizeID keeps what a KV key may hold.
func sanitizeID(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "node"
	}
	return string(b)
}

// startBuilder begins owning partitions, consuming them into the stores of sink. addr is the
// query address other nodes reach this one at.
func (j *jetLog) startBuilder(sink ingestlog.Sink, addr string, maxHeadBytes int64) {
	j.builder = j.log.NewBuilder(ingestlog.BuilderOptions{NodeID: j.nodeID, Addr: addr, Sink: sink,
		Pending: j.pending, MaxHeadBytes: maxHeadBytes})
	j.builder.Start()
}

// stopConsuming ends consumption before the store's close writes the head into its last block.
func (j *jetLog) stopConsuming() {
	if j != nil && j.builder != nil {
		j.builder.StopConsuming()
	}
}

// close commits what the last blocks made durable (they are uploaded by now), gives up the
// partitions and closes the connection.
func (j *jetLog) close(ctx context.Context) error {
	var err error
	if j.builder != nil {
		err = j.builder.Close(ctx)
	}
	j.log.Close()
	return err
}

// peerAddrs are the other block builders' query addresses, from the members bucket: query
// nodes need no peer list. Listing the bucket costs a consumer on it and a read per member,
// too much for every trace lookup, so the list is read at most once per peerListTTL; when it
// cannot be read the last one is used and the answer marked partial.
func (j *jetLog) peerAddrs(ctx context.Context) ([]string, error) {
	j.peersMu.Lock()
	defer j.peersMu.Unlock()
	if time.Since(j.peersAt) < peerListTTL {
		return j.peers, nil
	}
	// Bounded: queries wait for it under the lock, and after a NATS server's death a listing
	// can hang until the members bucket has a new leader.
	lctx, cancel := context.WithTimeout(ctx, peerListTimeout)
	defer cancel()
	ms, err := j.log.Members(lctx)
	if err != nil {
		// Tried again after peerListTTL, not by every query meanwhile.
		j.peersAt = time.Now()
		return j.peers, err
	}
	var out []string
	for _, m := range ms {
		if m.ID != j.nodeID && m.Addr != "" {
			out = append(out, m.Addr)
		}
	}
	j.peers, j.peersAt = out, time.Now()
	return out, nil
}

// peerListTTL is how long a read of the members bucket serves queries: well under the member
// TTL, so a new builder's head is searched within about a second of its joining.
const peerListTTL = time.Second

// peerListTimeout bounds one read of the members bucket for queries.
const peerListTimeout = 2 * time.Second

// advertise is the address peers reach addr (a bound listener) at: the configured one, or
// addr with the host name when it binds every interface.
func advertise(configured, addr string) string {
	if configured != "" {
		return configured
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if h, err := os.Hostname(); err == nil {
			return net.JoinHostPort(h, port)
		}
	}
	return addr
}

// coreSink is what a block builder consumes into: the store of each message's tenant. With
// multi-tenancy off every message goes to the one store; on, to its tenant's core, opened on
// its first message as a receiving node opens it on its first request.
type coreSink struct{ s *Server }

func (k coreSink) AppendLogged(tenant string, seq uint64, payload []byte) error {
	if k.s.tenants == nil {
		return k.s.core.Store.AppendLogged(seq, payload)
	}
	c, err := k.s.tenants.get(tenant, true)
	if err != nil {
		var over *ingest.OverloadError
		if errors.As(err, &over) {
			// Past multitenancy_max_tenants: the message waits in the stream until there is
			// room (or the setting is raised), rather than being lost.
			return fmt.Errorf("%w: %w", ingestlog.ErrRetry, err)
		}
		return err
	}
	return c.Store.AppendLogged(seq, payload)
}

func (k coreSink) HeadBytes() int64 {
	var n int64
	k.eachStore(func(st *store.Store) { n += st.HeadBytes() })
	return n
}

func (k coreSink) MinSeq() (uint64, bool) {
	var m uint64
	found := false
	k.eachStore(func(st *store.Store) {
		if s, ok := st.Head().MinSegment(); ok && (!found || s < m) {
			m, found = s, true
		}
	})
	return m, found
}

func (k coreSink) eachStore(fn func(*store.Store)) {
	if k.s.tenants == nil {
		fn(k.s.core.Store)
		return
	}
	t := k.s.tenants
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.cores {
		fn(c.Store)
	}
}

// publishStore is what the ingester writes to in jetstream mode: a request is durable when the
// stream acknowledged it, and the spans reach a head (this node's or another's) through the
// partition's owner. Memory limits are the owners' (they pause consuming), so the receiving
// side reports none; the spans-per-trace limit holds per request only, since the trace's
// other spans are on its owner.
type publishStore struct {
	log    *ingestlog.Log
	tenant string // the subject's tenant token and the message's header
}

func (p publishStore) AppendBatch(payload []byte, _ *otlpwire.Batch) error {
	if err := p.log.Publish(context.Background(), p.tenant, payload); err != nil {
		// The ingester answers wal.ErrUnavailable as retryable (gRPC Unavailable, HTTP 503 with
		// Retry-After): what a sender must hear when the log did not take the request.
		return fmt.Errorf("%w: %w", wal.ErrUnavailable, err)
	}
	return nil
}
func (publishStore) HeadBytes() int64           { return 0 }
func (publishStore) WALPendingBytes() int64     { return 0 }
func (publishStore) TraceSpans(id [16]byte) int { return 0 }
func (publishStore) MarkTruncated(id [16]byte)  {}
