package objstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func newStore(t *testing.T) *Local {
	t.Helper()
	s, err := NewLocal(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPutGet(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if err := s.Put(ctx, "a/b/c.txt", strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Get(ctx, "a/b/c.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "hello" {
		t.Fatalf("got %q", got)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "a", "b", "c.txt")); err != nil {
		t.Fatalf("names should map to folders: %v", err)
	}
	// Overwrite replaces whole.
	if err := s.Put(ctx, "a/b/c.txt", strings.NewReader("bye")); err != nil {
		t.Fatal(err)
	}
	rc, _ = s.Get(ctx, "a/b/c.txt")
	got, _ = io.ReadAll(rc)
	rc.Close()
	if string(got) != "bye" {
		t.Fatalf("got %q", got)
	}
}

func TestNotFound(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get: %v", err)
	}
	if _, _, err := s.ReaderAt(ctx, "x/nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReaderAt: %v", err)
	}
	if err := s.Delete(ctx, "x/nope"); err != nil {
		t.Fatalf("Delete of missing: %v", err)
	}
}

func TestReaderAt(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := bytes.Repeat([]byte("0123456789"), 100)
	if err := s.Put(ctx, "f", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	ra, size, err := s.ReaderAt(ctx, "f")
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	if size != int64(len(data)) {
		t.Fatalf("size %d", size)
	}
	buf := make([]byte, 5)
	if _, err := ra.ReadAt(buf, 993); err != nil {
		t.Fatal(err)
	}
	if string(buf) != "34567" {
		t.Fatalf("got %q", buf)
	}
}

func TestListDelete(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	for _, n := range []string{"blocks/02/meta.json", "blocks/01/a", "blocks/01/meta.json", "other/x", "blocksx"} {
		if err := s.Put(ctx, n, strings.NewReader(n)); err != nil {
			t.Fatal(err)
		}
	}
	// A crashed Put leaves a temp file that must stay invisible.
	if err := os.WriteFile(filepath.Join(s.Dir(), "blocks", "01", tempPrefix+"123"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := s.List(ctx, "blocks/")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"blocks/01/a", "blocks/01/meta.json", "blocks/02/meta.json"}
	if !slices.Equal(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	got, _ = s.List(ctx, "blocks")
	if len(got) != 4 {
		t.Fatalf("plain prefix List = %v", got)
	}
	got, _ = s.List(ctx, "missing/")
	if len(got) != 0 {
		t.Fatalf("List of missing prefix = %v", got)
	}
	if err := s.Delete(ctx, "blocks/02/meta.json"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "blocks", "02")); !os.IsNotExist(err) {
		t.Fatalf("empty folder left behind: %v", err)
	}
	got, _ = s.List(ctx, "")
	want = []string{"blocks/01/a", "blocks/01/meta.json", "blocksx", "other/x"}
	if !slices.Equal(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
}

func TestInvalidNames(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	for _, n := range []string{"", "/abs", "a/../b", "../up", "a//b", "dir/", tempPrefix + "x", `a\b`} {
		if err := s.Put(ctx, n, strings.NewReader("x")); err == nil {
			t.Errorf("Put(%q) succeeded", n)
		}
	}
}

func TestPutCanceled(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Put(ctx, "x", strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if _, err := s.Get(context.Background(), "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("canceled Put left an object: %v", err)
	}
}
