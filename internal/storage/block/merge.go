package block

import (
	"bytes"
	"context"
	"fmt"
)

// Merge reads the run's traces in ID order, one batch per input at a time, and passes
// each trace ID once to add, its entries from every input joined (MergeEntries): memory holds a
// batch of traces per input, whatever the blocks' sizes. The store's compaction and the
// bucket's compactor both merge with it. It returns the spans passed to add.
func Merge(ctx context.Context, run []*Reader, add func(Trace) error) (spans int, err error) {
	its := make([]*Iter, len(run))
	heads := make([]Trace, len(run))
	live := make([]bool, len(run))
	next := func(i int) error {
		heads[i], live[i] = its[i].Next(ctx)
		if !live[i] {
			if err := its[i].Err(); err != nil {
				return fmt.Errorf("read block %s: %w", run[i].Meta().ID, err)
			}
		}
		return nil
	}
	for i, r := range run {
		its[i] = r.Iter()
		if err := next(i); err != nil {
			return 0, err
		}
	}
	var parts []Trace
	for {
		// Inputs are few (at most the fanout), so a linear scan for the least ID is as good
		// as a heap and simpler.
		lo := -1
		for i := range heads {
			if live[i] && (lo < 0 || bytes.Compare(heads[i].ID[:], heads[lo].ID[:]) < 0) {
				lo = i
			}
		}
		if lo < 0 {
			return spans, nil
		}
		id := heads[lo].ID
		parts = parts[:0]
		for i := range heads {
			if live[i] && heads[i].ID == id {
				parts = append(parts, heads[i])
				if err := next(i); err != nil {
					return spans, err
				}
			}
		}
		t := MergeEntries(parts)
		spans += len(t.Spans)
		if err := add(t); err != nil {
			return spans, err
		}
	}
}

// MergeEntries joins the parts of one trace. A span already present byte for byte is dropped:
// it is the same span stored twice, which only a crash between a compaction's write and its
// deletes produces. The merged trace keeps the strictest sampling ratio (0 stands for 1) and
// any truncation or split mark.
func MergeEntries(parts []Trace) Trace {
	m := parts[0]
	if len(parts) == 1 {
		return m
	}
	have := make(map[string]bool, len(m.Spans))
	for _, sp := range m.Spans {
		have[string(sp.Raw)] = true
	}
	for _, t := range parts[1:] {
		for _, sp := range t.Spans {
			if !have[string(sp.Raw)] {
				have[string(sp.Raw)] = true
				m.Spans = append(m.Spans, sp)
			}
		}
		if t.SampleRatio > 0 && (m.SampleRatio == 0 || t.SampleRatio < m.SampleRatio) {
			m.SampleRatio = t.SampleRatio
		}
		m.Truncated = m.Truncated || t.Truncated
		m.Split = m.Split || t.Split
	}
	return m
}
