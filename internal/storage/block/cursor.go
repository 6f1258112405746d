package block

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"

	"github.com/parquet-go/parquet-go"
)

// cursor reads one column of a file forward, keeping the current page decoded, so that a scan
// touching rows in increasing order decodes each page at most once and reads each dictionary once
// per row group. Values are read in their page's typed form; nothing is boxed per row except for
// the optional and boolean columns, whose pages are small.
type cursor struct {
	p   *pfile
	col int

	rg    int
	pages parquet.Pages
	first int64 // global row of the current page's first value
	n     int64 // rows in the current page; 0 when there is none

	i64  []int64
	i32  []int32 // int32 values, or dictionary indexes when dict is set
	data []byte  // byte arrays: values, and offs their bounds
	offs []uint32
	vals []parquet.Value // other columns, one per row

	dict    parquet.Dictionary
	dictStr []string // strings of dict, converted on first use
	dictOK  []bool
	// dictIn caches, per dictionary entry, whether it is in the set last given to strIn:
	// 0 unknown, 1 in, 2 out.
	dictIn []uint8
	// pageBytes adds up the compressed size of the pages decoded, for search's inspected bytes.
	pageBytes int64

	// Integer columns go through the shared page cache (pagecache.go): pageFirst are the first
	// rows (global) of the current row group's pages; shared says i64/i32 belong to the cache
	// and must not be written; stale says pages is not positioned after the current page.
	pageFirst []int64
	shared    bool
	stale     bool
	noFill    bool // pages read are not added to the cache (ScanOptions.NoCacheFill)
}

func (c *cursor) cacheable() bool {
	k := c.p.fs.cols[c.col].kind
	return k == kDelta || k == kInt64 || k == kInt32
}

func newCursor(p *pfile, col int) *cursor { return &cursor{p: p, col: col, rg: -1} }

func (c *cursor) close() {
	if c.pages != nil {
		c.pages.Close()
		c.pages = nil
	}
}

// at makes row's page current and returns row's index in it.
func (c *cursor) at(row int64) (int, error) {
	if c.n > 0 && row >= c.first && row < c.first+c.n {
		return int(row - c.first), nil
	}
	if row < 0 || row >= c.p.rows {
		return 0, fmt.Errorf("%s: row %d out of range [0,%d)", c.p.name, row, c.p.rows)
	}
	rg := sort.Search(len(c.p.rgFirst), func(i int) bool { return c.p.rgFirst[i] > row }) - 1
	next := c.n > 0 && rg == c.rg && row == c.first+c.n && !c.stale
	cache := c.cacheable()
	if rg != c.rg {
		c.close()
		chunk := c.p.f.RowGroups()[rg].ColumnChunks()[c.p.fs.leaf[c.col]]
		c.pages = chunk.Pages()
		c.rg = rg
		c.dict = nil
		c.pageFirst = c.pageFirst[:0]
		if cache {
			if oi, err := chunk.OffsetIndex(); err == nil {
				for p := range oi.NumPages() {
					c.pageFirst = append(c.pageFirst, c.p.rgFirst[rg]+oi.FirstRowIndex(p))
				}
			}
		}
	}
	key := pageKey{c.p, c.col, rg, -1}
	first := row
	if cache && len(c.pageFirst) > 0 {
		key.page = sort.Search(len(c.pageFirst), func(i int) bool { return c.pageFirst[i] > row }) - 1
		if e := pages.get(key); e != nil {
			c.first, c.shared, c.stale = e.first, true, true
			c.i64, c.i32 = e.i64, e.i32
			c.n = int64(len(e.i64) + len(e.i32))
			return int(row - c.first), nil
		}
		// Whole pages only, so that a cached page serves every row of it.
		first = c.pageFirst[key.page]
		next = next && first == c.first+c.n
	}
	if next {
		first = c.first + c.n
	} else if err := c.pages.SeekToRow(first - c.p.rgFirst[rg]); err != nil {
		return 0, c.fail(fmt.Errorf("seek to row %d: %w", first, err))
	}
	c.stale = false
	page, err := c.pages.ReadPage()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, c.fail(err)
	}
	c.first, c.n = first, page.NumRows()
	if err := c.load(page); err != nil {
		return 0, c.fail(err)
	}
	if c.n == 0 {
		return 0, c.fail(errors.New("empty page"))
	}
	if key.page >= 0 && !c.noFill && int64(len(c.i64)+len(c.i32)) == c.n {
		pages.put(&pageEntry{key: key, first: c.first, i64: slices.Clone(c.i64), i32: slices.Clone(c.i32)})
	}
	return int(row - c.first), nil
}

