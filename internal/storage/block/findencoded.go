package block

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// encodedChunk is how many spans FindTraceEncoded reads and encodes at a time: enough rows that
// each column's pages are read in one pass per chunk, few enough that a chunk's decoded columns
// stay around a megabyte whatever the trace's size.
const encodedChunk = 4096

// FindTraceEncoded calls fn with the part of trace id stored in this block, in the form ReadAll
// gives (each span one encoded Span message with its group), a chunk of spans at a time in row
// order (by start time). Only one chunk's columns are decoded at once, so a large trace costs
// its encoded size plus a chunk, not a decoded value per field of every span; what fn keeps is
// its business (the spans' bytes are not reused). Between chunks it checks ctx and yields the
// processor, so a huge trace neither outlives its client nor holds a CPU that ingest needs for
// its whole read. It reports whether the block holds the trace; an error from fn stops the
// read and is returned as is.
func (r *Reader) FindTraceEncoded(ctx context.Context, id [16]byte, fn func(spans []Span) error) (bool, error) {
	rows, err := r.findRows(id)
	if err != nil || len(rows) == 0 {
		return false, r.wrap(err)
	}
	// Parts in several runs are read one after the other, as parts in several blocks are.
	for _, row := range rows {
		if err := ctx.Err(); err != nil {
			return true, err
		}
		if err := r.findEncodedRow(ctx, id, row, fn); err != nil {
			return true, err
		}
	}
	return true, nil
}

func (r *Reader) findEncodedRow(ctx context.Context, id [16]byte, row int64, fn func(spans []Span) error) error {
	t, err := r.traceRows(row)
	if err != nil {
		return r.wrap(err)
	}
	ch, err := r.newTraceChunks(t)
	if err != nil {
		return r.wrap(err)
	}
	groups := r.wireGroups()
	for a := t.spans[0]; a < t.spans[1]; a += encodedChunk {
		b := min(a+encodedChunk, t.spans[1])
		spans, err := ch.read(a, b, groups, id)
		if err != nil {
			return r.wrap(fmt.Errorf("trace %x: %w", id, err))
		}
		if err := fn(spans); err != nil {
			return err
		}
		if b < t.spans[1] {
			if err := ctx.Err(); err != nil {
				return err
			}
			runtime.Gosched()
		}
	}
	return nil
}

// traceChunks reads one trace's span rows in chunks. The parents of a chunk's spans may be
// anywhere in the trace, so the span IDs of the whole trace are read up front, and so are the
// owner columns of the child files, which say where each chunk's attributes, events and links
// end; everything else is read a chunk at a time.
type traceChunks struct {
	r       *Reader
	t       rowRanges
	spanIDs [][]byte
	// Owners of the trace's child rows (global rows of their spans, or events and links), and
	// how far each has been consumed.
	attrOwner, evSpan, evAttrOwner, lkSpan, lkAttrOwner []int64
	ai, ei, eai, li, lai                                int
	// arena holds the encodings, shared by the chunks so that none ends with a mostly empty one.
	arena []byte
}

func (r *Reader) newTraceChunks(t rowRanges) (*traceChunks, error) {
	ch := &traceChunks{r: r, t: t}
	var err error
	if ch.spanIDs, err = r.spans.copies(sSpanID, t.spans[0], t.spans[1]-t.spans[0]); err != nil {
		return nil, err
	}
	owners := []struct {
		dst *[]int64
		p   *pfile
		col int
		rng [2]int64
	}{
		{&ch.attrOwner, r.attrs, aOwner, t.attrs},
		{&ch.evSpan, r.events, eSpan, t.events},
		{&ch.evAttrOwner, r.eventAttrs, aOwner, t.eventAttrs},
		{&ch.lkSpan, r.links, lSpan, t.links},
		{&ch.lkAttrOwner, r.linkAttrs, aOwner, t.linkAttrs},
	}
	for _, o := range owners {
		if *o.dst, err = o.p.int64s(o.col, o.rng[0], o.rng[1]-o.rng[0], nil); err != nil {
			return nil, err
		}
	}
	return ch, nil
}

// upTo advances *pos past the owners below end and returns the rows [from, to) of the file
// (whose trace range starts at first) that the owners passed belong to.
func upTo(owners []int64, pos *int, end, first int64) [2]int64 {
	from := *pos
	*pos += sort.Search(len(owners)-from, func(i int) bool { return owners[from+i] >= end })
	return [2]int64{first + int64(from), first + int64(*pos)}
}

// read encodes span rows [a, b), which must follow the previous call's.
func (ch *traceChunks) read(a, b int64, groups []*otlpwire.Group, id [16]byte) ([]Span, error) {
	t := ch.t
	attrs := upTo(ch.attrOwner, &ch.ai, b, t.attrs[0])
	events := upTo(ch.evSpan, &ch.ei, b, t.events[0])
	eventAttrs := upTo(ch.evAttrOwner, &ch.eai, events[1], t.eventAttrs[0])
	links := upTo(ch.lkSpan, &ch.li, b, t.links[0])
	linkAttrs := upTo(ch.lkAttrOwner, &ch.lai, links[1], t.linkAttrs[0])
	c, err := ch.r.readSpanCols([2]int64{a, b}, attrs, events, eventAttrs, links, linkAttrs)
	if err != nil {
		return nil, err
	}
	out := make([]Span, b-a)
	var s tracepb.Span
	for i := range b - a {
		if err := c.span(&s, i, ch.spanIDs, uint64(t.start), id[:]); err != nil {
			return nil, err
		}
		gi := c.group[i]
		if gi < 0 || int(gi) >= len(groups) {
			return nil, fmt.Errorf("span row %d: group %d out of range", a+i, gi)
		}
		raw, err := encodeSpan(&ch.arena, &s)
		if err != nil {
			return nil, err
		}
		out[i] = Span{Group: groups[gi], Raw: raw}
	}
	if c.ai != len(c.attrs.owner) || c.ei != len(c.evSpan) || c.eai != len(c.eventAttrs.owner) || c.li != len(c.lkSpan) || c.lai != len(c.linkAttrs.owner) {
		return nil, errors.New("child rows do not line up with spans")
	}
	return out, nil
}
