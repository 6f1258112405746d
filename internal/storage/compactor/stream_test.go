package compactor_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/compactor"
	"github.com/ariadne-tracing/ariadne/internal/storage/s3store"
	"github.com/ariadne-tracing/ariadne/internal/testkit/miniotest"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// partBytes is the multipart part size the test lowers the upload budget to: S3's least.
const partBytes = 5 << 20

// randomBlock writes a block of n traces of 10 spans, each span carrying an attribute of 768
// random bytes in hex (1.5 KiB, of which zstd keeps about half: the writer's level for such
// values finds the hex alphabet), so a few thousand spans make files larger than a part.
// Trace IDs come from traceSeed, span IDs from spanSeed.
func randomBlock(t *testing.T, st *s3store.Store, n int, traceSeed, spanSeed uint64) (block.Meta, map[[16]byte][]string) {
	t.Helper()
	g := &otlpwire.Group{Resource: mustMarshal(t, &commonpb.InstrumentationScope{}), ServiceName: []byte("svc")}
	want := map[[16]byte][]string{}
	var traces []block.Trace
	now := uint64(time.Now().UnixNano())
	for i := 0; i < n; i++ {
		var tid [16]byte
		binary.BigEndian.PutUint64(tid[:8], uint64(i)+1)
		binary.BigEndian.PutUint64(tid[8:], traceSeed)
		tr := block.Trace{ID: tid}
		for s := 0; s < 10; s++ {
			sid := make([]byte, 8)
			binary.BigEndian.PutUint64(sid, spanSeed<<40|uint64(i*10+s+1))
			junk := make([]byte, 768)
			rand.Read(junk)
			raw := mustMarshal(t, &tracepb.Span{TraceId: tid[:], SpanId: sid, Name: "op", StartTimeUnixNano: now, EndTimeUnixNano: now + 1000,
				Attributes: []*commonpb.KeyValue{{Key: "junk", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: hex.EncodeToString(junk)}}}}})
			tr.Spans = append(tr.Spans, block.Span{Group: g, Raw: raw})
			want[tid] = append(want[tid], hex.EncodeToString(sid))
		}
		traces = append(traces, tr)
	}
	meta, err := block.Write(context.Background(), st, traces, block.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return meta, want
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A merge of blocks larger than the upload part (the memory an upload holds) streams: the
// inputs are read once, in ranged GETs, and the merged files larger than a part go up as
// multipart uploads from scratch files; the merged block holds every span of every input,
// and a trace present in two inputs comes out once, whole.
func TestMergeStreamsBlocksLargerThanItsBuffers(t *testing.T) {
	ctx := context.Background()
	srv := miniotest.Start(t)
	root, err := s3store.New(s3store.Config{Endpoint: srv.Endpoint, Bucket: "compact", Prefix: "ariadne", Insecure: true,
		AccessKey: miniotest.AccessKey, SecretKey: miniotest.SecretKey, PartBytes: partBytes})
	if err != nil {
		t.Fatal(err)
	}
	if err := root.EnsureBucket(ctx, ""); err != nil {
		t.Fatal(err)
	}
	st := root.Sub(tenant)
	want := map[[16]byte][]string{}
	var inputBytes int64
	// The third block holds other spans of the first block's traces: split traces, merged whole.
	for _, seeds := range [][2]uint64{{1, 1}, {2, 2}, {1, 3}} {
		m, w := randomBlock(t, st, 400, seeds[0], seeds[1])
		for id, sids := range w {
			want[id] = append(want[id], sids...)
		}
		inputBytes += m.Bytes
	}
	if inputBytes < 2*partBytes {
		t.Fatalf("inputs are %d bytes; the test needs them well over a part (%d)", inputBytes, partBytes)
	}
	before := root.Stats()
	c := newCompactor(t, root, "a", compactor.Options{MinBlocks: 2, TargetBytes: 1 << 30, DeleteGrace: time.Hour})
	if err := c.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	after := root.Stats()
	if s := c.Stats(); s.Compactions != 1 || s.BlocksMerged != 3 {
		t.Fatalf("compactor %+v: want one merge of the 3 blocks", s)
	}
	if after.MultipartUploads == before.MultipartUploads {
		t.Errorf("no multipart upload for a merged block of about %d bytes (part %d)", inputBytes, partBytes)
	}
	if read := after.BytesRead - before.BytesRead; read > inputBytes+inputBytes/2 {
		t.Errorf("the merge read %d bytes of %d bytes of inputs: inputs read more than once", read, inputBytes)
	}
	t.Logf("merged %d input bytes: %d GETs, %d bytes read, %d multipart uploads, %d bytes written",
		inputBytes, after.Gets-before.Gets, after.BytesRead-before.BytesRead, after.MultipartUploads-before.MultipartUploads,
		after.BytesWritten-before.BytesWritten)

	set := newSet(t, st)
	if err := set.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	blocks := set.Blocks()
	total := 0
	for _, sids := range want {
		total += len(sids)
	}
	if len(blocks) != 1 || blocks[0].Meta().Spans != int64(total) {
		t.Fatalf("query view: %d blocks; want the merged block with all %d spans", len(blocks), total)
	}
	n := 0
	for id, sids := range want {
		if n++; n%37 != 0 {
			continue
		}
		rss, err := blocks[0].FindTrace(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, rs := range rss {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					got[hex.EncodeToString(sp.SpanId)] = true
				}
			}
		}
		for _, sid := range sids {
			if !got[sid] {
				t.Fatalf("trace %x: span %s missing after the merge (%d of %d found)", id, sid, len(got), len(sids))
			}
		}
		if len(got) != len(sids) {
			t.Fatalf("trace %x: %d spans, want %d", id, len(got), len(sids))
		}
	}
}
