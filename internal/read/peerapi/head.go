package peerapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ariadne-tracing/ariadne/internal/storage/head"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// HeadPath is the route of head transfers:
//
//	GET /internal/v1/head?since=<unix nanos>   200 with the node's head traces (live and waiting
//	                                            for a block) as a stream of OTLP TracesData
//	                                            resource_spans records; parts that ended before
//	                                            since are left out
//
// A query node reads every ingest node's head this way into one head of its own, per search,
// so that search, tag discovery and TraceQL metrics see data not yet in the bucket, and a trace
// with parts on several nodes, or in a node and in the bucket, is one trace there (judged whole
// as on one node). The head is small by design (seconds to block_max_wait of data).
const HeadPath = "/internal/v1/head"

// HeadHandler serves the head h returns for the request (its tenant's).
func HeadHandler(heads func(r *http.Request) (*head.Head, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var since int64
		if v := r.URL.Query().Get("since"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				http.Error(w, fmt.Sprintf("bad since %q: want unix nanoseconds", v), http.StatusBadRequest)
				return
			}
			since = n
		}
		h, err := heads(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/protobuf")
		bw := bufio.NewWriterSize(w, 64<<10)
		if err := EncodeHead(h, since, func(rec []byte) error { _, err := bw.Write(rec); return err }); err != nil {
			return // the client sees a truncated record and reports it
		}
		bw.Flush()
	})
}

// chunkBytes is about how much span data one resource_spans record carries: large enough that
// a resource is written once per many spans, small enough that neither side holds much extra.
const chunkBytes = 1 << 20

// headPart is one head trace's spans, copied under the head's lock. The span bytes are shared:
// the head only ever appends to a trace's buffer.
type headPart struct {
	groups []*otlpwire.Group
	raws   [][]byte
}

