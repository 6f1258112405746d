package s3store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
	"github.com/ariadne-tracing/ariadne/internal/storage/s3store"
	"github.com/ariadne-tracing/ariadne/internal/testkit/miniotest"
)

func open(t *testing.T) (*s3store.Store, *miniotest.Server) {
	t.Helper()
	srv := miniotest.Start(t)
	s, err := s3store.New(s3store.Config{Endpoint: srv.Endpoint, Bucket: "test", Prefix: "ariadne", Insecure: true,
		AccessKey: miniotest.AccessKey, SecretKey: miniotest.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureBucket(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	return s, srv
}

func get(t *testing.T, s objstore.Store, name string) string {
	t.Helper()
	rc, err := s.Get(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStoreContract(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	if err := s.Put(ctx, "blocks/01A/meta.json", strings.NewReader("meta")); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789"), 1000)
	if err := s.Put(ctx, "blocks/01A/spans.parquet", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "blocks/01B/meta.json", strings.NewReader("b")); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, "blocks/01A/meta.json"); got != "meta" {
		t.Fatalf("Get = %q", got)
	}
	if _, err := s.Get(ctx, "blocks/nope"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("Get missing: %v", err)
	}
	if _, _, err := s.ReaderAt(ctx, "blocks/nope"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("ReaderAt missing: %v", err)
	}

	ra, size, err := s.ReaderAt(ctx, "blocks/01A/spans.parquet")
	if err != nil || size != int64(len(data)) {
		t.Fatalf("ReaderAt: size %d, %v", size, err)
	}
	buf := make([]byte, 25)
	if n, err := ra.ReadAt(buf, 9990); n != 10 || err != io.EOF || string(buf[:n]) != "0123456789" {
		t.Fatalf("ReadAt at the end: %d %v %q", n, err, buf[:n])
	}
	if _, err := ra.ReadAt(buf, 1003); err != nil || string(buf) != string(data[1003:1028]) {
		t.Fatalf("ReadAt: %v %q", err, buf)
	}
	tail, size, err := s.ReadTail(ctx, "blocks/01A/spans.parquet", 15)
	if err != nil || size != 10000 || string(tail) != string(data[9985:]) {
		t.Fatalf("ReadTail: %q size %d %v", tail, size, err)
	}
	tail, size, err = s.ReadTail(ctx, "blocks/01A/meta.json", 1000)
	if err != nil || size != 4 || string(tail) != "meta" {
		t.Fatalf("ReadTail of a small object: %q size %d %v", tail, size, err)
	}

	names, err := s.List(ctx, "blocks/01")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"blocks/01A/meta.json", "blocks/01A/spans.parquet", "blocks/01B/meta.json"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("List = %v", names)
	}
	names, err = s.ListAfter(ctx, "blocks/", "blocks/01A/zzz")
	if err != nil || strings.Join(names, ",") != "blocks/01B/meta.json" {
		t.Fatalf("ListAfter = %v, %v", names, err)
	}
	folders, err := s.Folders(ctx, "blocks/")
	if err != nil || strings.Join(folders, ",") != "01A,01B" {
		t.Fatalf("Folders = %v, %v", folders, err)
	}
	if err := s.Delete(ctx, "blocks/01B/meta.json"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "blocks/01B/meta.json"); err != nil {
		t.Fatalf("deleting a missing object: %v", err)
	}
	if _, err := s.Get(ctx, "blocks/01B/meta.json"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("after Delete: %v", err)
	}
	// The prefix keeps views apart in one bucket.
	if names, _ := s.Sub("other").List(ctx, ""); len(names) != 0 {
		t.Fatalf("another prefix sees %v", names)
	}
	if st := s.Stats(); st.Requests == 0 || st.Gets == 0 || st.BytesRead == 0 || st.BytesWritten < 10000 {
		t.Fatalf("stats not counted: %+v", st)
	}
}

// Leases and the block index rest on the server honouring If-None-Match and If-Match on PUT.
func TestConditionalWrites(t *testing.T) {
	ctx := context.Background()
	s, _ := open(t)
	e1, err := s.PutIfAbsent(ctx, "lease", []byte("a"))
	if err != nil || e1 == "" {
		t.Fatalf("first PutIfAbsent: %q %v", e1, err)
	}
	if _, err := s.PutIfAbsent(ctx, "lease", []byte("b")); !errors.Is(err, s3store.ErrPrecondition) {
		t.Fatalf("second PutIfAbsent: %v", err)
	}
	e2, err := s.PutIfMatch(ctx, "lease", []byte("c"), e1)
	if err != nil || e2 == e1 {
		t.Fatalf("PutIfMatch with the current ETag: %q %v", e2, err)
	}
	if _, err := s.PutIfMatch(ctx, "lease", []byte("d"), e1); !errors.Is(err, s3store.ErrPrecondition) {
		t.Fatalf("PutIfMatch with a stale ETag: %v", err)
	}
	if got := get(t, s, "lease"); got != "c" {
		t.Fatalf("object = %q, want the one write whose condition held", got)
	}
	rc, etag, err := s.GetWithETag(ctx, "lease", "")
	if err != nil || etag != e2 {
		t.Fatalf("GetWithETag: %q %v", etag, err)
	}
	rc.Close()
	if _, _, err := s.GetWithETag(ctx, "lease", e2); !errors.Is(err, s3store.ErrNotModified) {
		t.Fatalf("GetWithETag of an unchanged object: %v", err)
	}
}

func TestOutage(t *testing.T) {
	ctx := context.Background()
	s, srv := open(t)
	if err := s.Put(ctx, "x", strings.NewReader("1")); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if err := s.Put(ctx, "y", strings.NewReader("2")); err == nil {
		t.Fatal("Put succeeded with the server down")
	}
	srv.Restart()
	if got := get(t, s, "x"); got != "1" {
		t.Fatalf("after restart: %q", got)
	}
}
