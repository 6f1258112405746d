package block

import "context"

// FindTraceEncoded is FindTrace in the form ReadAll gives: each span one encoded Span message
// with its group. It holds the trace's columns once while encoding them, not a decoded object
// per span, so a large trace costs about its encoded size; trace-by-ID answers stream from it.
// It returns nil when the block does not hold the trace.
func (r *Reader) FindTraceEncoded(ctx context.Context, id [16]byte) (*Trace, error) {
	row, err := r.findRow(id)
	if err != nil || row < 0 {
		return nil, r.wrap(err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ts, err := r.readBatch(row, 1, r.wireGroups())
	if err != nil {
		return nil, r.wrap(err)
	}
	return &ts[0], nil
}
