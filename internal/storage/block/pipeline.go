package block

import (
	"runtime"
	"sync/atomic"

	"github.com/parquet-go/parquet-go"
)

// Writing a block is a few kinds of work of similar size (CPU profile of BenchmarkWrite):
// decoding the spans and laying out their rows, the index file's span aggregates, the span
// attribute rows and value lists, and Parquet column encoding and compression (spread over
// eight files). With more than one core they run as a pipeline: the caller's goroutine decodes
// and lays out the trace, span, event and link rows, hands each file's full batches of values
// to that file's encoder goroutine and each chunk of span summaries (with their attributes) to
// the index goroutine and the attribute goroutine, and goes on. The files stay separate byte
// streams, each written by one goroutine in row order, so the bytes written are exactly those
// of the sequential writer; only the wall time changes. A block then takes about as long as
// its largest stage instead of the sum of all of them, which is what lets one block use two
// cores, and it keeps memory to one block in flight per writer (blocks in parallel would hold
// one batch of traces each in the head).
//
// Batches and chunks are recycled through small free lists, so a slow stage holds the producer
// back instead of queueing memory.

const (
	pipelineBatches = 3    // value batches per file: one being filled, up to two queued
	idxChunkSpans   = 2048 // spans per chunk handed to the index goroutine
	idxChunks       = 3
)

// pipelined reports whether blocks are written as a pipeline: only with a core to spare, as
// on one core the hand-offs are pure overhead.
func pipelined() bool { return runtime.GOMAXPROCS(0) > 1 }

// valueBatch is one batch of a file's rows, column-major (column c, row r at c*batchRows+r).
type valueBatch struct {
	vals  []parquet.Value
	n     int
	endRG bool // the row group ends after this batch
}

// fileEncoder is a file's encoder goroutine and its queues.
type fileEncoder struct {
	work  chan *valueBatch
	free  chan *valueBatch
	done  chan struct{}
	close bool  // finish the Parquet file once the queue is drained; set before work closes
	err   error // the goroutine's first error; read after done
}

// startEncoder starts f's encoder goroutine for one file.
func (f *fileWriter) startEncoder() {
	for len(f.batches) < pipelineBatches {
		f.batches = append(f.batches, &valueBatch{vals: make([]parquet.Value, len(f.fs.cols)*batchRows)})
	}
	e := &fileEncoder{work: make(chan *valueBatch, pipelineBatches), free: make(chan *valueBatch, pipelineBatches),
		done: make(chan struct{})}
	for _, b := range f.batches[1:] {
		e.free <- b
	}
	f.cur, f.vals, f.n = f.batches[0], f.batches[0].vals, 0
	f.bg = e
	go func() {
		defer close(e.done)
		for b := range e.work {
			if e.err == nil {
				e.err = f.encode(b.vals, b.n, b.endRG)
			}
			e.free <- b // never blocks: free holds every batch
		}
		if e.close && e.err == nil {
			e.err = f.closeParquet()
		}
	}()
}

// submit queues the current batch for the encoder and takes a free one to fill next. An
// encoder that failed keeps draining, so the producer never blocks on it; its error is
// reported when the file is closed.
func (f *fileWriter) submit(n int, endRG bool) {
	e := f.bg
	f.cur.n, f.cur.endRG = n, endRG
	e.work <- f.cur
	f.cur = <-e.free
	f.vals = f.cur.vals
}

// stopEncoder abandons the file: the encoder goroutine drains its queue and ends.
func (f *fileWriter) stopEncoder() {
	if f.bg == nil {
		return
	}
	close(f.bg.work)
	f.wait()
}

// idxSpan is what the index and the span attribute rows need of one span; attrs is its range
// in idxChunk.attrs, row its row in the spans file.
type idxSpan struct {
	group, status, kind int32
	attr0, attr1        int32
	name                []byte
	start, end          uint64
	row                 int64
}

// idxChunk is a run of spans handed to two consumers, the index goroutine and the attribute
// goroutine (which lays out the span attribute rows, the producer's largest single task); the
// last to finish with it puts it back on the free list.
type idxChunk struct {
	spans []idxSpan
	attrs []attrRec
	refs  atomic.Int32
}

// indexFeed is the index and attribute goroutines and their queues.
type indexFeed struct {
	work  chan *idxChunk // to the index goroutine
	attrs chan *idxChunk // to the attribute goroutine
	free  chan *idxChunk
	done  chan struct{} // the index goroutine ended
	adone chan struct{} // the attribute goroutine ended
	cur   *idxChunk
	// encode the index file once the queue is drained (end), rather than drop it (an error);
	// set before work closes.
	encode bool
	aerr   error // the attribute goroutine's first error; read after adone
}

