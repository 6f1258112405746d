package faultfs

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ariadne-tracing/ariadne/internal/storage/vfs"
)

func TestFaultsFireAsConfigured(t *testing.T) {
	dir := t.TempDir()
	ffs := New(vfs.OS)
	ffs.Inject(Fault{Op: OpWrite, PathContains: "a.log", Skip: 1, Count: 1, Err: syscall.ENOSPC, Torn: true})
	f, err := ffs.OpenFile(filepath.Join(dir, "a.log"), os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("good")); err != nil {
		t.Fatalf("first write should pass (Skip 1): %v", err)
	}
	n, err := f.Write([]byte("torn"))
	if !errors.Is(err, syscall.ENOSPC) || n != 2 {
		t.Fatalf("second write: n=%d err=%v, want torn ENOSPC after 2 bytes", n, err)
	}
	if _, err := f.Write([]byte("!")); err != nil {
		t.Fatalf("third write should pass (Count 1): %v", err)
	}
	f.Close()
	data, _ := os.ReadFile(filepath.Join(dir, "a.log"))
	if string(data) != "goodto!" {
		t.Fatalf("file holds %q", data)
	}
	if ffs.Count(OpWrite) != 3 || ffs.Fired() != 1 {
		t.Fatalf("counts: writes %d fired %d", ffs.Count(OpWrite), ffs.Fired())
	}
}

func TestPersistentFaultUntilCleared(t *testing.T) {
	dir := t.TempDir()
	ffs := New(vfs.OS)
	ffs.Inject(Fault{Op: OpSyncDir, Err: syscall.EIO})
	for i := 0; i < 3; i++ {
		if err := ffs.SyncDir(dir); !errors.Is(err, syscall.EIO) {
			t.Fatalf("syncdir %d: %v", i, err)
		}
	}
	ffs.Clear()
	if err := ffs.SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	ffs.Inject(Fault{Op: OpRename, PathContains: "other", Err: syscall.EIO})
	if err := vfs.WriteFile(ffs, filepath.Join(dir, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ffs.Rename(filepath.Join(dir, "x"), filepath.Join(dir, "y")); err != nil {
		t.Fatalf("rename of a path the fault does not name: %v", err)
	}
	if err := ffs.Rename(filepath.Join(dir, "y"), filepath.Join(dir, "other")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("rename: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "y")); err != nil {
		t.Fatalf("failed rename must leave the source: %v", err)
	}
}
