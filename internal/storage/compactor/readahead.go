package compactor

import (
	"context"
	"io"
	"sync"

	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
)

// readahead reads a bucket's block files for a merge in aligned chunks, keeping the last few
// of each file: a block iterator reads a column's pages in order, a few KiB each, and one
// ranged GET per chunk instead of per page keeps the request count near size/chunk while
// memory stays at chunks × keep per open file, whatever the block's size.
type readahead struct {
	objstore.Store
	chunk int64
	keep  int
}

func (ra readahead) ReaderAt(ctx context.Context, name string) (objstore.ReaderAtCloser, int64, error) {
	r, size, err := ra.Store.ReaderAt(ctx, name)
	if err != nil {
		return nil, 0, err
	}
	return &chunkReader{r: r, size: size, chunk: ra.chunk, keep: ra.keep}, size, nil
}

type chunkReader struct {
	r     objstore.ReaderAtCloser
	size  int64
	chunk int64
	keep  int

	mu     sync.Mutex
	chunks []cachedChunk // most recently used last
}

type cachedChunk struct {
	off  int64
	data []byte
}

func (c *chunkReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= c.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && off < c.size {
		data, start, err := c.get(off)
		if err != nil {
			return n, err
		}
		k := copy(p[n:], data[off-start:])
		n += k
		off += int64(k)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// get returns the chunk holding off and where it starts.
func (c *chunkReader) get(off int64) ([]byte, int64, error) {
	start := off - off%c.chunk
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, ch := range c.chunks {
		if ch.off == start {
			c.chunks = append(append(c.chunks[:i:i], c.chunks[i+1:]...), ch)
			return ch.data, start, nil
		}
	}
	n := min(c.chunk, c.size-start)
	var data []byte
	if len(c.chunks) >= c.keep {
		data = c.chunks[0].data[:0]
		c.chunks = c.chunks[1:]
	}
	data = append(data, make([]byte, n)...)[:n]
	if _, err := c.r.ReadAt(data, start); err != nil && err != io.EOF {
		return nil, 0, err
	}
	c.chunks = append(c.chunks, cachedChunk{off: start, data: data})
	return data, start, nil
}

func (c *chunkReader) Close() error { return c.r.Close() }
