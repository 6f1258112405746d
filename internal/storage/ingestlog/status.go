package ingestlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Status is the cluster as NATS holds it: the stream and its servers, the block builders in the
// members bucket, and for each partition its owner, committed offset and backlog. It is read
// from NATS alone, so any node gives the same answer and a dead owner's backlog still shows.
type Status struct {
	Stream     string `json:"stream"`
	Partitions int    `json:"partitions"`
	Replicas   int    `json:"replicas"` // configured copies of the stream
	Messages   uint64 `json:"messages"`
	Bytes      uint64 `json:"bytes"`
	FirstSeq   uint64 `json:"first_seq"`
	LastSeq    uint64 `json:"last_seq"`
	Cluster    string `json:"cluster,omitempty"`
	// Servers are the NATS servers holding a copy of the stream, the leader first.
	Servers []StreamServer    `json:"servers,omitempty"`
	Members []Member          `json:"members"`
	Parts   []PartitionStatus `json:"partitions_status"`
}

// StreamServer is one copy of the stream.
type StreamServer struct {
	Name    string `json:"name"`
	Leader  bool   `json:"leader,omitempty"`
	Current bool   `json:"current"` // caught up with the leader
	Offline bool   `json:"offline,omitempty"`
	Lag     uint64 `json:"lag,omitempty"` // operations behind the leader
}

// PartitionStatus is one partition of the stream.
type PartitionStatus struct {
	Partition int    `json:"partition"`
	Owner     string `json:"owner,omitempty"` // "" while no node holds it
	// OwnerLive says whether the owner is in the members bucket; a dead owner's partition is
	// taken over once its member entry expires.
	OwnerLive bool   `json:"owner_live"`
	Messages  uint64 `json:"messages"`  // in the stream, committed or not
	Committed uint64 `json:"committed"` // stream sequence; everything up to it is in the bucket
	// Uncommitted is the messages after the committed offset: what a new owner would replay
	// if the owner died now (consumed into a head or a block not yet uploaded, or not
	// consumed yet).
	Uncommitted uint64 `json:"uncommitted"`
	// Lag is the messages the owner has not consumed yet, from its last heartbeat; -1 when
	// the owner does not say (not a live member).
	Lag int64 `json:"lag"`
}

// Status reads the cluster's state from NATS.
func (l *Log) Status(ctx context.Context) (Status, error) {
	c := l.cfg
	info, err := l.stream.Info(ctx, jetstream.WithSubjectFilter(c.Stream+".>"))
	if err != nil {
		return Status{}, fmt.Errorf("ingestlog: stream %s info: %w", c.Stream, err)
	}
	st := Status{Stream: c.Stream, Partitions: c.Partitions, Replicas: info.Config.Replicas,
		Messages: info.State.Msgs, Bytes: info.State.Bytes, FirstSeq: info.State.FirstSeq, LastSeq: info.State.LastSeq}
	if ci := info.Cluster; ci != nil {
		st.Cluster = ci.Name
		if ci.Leader != "" {
			st.Servers = append(st.Servers, StreamServer{Name: ci.Leader, Leader: true, Current: true})
		}
		for _, p := range ci.Replicas {
			st.Servers = append(st.Servers, StreamServer{Name: p.Name, Current: p.Current, Offline: p.Offline, Lag: p.Lag})
		}
	}
	if st.Members, err = l.Members(ctx); err != nil {
		return Status{}, err
	}
	live := map[string]Member{}
	for _, m := range st.Members {
		live[m.ID] = m
	}
	st.Parts = make([]PartitionStatus, c.Partitions)
	for p := range st.Parts {
		st.Parts[p] = PartitionStatus{Partition: p, Lag: -1}
	}
	for subj, n := range info.State.Subjects {
		// <stream>.<tenant>.<partition>
		if p, err := strconv.Atoi(subj[strings.LastIndexByte(subj, '.')+1:]); err == nil && p >= 0 && p < c.Partitions {
			st.Parts[p].Messages += n
		}
	}
	for p := range st.Parts {
		ps := &st.Parts[p]
		e, err := l.owners.Get(ctx, partitionKey(p))
		switch {
		case err == nil:
			ps.Owner = string(e.Value())
		case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		default:
			return Status{}, fmt.Errorf("ingestlog: owner of partition %d: %w", p, err)
		}
		if m, ok := live[ps.Owner]; ok && ps.Owner != "" {
			ps.OwnerLive = true
			if n, ok := m.Lag[p]; ok {
				ps.Lag = int64(n)
			}
		}
		if ps.Committed, err = l.committedOffset(ctx, p); err != nil {
			return Status{}, err
		}
	}
	if err := l.countUncommitted(ctx, st.Parts, info.State.LastSeq); err != nil {
		return Status{}, err
	}
	return st, nil
}

// countUncommitted fills in each partition's messages after its committed offset. NATS counts
// them when a consumer is created (its pending count), so one short-lived consumer per
// partition that has any asks it; a few at a time, since each is a request to the server.
func (l *Log) countUncommitted(ctx context.Context, parts []PartitionStatus, lastSeq uint64) error {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	errs := make([]error, len(parts))
	for i := range parts {
		ps := &parts[i]
		switch {
		case ps.Committed == 0:
			ps.Uncommitted = ps.Messages
			continue
		case ps.Committed >= lastSeq || ps.Messages == 0:
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ps.Uncommitted, errs[i] = l.pendingAfter(ctx, ps.Partition, ps.Committed)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// pendingAfter is the number of partition p's messages after stream sequence seq.
func (l *Log) pendingAfter(ctx context.Context, p int, seq uint64) (uint64, error) {
	cons, err := l.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject: fmt.Sprintf("%s.*.%d", l.cfg.Stream, p),
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: seq + 1,
		AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, Replicas: 1,
		// Removed by the server too, should the delete below not reach it.
		InactiveThreshold: 30 * time.Second,
		Description:       "ariadne status: messages after the committed offset",
	})
	if err != nil {
		return 0, fmt.Errorf("ingestlog: count partition %d after %d: %w", p, seq, err)
	}
	n := cons.CachedInfo().NumPending
	if err := l.stream.DeleteConsumer(ctx, cons.CachedInfo().Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, fmt.Errorf("ingestlog: remove counting consumer: %w", err)
	}
	return n, nil
}

// StatusHandler answers GET /api/status/cluster with the Status as JSON (`ariadne status`).
func (l *Log) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, err := l.Status(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
	})
}