func (q *indexFeed) put(c *idxChunk) {
	if c.refs.Add(-1) == 0 {
		clear(c.attrs)
		clear(c.spans)
		c.attrs, c.spans = c.attrs[:0], c.spans[:0]
		q.free <- c // never blocks: free holds every chunk
	}
}

func (w *writer) startIndex() {
	for len(w.idxChunks) < idxChunks {
		w.idxChunks = append(w.idxChunks, &idxChunk{})
	}
	q := &indexFeed{work: make(chan *idxChunk, idxChunks), attrs: make(chan *idxChunk, idxChunks),
		free: make(chan *idxChunk, idxChunks), done: make(chan struct{}), adone: make(chan struct{}),
		cur: w.idxChunks[0]}
	for _, c := range w.idxChunks[1:] {
		q.free <- c
	}
	w.idxQ = q
	go func() {
		defer close(q.done)
		for c := range q.work {
			w.idx.addSpans(c)
			q.put(c)
		}
		if q.encode {
			<-q.adone // the attribute values are the attribute goroutine's
			w.idx.encode(&w.indexBuf)
		}
	}()
	go func() {
		defer close(q.adone)
		for c := range q.attrs {
			if q.aerr == nil {
				q.aerr = w.attrRows(c)
			}
			q.put(c)
		}
	}()
}

// attrRows lays out the span attribute rows of a chunk and lists their values in the index
// (indexBuilder.addAttr shares nothing with addSpan, which runs on the index goroutine).
func (w *writer) attrRows(c *idxChunk) error {
	for i := range c.spans {
		s := &c.spans[i]
		for j := s.attr0; j < s.attr1; j++ {
			plain := w.idx.addAttr(&c.attrs[j])
			if err := appendAttrRow(w.attrs, s.row, &c.attrs[j], plain); err != nil {
				return err
			}
		}
	}
	return nil
}

func (q *indexFeed) send() {
	c := q.cur
	c.refs.Store(2)
	q.work <- c
	q.attrs <- c
	q.cur = <-q.free
}

// spanAttrs writes one span's attribute rows (row is the span's row) and records the span and
// its attributes for the index: directly, or through the index and attribute goroutines.
func (w *writer) spanAttrs(s *spanRec, row int64, status int32, attrs []attrRec) error {
	w.attrRowCount += int64(len(attrs))
	q := w.idxQ
	if q == nil {
		for i := range attrs {
			plain := w.idx.addAttr(&attrs[i])
			if err := appendAttrRow(w.attrs, row, &attrs[i], plain); err != nil {
				return err
			}
		}
		w.idx.addSpan(s.group, s.name, status, s.kind, s.start, s.end)
		return nil
	}
	c := q.cur
	a0 := int32(len(c.attrs))
	c.attrs = append(c.attrs, attrs...)
	c.spans = append(c.spans, idxSpan{group: s.group, status: status, kind: s.kind, attr0: a0, attr1: int32(len(c.attrs)),
		name: s.name, start: s.start, end: s.end, row: row})
	if len(c.spans) >= idxChunkSpans {
		q.send()
	}
	return nil
}

// finishIndex hands over the last chunk, waits for the attribute rows and lets the index
// goroutine encode the index file; waitIndex waits for that. Without a pipeline finishIndex
// encodes it.
func (w *writer) finishIndex() error {
	q := w.idxQ
	if q == nil {
		w.idx.encode(&w.indexBuf)
		return nil
	}
	if len(q.cur.spans) > 0 {
		q.send()
	}
	q.encode = true
	close(q.work)
	close(q.attrs)
	<-q.adone
	return q.aerr
}

func (w *writer) waitIndex() {
	q := w.idxQ
	if q == nil {
		return
	}
	w.idxQ = nil
	<-q.done
	for _, c := range w.idxChunks {
		clear(c.attrs)
		clear(c.spans)
		c.attrs, c.spans = c.attrs[:0], c.spans[:0]
	}
}

func (x *indexBuilder) addSpans(c *idxChunk) {
	for i := range c.spans {
		s := &c.spans[i]
		x.addSpan(s.group, s.name, s.status, s.kind, s.start, s.end)
	}
}

// startPipeline starts the encoder and index goroutines for one block when there is a core to
// spare; stopPipeline abandons them (after an error; end finishes them).
func (w *writer) startPipeline() {
	if !pipelined() {
		return
	}
	for _, f := range w.fileWriters() {
		f.startEncoder()
	}
	w.startIndex()
}

func (w *writer) stopPipeline() {
	if q := w.idxQ; q != nil {
		close(q.work)
		close(q.attrs)
		<-q.adone
		w.waitIndex()
	}
	for _, f := range w.fileWriters() {
		f.stopEncoder()
	}
}