func (c *cursor) fail(err error) error {
	c.n = 0
	return fmt.Errorf("%s: column %s: %w", c.p.name, c.p.fs.cols[c.col].name, err)
}

func (c *cursor) load(page parquet.Page) error {
	c.pageBytes += page.Size()
	if c.shared {
		c.i64, c.i32, c.shared = nil, nil, false
	}
	kind := c.p.fs.cols[c.col].kind
	data := page.Data()
	switch {
	case kind == kDelta || kind == kInt64:
		c.i64 = append(c.i64[:0], data.Int64()...)
	case kind == kInt32:
		c.i32 = append(c.i32[:0], data.Int32()...)
	case kind == kDict && page.Dictionary() != nil:
		if d := page.Dictionary(); d != c.dict {
			c.dict = d
			c.dictStr = append(c.dictStr[:0], make([]string, d.Len())...)
			c.dictOK = append(c.dictOK[:0], make([]bool, d.Len())...)
			c.dictIn = append(c.dictIn[:0], make([]uint8, d.Len())...)
		}
		c.i32 = append(c.i32[:0], data.Int32()...)
	case kind == kID16:
		fixed, _ := data.FixedLenByteArray()
		c.data = append(c.data[:0], fixed...)
	case kind == kDict || kind == kBytes || kind == kRandom:
		c.dict = nil
		values, offs := data.ByteArray()
		c.data = append(c.data[:0], values...)
		c.offs = append(c.offs[:0], offs...)
	default:
		c.vals = slicesGrow(c.vals, int(c.n))
		vr := page.Values()
		for got := 0; got < int(c.n); {
			m, err := vr.ReadValues(c.vals[got:])
			got += m
			if errors.Is(err, io.EOF) || (err == nil && m == 0) {
				if got < int(c.n) {
					return io.ErrUnexpectedEOF
				}
				break
			}
			if err != nil {
				return err
			}
		}
		// Values of byte-array columns point into the page; keep the page alive rather than copy.
		return nil
	}
	parquet.Release(page)
	return nil
}

func slicesGrow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func (c *cursor) int64At(row int64) (int64, error) {
	i, err := c.at(row)
	if err != nil {
		return 0, err
	}
	return c.i64[i], nil
}

func (c *cursor) int32At(row int64) (int32, error) {
	i, err := c.at(row)
	if err != nil {
		return 0, err
	}
	return c.i32[i], nil
}

// bytesAt returns a byte-array value; it points into the page and is valid until the cursor
// moves to another page.
func (c *cursor) bytesAt(row int64) ([]byte, error) {
	i, err := c.at(row)
	if err != nil {
		return nil, err
	}
	if c.dict != nil {
		return c.dict.Index(c.i32[i]).ByteArray(), nil
	}
	return c.data[c.offs[i]:c.offs[i+1]], nil
}

// strAt returns a string value; dictionary values are converted once per row group.
func (c *cursor) strAt(row int64) (string, error) {
	i, err := c.at(row)
	if err != nil {
		return "", err
	}
	if c.dict != nil {
		k := c.i32[i]
		if !c.dictOK[k] {
			c.dictStr[k] = string(c.dict.Index(k).ByteArray())
			c.dictOK[k] = true
		}
		return c.dictStr[k], nil
	}
	return string(c.data[c.offs[i]:c.offs[i+1]]), nil
}

func (c *cursor) valueAt(row int64) (parquet.Value, error) {
	i, err := c.at(row)
	if err != nil {
		return parquet.Value{}, err
	}
	return c.vals[i], nil
}

// id16At returns a 16-byte value of a FIXED_LEN_BYTE_ARRAY(16) column.
func (c *cursor) id16At(row int64) ([16]byte, error) {
	i, err := c.at(row)
	if err != nil {
		return [16]byte{}, err
	}
	return [16]byte(c.data[i*16 : i*16+16]), nil
}

// strIn reports whether a string value is in set. On dictionary pages the answer is worked out
// once per dictionary entry, which makes a key filter over millions of attribute rows a table
// lookup per row. The caller passes the same set for the cursor's whole life.
func (c *cursor) strIn(row int64, set map[string]bool) (bool, error) {
	i, err := c.at(row)
	if err != nil {
		return false, err
	}
	if c.dict != nil {
		k := c.i32[i]
		switch c.dictIn[k] {
		case 1:
			return true, nil
		case 2:
			return false, nil
		}
		in := set[string(c.dict.Index(k).ByteArray())]
		c.dictIn[k] = 2
		if in {
			c.dictIn[k] = 1
		}
		return in, nil
	}
	return set[string(c.data[c.offs[i]:c.offs[i+1]])], nil
}
