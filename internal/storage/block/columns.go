package block

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/encoding"
)

// Whole-column reads, a row group at a time: for readers that look at every row of a few
// columns (compare counts attribute values over millions of spans) and would pay more for a
// cursor's per-row call or a Go value per row than for the counting itself. A string column
// comes back as dictionary indexes, so a caller counts indexes and turns into strings only the
// entries it reports.

// ColumnFile names a file of the block for Columns.
type ColumnFile int

// Files Columns can read.
const (
	FileTraces     ColumnFile = iota + 1 // trace_id, start_unix_nano, span_row, ...
	FileSpans                            // name, duration_nano, start_offset, kind, status, group, ...
	FileSpanAttrs                        // owner (span row), key, type, str, int, double, bool, raw
	FileEvents                           // span (span row), name, time_offset, ...
	FileEventAttrs                       // owner (event row), key, type, ...
)

// ColumnReader reads whole columns of one block file. Values are appended to slices the caller
// passes, so that a caller reading many blocks reuses its buffers rather than growing new ones
// for every row group. It is not safe for concurrent use; make one per goroutine.
type ColumnReader struct {
	r *Reader
	p *pfile
	// bytes adds up the sizes of the pages read.
	bytes int64
}

// Bytes is how many bytes of decoded pages the reader has read.
func (c *ColumnReader) Bytes() int64 { return c.bytes }

// Columns returns a reader of whole columns of file f.
func (r *Reader) Columns(f ColumnFile) *ColumnReader {
	var p *pfile
	switch f {
	case FileTraces:
		p = r.traces
	case FileSpans:
		p = r.spans
	case FileSpanAttrs:
		p = r.attrs
	case FileEvents:
		p = r.events
	case FileEventAttrs:
		p = r.eventAttrs
	}
	return &ColumnReader{r: r, p: p}
}

// RowGroups is how many row groups the file has.
func (c *ColumnReader) RowGroups() int { return len(c.p.rgFirst) }

// RowGroupRows returns the file row of row group rg's first row and its number of rows.
func (c *ColumnReader) RowGroupRows(rg int) (first, n int64) {
	return c.p.rgFirst[rg], c.p.f.RowGroups()[rg].NumRows()
}

// Rows is how many rows the file has.
func (c *ColumnReader) Rows() int64 { return c.p.rows }