// EncodeHead writes h's traces that ended at or after since (0: all) as TracesData
// resource_spans records, one call of emit per record. Spans are grouped by resource and scope
// within chunks of about chunkBytes, and a trace's spans stay together in each group.
func EncodeHead(h *head.Head, since int64, emit func(rec []byte) error) error {
	var parts []headPart
	h.Each(func(t *head.Trace) bool {
		if since > 0 && int64(t.End) < since {
			return true
		}
		var p headPart
		t.Spans(func(g *otlpwire.Group, raw []byte) {
			p.groups = append(p.groups, g)
			p.raws = append(p.raws, raw)
		})
		parts = append(parts, p)
		return true
	})
	var (
		order []*otlpwire.Group
		spans = map[*otlpwire.Group][][]byte{}
		size  int
		rec   []byte
	)
	flush := func() error {
		for _, g := range order {
			rec = appendResourceSpans(rec[:0], g, spans[g])
			if err := emit(rec); err != nil {
				return err
			}
		}
		order, size = order[:0], 0
		clear(spans)
		return nil
	}
	for _, p := range parts {
		for i, raw := range p.raws {
			g := p.groups[i]
			if _, ok := spans[g]; !ok {
				order = append(order, g)
			}
			spans[g] = append(spans[g], raw)
			size += len(raw)
		}
		if size >= chunkBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// OTLP field numbers (opentelemetry/proto/trace/v1/trace.proto).
const (
	fieldTracesDataResourceSpans = 1
	fieldRSResource              = 1
	fieldRSScopeSpans            = 2
	fieldRSSchemaURL             = 3
	fieldSSScope                 = 1
	fieldSSSpans                 = 2
	fieldSSSchemaURL             = 3
)

// appendResourceSpans appends one TracesData resource_spans record (tag, length, message) of
// the spans raws, all of group g.
func appendResourceSpans(b []byte, g *otlpwire.Group, raws [][]byte) []byte {
	ssLen := 0
	if g.Scope != nil {
		ssLen += bytesFieldLen(fieldSSScope, len(g.Scope))
	}
	for _, r := range raws {
		ssLen += bytesFieldLen(fieldSSSpans, len(r))
	}
	if len(g.ScopeSchemaURL) > 0 {
		ssLen += bytesFieldLen(fieldSSSchemaURL, len(g.ScopeSchemaURL))
	}
	rsLen := bytesFieldLen(fieldRSScopeSpans, ssLen)
	if g.Resource != nil {
		rsLen += bytesFieldLen(fieldRSResource, len(g.Resource))
	}
	if len(g.ResourceSchemaURL) > 0 {
		rsLen += bytesFieldLen(fieldRSSchemaURL, len(g.ResourceSchemaURL))
	}
	b = protowire.AppendTag(b, fieldTracesDataResourceSpans, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(rsLen))
	if g.Resource != nil {
		b = protowire.AppendTag(b, fieldRSResource, protowire.BytesType)
		b = protowire.AppendBytes(b, g.Resource)
	}
	b = protowire.AppendTag(b, fieldRSScopeSpans, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(ssLen))
	if g.Scope != nil {
		b = protowire.AppendTag(b, fieldSSScope, protowire.BytesType)
		b = protowire.AppendBytes(b, g.Scope)
	}
	for _, r := range raws {
		b = protowire.AppendTag(b, fieldSSSpans, protowire.BytesType)
		b = protowire.AppendBytes(b, r)
	}
	if len(g.ScopeSchemaURL) > 0 {
		b = protowire.AppendTag(b, fieldSSSchemaURL, protowire.BytesType)
		b = protowire.AppendBytes(b, g.ScopeSchemaURL)
	}
	if len(g.ResourceSchemaURL) > 0 {
		b = protowire.AppendTag(b, fieldRSSchemaURL, protowire.BytesType)
		b = protowire.AppendBytes(b, g.ResourceSchemaURL)
	}
	return b
}

func bytesFieldLen(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

// maxRecordBytes bounds one record read from a peer: a chunk is about chunkBytes, plus a
// single span that may be larger (a span is at most the ingest request size).
const maxRecordBytes = 256 << 20

// ReadHead adds the records of a head stream to dst. The records are decoded one at a time, so
// the reader holds one record beside what dst keeps.
func ReadHead(r io.Reader, dst *head.Head) error {
	br := bufio.NewReaderSize(r, 64<<10)
	app := dst.Appender(0)
	defer app.Commit()
	var buf []byte
	for {
		tag, err := readUvarint(br)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read head: %w", err)
		}
		if num, typ := protowire.DecodeTag(tag); num != fieldTracesDataResourceSpans || typ != protowire.BytesType {
			return fmt.Errorf("read head: unexpected field %d type %d", num, typ)
		}
		n, err := readUvarint(br)
		if err != nil {
			return fmt.Errorf("read head: %w", noEOF(err))
		}
		if n > maxRecordBytes {
			return fmt.Errorf("read head: record of %d bytes", n)
		}
		buf = protowire.AppendTag(buf[:0], fieldTracesDataResourceSpans, protowire.BytesType)
		buf = protowire.AppendVarint(buf, n)
		start := len(buf)
		buf = append(buf, make([]byte, n)...)
		if _, err := io.ReadFull(br, buf[start:]); err != nil {
			return fmt.Errorf("read head: %w", noEOF(err))
		}
		if err := addRecord(app, buf); err != nil {
			return err
		}
	}
}

// addRecord appends a record's spans and commits them: the head copies span bytes and groups
// at Commit, so buf may be reused afterwards.
func addRecord(app *head.Appender, rec []byte) error {
	err := otlpwire.ScanRequest(rec, func(g *otlpwire.Group, s *otlpwire.Span) error {
		if len(s.TraceID) != 16 {
			return fmt.Errorf("span with a %d-byte trace ID", len(s.TraceID))
		}
		app.Append(g, s)
		return nil
	})
	app.Commit()
	if err != nil {
		return fmt.Errorf("read head: %w", err)
	}
	return nil
}

// CopyHead adds src's traces that ended at or after since to dst, as if read from a peer.
func CopyHead(dst, src *head.Head, since int64) error {
	app := dst.Appender(0)
	return EncodeHead(src, since, func(rec []byte) error { return addRecord(app, rec) })
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readUvarint reads a protobuf varint.
func readUvarint(r io.ByteReader) (uint64, error) {
	var x uint64
	for i := 0; i < 10; i++ {
		c, err := r.ReadByte()
		if err != nil {
			if i > 0 {
				return 0, noEOF(err)
			}
			return 0, err
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return x, nil
		}
	}
	return 0, errors.New("varint overflows 64 bits")
}

// Heads reads every peer's head (traces that ended at or after since) into dst, in parallel.
// A peer that cannot be reached, or whose stream breaks, is reported in the error (joined);
// what the others sent is in dst either way.
func (c *Client) Heads(ctx context.Context, tenant string, since int64, dst *head.Head) error {
	peers, perr := c.Peers(ctx)
	var (
		mu   sync.Mutex
		errs = []error{perr}
		wg   sync.WaitGroup
	)
	for _, p := range peers {
		wg.Go(func() {
			if err := c.readHead(ctx, p, tenant, since, dst); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *Client) readHead(ctx context.Context, peer, tenant string, since int64, dst *head.Head) error {
	resp, err := c.get(ctx, peer, tenant, HeadPath+"?since="+strconv.FormatInt(since, 10))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return statusError(peer, resp)
	}
	if err := ReadHead(resp.Body, dst); err != nil {
		return fmt.Errorf("peer %s: %w", peer, err)
	}
	return nil
}
