package search

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"slices"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// A trace whose spans are in several places (the head and blocks, or several blocks: late
// spans after trace_idle, a trace longer than trace_max_age) must be judged as one trace:
// "{ name = "root" } >> { name = "child" }" with the root in a block and the child in the
// head matches neither part alone, and count(), trace:duration and trace:rootName of a part
// are wrong. Looking for other parts of every trace would cost a lookup in every block per
// trace, so only the traces known to be split are judged whole:
//
//   - the head marks a live trace split when it begins while an earlier part is still waiting
//     for its block, and the store's flush loop marks those whose earlier parts are already in
//     blocks (head.CheckSplits); a trace the loop has not looked at yet counts as split when a
//     block's bloom filter may hold it;
//   - a block lists the traces it was given marked split (block.Meta.Split), and compaction
//     keeps the list.
//
// Each such trace is read whole once per query, from the head and every block that holds part
// of it, newest first and only until a limited search has its answer, and its parts are skipped
// when the head and the blocks are scanned.

// splitTrace is a trace known to be split, with the start of the part that says so: the whole
// trace starts no later.
type splitTrace struct {
	id    [16]byte
	start int64
}

// splitTraces returns the known split traces that may start in the query's window, newest part
// first, and their IDs.
func splitTraces(p *plan, headSplit []*headPart, blocks []*block.Reader) ([]splitTrace, map[[16]byte]bool, error) {
	var out []splitTrace
	for _, hp := range headSplit {
		if !hp.split && !mayBeInBlocks(hp.id, blocks) {
			continue
		}
		// The whole trace starts no later than this part, so a part starting before the
		// window rules the trace out.
		if p.minStart != 0 && int64(hp.start) < p.minStart {
			continue
		}
		out = append(out, splitTrace{hp.id, int64(hp.start)})
	}
	for _, b := range blocks {
		for _, st := range b.Meta().Split {
			if p.minStart != 0 && st.Start < p.minStart {
				continue
			}
			var id [16]byte
			if n, err := hex.Decode(id[:], []byte(st.ID)); err != nil || n != 16 {
				return nil, nil, fmt.Errorf("search: block %s: split trace %q is not a trace ID", b.Meta().ID, st.ID)
			}
			out = append(out, splitTrace{id, st.Start})
		}
	}
	if len(out) == 0 {
		return nil, nil, nil
	}
	// Newest first, and one entry per trace: the newest part's start bounds the whole trace's.
	slices.SortFunc(out, func(a, b splitTrace) int {
		return cmp.Or(cmp.Compare(b.start, a.start), bytes.Compare(a.id[:], b.id[:]))
	})
	ids := make(map[[16]byte]bool, len(out))
	out = slices.DeleteFunc(out, func(st splitTrace) bool {
		if ids[st.id] {
			return true
		}
		ids[st.id] = true
		return false
	})
	return out, ids, nil
}

// judgeSplit calls fn with each split trace, read whole, that starts in the query's window,
// newest first, until enough says no trace older than the next can be needed.
func (e *Engine) judgeSplit(ctx context.Context, p *plan, split []splitTrace, blocks []*block.Reader, fn func(*trace), enough func() (int64, bool)) error {
	for _, st := range split {
		if err := ctx.Err(); err != nil {
			return err
		}
		if oldest, ok := enough(); ok && st.start < oldest {
			break
		}
		t, err := e.wholeTrace(ctx, st.id, blocks)
		if err != nil {
			return err
		}
		if t == nil || (p.minStart != 0 && t.start < p.minStart) || (p.maxStart != 0 && t.start > p.maxStart) {
			continue
		}
		fn(t)
	}
	return nil
}

// mayBeInBlocks reports whether some block's bloom filter may hold id.
func mayBeInBlocks(id [16]byte, blocks []*block.Reader) bool {
	for _, b := range blocks {
		if b.MayContain(id) {
			return true
		}
	}
	return false
}

// wholeTrace reads every part of trace id, from the head and from each block holding one, as
// one trace; nil when no part is found.
func (e *Engine) wholeTrace(ctx context.Context, id [16]byte, blocks []*block.Reader) (*trace, error) {
	var parts []*headPart
	for _, ht := range e.head(ctx).Get(id) {
		parts = append(parts, newHeadPart(ht))
	}
	for _, b := range blocks {
		if !b.MayContain(id) {
			continue
		}
		rss, err := b.FindTrace(ctx, id)
		if block.SkipDamaged(ctx, err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("search: block %s: trace %x: %w", b.Meta().ID, id, err)
		}
		if len(rss) > 0 {
			part, err := partOf(id, rss)
			if err != nil {
				return nil, fmt.Errorf("search: block %s: trace %x: %w", b.Meta().ID, id, err)
			}
			parts = append(parts, part)
		}
	}
	if len(parts) == 0 {
		return nil, nil
	}
	return decodeHead(parts, map[*otlpwire.Group]*resource{}, allWire())
}

// partOf puts a block's part of a trace into the head's form, so that one decoder merges parts
// from both (removing spans sent twice) and links parents across them.
func partOf(id [16]byte, rss []*tracepb.ResourceSpans) (*headPart, error) {
	p := &headPart{id: id}
	first := true
	for _, rs := range rss {
		res, err := proto.Marshal(rs.Resource)
		if err != nil {
			return nil, err
		}
		var service []byte
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				if sv, ok := kv.Value.GetValue().(*commonpb.AnyValue_StringValue); ok {
					service = []byte(sv.StringValue)
				}
			}
		}
		for _, ss := range rs.ScopeSpans {
			var scope []byte
			if ss.Scope != nil {
				if scope, err = proto.Marshal(ss.Scope); err != nil {
					return nil, err
				}
			}
			g := &otlpwire.Group{Resource: res, Scope: scope, ServiceName: service}
			for _, sp := range ss.Spans {
				raw, err := proto.Marshal(sp)
				if err != nil {
					return nil, err
				}
				p.groups = append(p.groups, g)
				p.raws = append(p.raws, raw)
				if first || sp.StartTimeUnixNano < p.start {
					p.start = sp.StartTimeUnixNano
				}
				p.end = max(p.end, sp.EndTimeUnixNano)
				first = false
			}
		}
	}
	return p, nil
}
