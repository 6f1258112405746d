// Package blockindex is the per-tenant list of blocks in the bucket, and the deletion marks
// that make removing a block safe while other nodes may be reading it.
//
// Layout below a tenant's prefix:
//
//	index.json.gz                 the index, written by the tenant's compactor (lease holder)
//	blocks/<id>/...               a block's files, meta.json last (objstore, block)
//	blocks/<id>/deletion-mark.json  the block is being deleted: no new query opens it, and it
//	                              is removed once the grace period has passed
//
// Query nodes poll the index with If-None-Match, so an unchanged index costs one request and no
// body, and list only the block names that sort after the index's newest block (block IDs sort
// by creation time), which finds blocks uploaded since. Without an index (no compactor has run
// yet) they list everything.
package blockindex

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
)

// Name is the index object's name below the tenant's prefix.
const Name = "index.json.gz"

// MarkFile is the deletion mark's name inside a block's folder.
const MarkFile = "deletion-mark.json"

// Index is what a compactor last saw of a tenant's blocks.
type Index struct {
	Written time.Time            `json:"written"`
	Blocks  []block.Meta         `json:"blocks"` // live blocks, sorted by ID
	Marked  map[string]time.Time `json:"marked"` // blocks marked for deletion, and when
}

// Encode returns the index as stored: gzip'd JSON (metas compress about tenfold).
func (ix *Index) Encode() ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(ix); err != nil {
		return nil, fmt.Errorf("blockindex: encode: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("blockindex: encode: %w", err)
	}
	return buf.Bytes(), nil
}

// Decode reads an index written by Encode.
func Decode(r io.Reader) (*Index, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("blockindex: decode: %w", err)
	}
	var ix Index
	if err := json.NewDecoder(zr).Decode(&ix); err != nil {
		return nil, fmt.Errorf("blockindex: decode: %w", err)
	}
	return &ix, nil
}

// Folder is one block folder as a listing sees it.
type Folder struct {
	ID       string
	Complete bool     // meta.json present
	Marked   bool     // deletion mark present
	Files    []string // every object in the folder
}

// Scan groups a listing of names below blocks/ into folders, sorted by ID.
func Scan(names []string) []Folder {
	var out []Folder
	idx := map[string]int{}
	for _, n := range names {
		id, file, ok := strings.Cut(strings.TrimPrefix(n, block.Prefix), "/")
		if !ok || !strings.HasPrefix(n, block.Prefix) {
			continue
		}
		i, seen := idx[id]
		if !seen {
			i = len(out)
			idx[id] = i
			out = append(out, Folder{ID: id})
		}
		f := &out[i]
		f.Files = append(f.Files, n)
		switch file {
		case "meta.json":
			f.Complete = true
		case MarkFile:
			f.Marked = true
		}
	}
	slices.SortFunc(out, func(a, b Folder) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// ReadMeta reads a block's meta.json.
func ReadMeta(ctx context.Context, st objstore.Store, id string) (block.Meta, error) {
	rc, err := st.Get(ctx, block.Prefix+id+"/meta.json")
	if err != nil {
		return block.Meta{}, err
	}
	defer rc.Close()
	var m block.Meta
	if err := json.NewDecoder(rc).Decode(&m); err != nil {
		return block.Meta{}, fmt.Errorf("block %s: decode meta: %w", id, err)
	}
	return m, nil
}

// Mark writes a block's deletion mark.
func Mark(ctx context.Context, st objstore.Store, id string, at time.Time) error {
	b, _ := json.Marshal(map[string]time.Time{"marked": at.UTC()})
	if err := st.Put(ctx, block.Prefix+id+"/"+MarkFile, bytes.NewReader(b)); err != nil {
		return fmt.Errorf("blockindex: mark %s: %w", id, err)
	}
	return nil
}

// MarkedAt reads when a block was marked.
func MarkedAt(ctx context.Context, st objstore.Store, id string) (time.Time, error) {
	rc, err := st.Get(ctx, block.Prefix+id+"/"+MarkFile)
	if err != nil {
		return time.Time{}, err
	}
	defer rc.Close()
	var m map[string]time.Time
	if err := json.NewDecoder(rc).Decode(&m); err != nil {
		return time.Time{}, fmt.Errorf("blockindex: mark of %s: %w", id, err)
	}
	return m["marked"], nil
}

// DeleteFolder removes every object of a block folder, meta.json first, so that a crash
// part-way leaves an incomplete folder that readers ignore, never a complete-looking block with
// files missing.
func DeleteFolder(ctx context.Context, st objstore.Store, f Folder) error {
	files := slices.Clone(f.Files)
	slices.SortStableFunc(files, func(a, b string) int {
		am, bm := strings.HasSuffix(a, "/meta.json"), strings.HasSuffix(b, "/meta.json")
		switch {
		case am && !bm:
			return -1
		case bm && !am:
			return 1
		}
		return 0
	})
	var errs []error
	for _, n := range files {
		if err := st.Delete(ctx, n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// IDAt returns the smallest block ID created at t: a listing that starts after it sees every
// block created at or after t.
func IDAt(t time.Time) string {
	// The first 10 of block.NewID's 26 characters encode the millisecond timestamp (48 bits).
	const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(max(t.UnixMilli(), 0)))
	ms := binary.BigEndian.Uint64(b[:])
	var out [10]byte
	for i := 9; i >= 0; i-- {
		out[i] = crockford[ms&31]
		ms >>= 5
	}
	return string(out[:])
}
