package block

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
)

// Merge reads the run's traces in ID order, one batch per input run (see Run) at a time, and
// passes each trace ID once to add, its entries from every input joined (MergeEntries): memory
// holds a batch of traces per input run, whatever the blocks' sizes. It returns the spans
// passed to add. Compaction uses MergeRuns, which keeps the traces in runs by start time.
func Merge(ctx context.Context, run []*Reader, add func(Trace) error) (spans int, err error) {
	var parts []runPart
	for _, r := range run {
		for _, rr := range r.runs {
			parts = append(parts, runPart{r, rr})
		}
	}
	return mergeParts(ctx, parts, add)
}

// inRuns reports whether any of the runs holds a part of trace id: the bloom filters and ID
// prefixes answer from memory but for the few that may.
func inRuns(runs []runPart, id [16]byte) (bool, error) {
	for _, p := range runs {
		if !p.r.MayContain(id) {
			continue
		}
		p.r.idPrefixOnce.Do(p.r.loadIDPrefixes)
		if p.r.idPrefixErr == nil && len(p.r.idPrefix) == int(p.r.traces.rows) {
			if _, found := slices.BinarySearch(p.r.idPrefix[p.run.row0:p.run.row1], binary.BigEndian.Uint32(id[:4])); !found {
				continue
			}
		}
		row, err := p.r.findInRun(p.run, id)
		if err != nil {
			return false, p.r.wrap(err)
		}
		if row >= 0 {
			return true, nil
		}
	}
	return false, nil
}

// runPart is one run of one input.
type runPart struct {
	r   *Reader
	run runRows
}

// mergeBatchTraces bounds the traces a merge holds decoded across all its inputs' batches;
// each input reads at least minMergeBatch at a time, at most readAllTraces.
const (
	mergeBatchTraces = 8192
	minMergeBatch    = 64
)

// mergeParts k-way merges the parts by trace ID into add.
func mergeParts(ctx context.Context, in []runPart, add func(Trace) error) (spans int, err error) {
	batch := int64(min(max(mergeBatchTraces/max(len(in), 1), minMergeBatch), readAllTraces))
	its := make([]*Iter, len(in))
	heads := make([]Trace, len(in))
	live := make([]bool, len(in))
	next := func(i int) error {
		heads[i], live[i] = its[i].Next(ctx)
		if !live[i] {
			if err := its[i].Err(); err != nil {
				return fmt.Errorf("read block %s: %w", in[i].r.Meta().ID, err)
			}
		}
		return nil
	}
	for i, p := range in {
		its[i] = p.r.iterRows(p.run.row0, p.run.row1, batch)
		if err := next(i); err != nil {
			return 0, err
		}
	}
	var parts []Trace
	for {
		// Inputs are few (the fanout's runs), so a linear scan for the least ID is as good
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

// MaxRuns is about how many runs MergeRuns gives a block: runs of a few thousand traces at
// least, and no more than this many, so that the runs a lookup by trace ID binary-searches in
// memory (the ID prefixes, then about one page) stay few however big compaction makes a block,
// while a search for the newest traces of a 30M-span merged block reads a run of ~10k traces
// rather than ~40k. A merge of runs that are already about that size keeps them as they are.
const MaxRuns = 64

// minRunTraces is the default WriteOptions.RunTraces.
const minRunTraces = 8192

// MergeRuns merges the inputs into sw in runs by start time: the inputs' runs, sorted by
// the start of their traces, are grouped in that order until a group holds a MaxRuns-th of the
// traces (or minRunTraces), and each group is k-way merged by trace ID (as Merge) into one run
// of sw. Every input run is read once, in row order, as Merge reads it. A trace with parts in
// runs of different groups (a split trace) keeps a part in each output run, as it would in two
// blocks; the parts are merged where their runs fall in one group, which is most of the time,
// since its parts started together. It returns the spans written.
func MergeRuns(ctx context.Context, inputs []*Reader, sw *StreamWriter) (spans int, err error) {
	var parts []runPart
	var total int64
	for _, r := range inputs {
		for _, rr := range r.runs {
			if rr.row1 > rr.row0 {
				parts = append(parts, runPart{r, rr})
				total += rr.row1 - rr.row0
			}
		}
	}
	slices.SortStableFunc(parts, func(a, b runPart) int {
		return cmp.Or(cmp.Compare(a.run.minStart, b.run.minStart), cmp.Compare(a.run.maxStart, b.run.maxStart))
	})
	least := sw.opts.RunTraces
	if least <= 0 {
		least = minRunTraces
	}
	target := max(total/MaxRuns, least)
	for lo := 0; lo < len(parts); {
		hi, n := lo, int64(0)
		for hi < len(parts) && n < target {
			n += parts[hi].run.row1 - parts[hi].run.row0
			hi++
		}
		later := parts[hi:]
		s, err := mergeParts(ctx, parts[lo:hi], func(t Trace) error {
			// A part in a later run makes the trace split within the block: the Split list
			// must name it, or a search would count its parts as two traces.
			if !t.Split {
				in, err := inRuns(later, t.ID)
				if err != nil {
					return err
				}
				t.Split = in
			}
			return sw.Add(t)
		})
		spans += s
		if err != nil {
			return spans, err
		}
		if err := sw.EndRun(); err != nil {
			return spans, err
		}
		lo = hi
	}
	return spans, nil
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
