package vfs

import (
	"os"
	"path/filepath"
	"testing"
)

func TestOSRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "f")
	if err := OS.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(OS, p, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := OS.SyncDir(filepath.Dir(p)); err != nil {
		t.Fatal(err)
	}
	f, err := OS.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(" world")); err != nil {
		t.Fatal(err)
	}
	if err := f.Datasync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(8); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err := ReadFile(OS, p)
	if err != nil || string(got) != "hello wo" {
		t.Fatalf("read %q, %v", got, err)
	}
}