// col finds a column by its name in the file's schema.
func (c *ColumnReader) col(name string) (int, error) {
	for i, d := range c.p.fs.cols {
		if d.name == name {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%s: no column %q", c.p.name, name)
}

// pages calls fn with each page of column name in row group rg, in order.
func (c *ColumnReader) pages(rg int, name string, fn func(col int, kind colKind, page parquet.Page) error) (int, error) {
	col, err := c.col(name)
	if err != nil {
		return 0, err
	}
	kind := c.p.fs.cols[col].kind
	pages := c.p.f.RowGroups()[rg].ColumnChunks()[c.p.fs.leaf[col]].Pages()
	defer pages.Close()
	want := c.p.f.RowGroups()[rg].NumRows()
	var got int64
	for got < want {
		page, err := pages.ReadPage()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return col, c.r.wrap(fmt.Errorf("%s: column %s: %w", c.p.name, name, err))
		}
		got += page.NumRows()
		c.bytes += page.Size()
		err = fn(col, kind, page)
		if err != nil {
			return col, c.r.wrap(fmt.Errorf("%s: column %s: %w", c.p.name, name, err))
		}
	}
	return col, nil
}

// Int64s appends an integer column (start_unix_nano, span_row, duration_nano, start_offset,
// status, owner, span, int, ...) of row group rg to dst.
func (c *ColumnReader) Int64s(rg int, name string, dst []int64) ([]int64, error) {
	dst = slices.Grow(dst, c.rgRows(rg))
	_, err := c.pages(rg, name, func(col int, kind colKind, page parquet.Page) error {
		if kind != kDelta && kind != kInt64 {
			return errors.New("not an int64 column")
		}
		dst = append(dst, pageData(page).Int64()...)
		parquet.Release(page)
		return nil
	})
	return dst, err
}

func (c *ColumnReader) rgRows(rg int) int { return int(c.p.f.RowGroups()[rg].NumRows()) }

// Int32s appends an enum or count column (kind, group, type, ...) of row group rg to dst.
func (c *ColumnReader) Int32s(rg int, name string, dst []int32) ([]int32, error) {
	dst = slices.Grow(dst, c.rgRows(rg))
	_, err := c.pages(rg, name, func(col int, kind colKind, page parquet.Page) error {
		if kind != kInt32 {
			return errors.New("not an int32 column")
		}
		dst = append(dst, pageData(page).Int32()...)
		parquet.Release(page)
		return nil
	})
	return dst, err
}

// Doubles appends the double column of an attributes file to dst; rows of other types are 0.
func (c *ColumnReader) Doubles(rg int, name string, dst []float64) ([]float64, error) {
	dst = slices.Grow(dst, c.rgRows(rg))
	_, err := c.pages(rg, name, func(col int, kind colKind, page parquet.Page) error {
		if kind != kDouble {
			return errors.New("not a double column")
		}
		vals := pageData(page).Double()
		levels := page.DefinitionLevels()
		if len(levels) == 0 {
			dst = append(dst, vals...)
		} else {
			for _, l := range levels {
				var v float64
				if l > 0 && len(vals) > 0 {
					v, vals = vals[0], vals[1:]
				}
				dst = append(dst, v)
			}
		}
		parquet.Release(page)
		return nil
	})
	return dst, err
}

// Bools appends a boolean column of row group rg to dst.
func (c *ColumnReader) Bools(rg int, name string, dst []bool) ([]bool, error) {
	dst = slices.Grow(dst, c.rgRows(rg))
	_, err := c.pages(rg, name, func(col int, kind colKind, page parquet.Page) error {
		if kind != kBool {
			return errors.New("not a boolean column")
		}
		packed := pageData(page).Boolean()
		for i := range int(page.NumValues()) {
			dst = append(dst, packed[i/8]&(1<<(i%8)) != 0)
		}
		parquet.Release(page)
		return nil
	})
	return dst, err
}

// StringColumn is a string column of one row group: row i's value is entry Index[i]. Entries
// below Dict are the row group's dictionary, one per distinct value; the writer stops adding to
// a dictionary past a size cap and writes the rest of the row group plainly, one entry per row,
// so past Dict an entry may repeat an earlier one.
type StringColumn struct {
	Index []int32
	Dict  int32
	dict  parquet.Dictionary
	// plain values: entry Dict+k is data[offs[k]:offs[k+1]].
	data []byte
	offs []uint32
}

// Forget drops the column's reference to its row group's dictionary, keeping its buffers, so
// that a StringColumn kept for reuse does not keep a closed block's pages alive.
func (s *StringColumn) Forget() {
	s.Index, s.Dict, s.dict, s.data, s.offs = s.Index[:0], 0, nil, s.data[:0], s.offs[:0]
}

// Entries is how many entries the column has.
func (s *StringColumn) Entries() int { return int(s.Dict) + max(len(s.offs)-1, 0) }

// Bytes returns entry e; it points into the reader's buffers.
func (s *StringColumn) Bytes(e int32) []byte {
	if e < s.Dict {
		return s.dict.Index(e).ByteArray()
	}
	k := e - s.Dict
	return s.data[s.offs[k]:s.offs[k+1]]
}

// String returns entry e as a string, invalid UTF-8 replaced as every other read does.
func (s *StringColumn) String(e int32) string { return validString(s.Bytes(e)) }

// Strings reads a string column (name, key, str, ...) of row group rg as entries into s,
// reusing its buffers.
func (c *ColumnReader) Strings(rg int, name string, s *StringColumn) error {
	s.Index, s.Dict, s.dict, s.data, s.offs = slices.Grow(s.Index[:0], c.rgRows(rg)), 0, nil, s.data[:0], s.offs[:0]
	_, err := c.pages(rg, name, func(_ int, kind colKind, page parquet.Page) error {
		if kind != kDict && kind != kBytes && kind != kRandom {
			return errors.New("not a string column")
		}
		data := page.Data()
		if d := page.Dictionary(); d != nil {
			if s.dict == nil {
				s.dict, s.Dict = d, int32(d.Len())
			}
			if s.dict != d || len(s.offs) > 0 {
				return errors.New("a second dictionary in one row group")
			}
			s.Index = append(s.Index, data.Int32()...)
			// The dictionary outlives the page: it belongs to the row group's chunk.
			parquet.Release(page)
			return nil
		}
		values, offs := data.ByteArray()
		if len(offs) == 0 {
			parquet.Release(page)
			return nil
		}
		if len(s.offs) == 0 {
			s.offs = append(s.offs, 0)
		}
		base := uint32(len(s.data))
		s.data = append(s.data, values...)
		next := s.Dict + int32(len(s.offs)-1)
		for k := 1; k < len(offs); k++ {
			s.offs = append(s.offs, base+offs[k]-offs[0])
			s.Index = append(s.Index, next)
			next++
		}
		parquet.Release(page)
		return nil
	})
	return err
}

// IDs16 appends a 16-byte column (trace_id) of row group rg to dst: value i is
// dst[16*i : 16*i+16].
func (c *ColumnReader) IDs16(rg int, name string, dst []byte) ([]byte, error) {
	dst = slices.Grow(dst, 16*c.rgRows(rg))
	_, err := c.pages(rg, name, func(_ int, kind colKind, page parquet.Page) error {
		if kind != kID16 {
			return errors.New("not a 16-byte column")
		}
		fixed, _ := pageData(page).FixedLenByteArray()
		dst = append(dst, fixed...)
		parquet.Release(page)
		return nil
	})
	return dst, err
}

// StatusCode is the OTLP status code of a spans.parquet status value (0 when the span has no
// status).
func StatusCode(v int64) int32 {
	_, code := statusFromValue(v)
	return code
}

func pageData(page parquet.Page) *encoding.Values {
	d := page.Data()
	return &d
}
