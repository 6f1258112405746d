// Package faultfs is a vfs.FS for tests that fails chosen operations on purpose: the Nth write,
// fsync, rename or directory sync under a path, with ENOSPC, EIO or any error, once, a few times,
// or until cleared (a disk that stays full). Writes can also fail half done, leaving torn bytes
// on disk the way a real full disk does.
//
// It wraps a real filesystem (normally vfs.OS on a test's temporary directory), so everything that
// is not failed really happens on disk and a test can restart on the files left behind.
package faultfs

import (
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"

	"github.com/ariadne-tracing/ariadne/internal/storage/vfs"
)

// Op is a kind of filesystem operation that can be failed.
type Op uint8

const (
	OpWrite    Op = iota // File.Write
	OpSync               // File.Sync and File.Datasync
	OpRename             // FS.Rename
	OpSyncDir            // FS.SyncDir
	OpCreate             // OpenFile with O_CREATE, CreateTemp, MkdirTemp, MkdirAll
	OpRemove             // Remove, RemoveAll
	OpTruncate           // File.Truncate
	numOps
)

var opNames = [numOps]string{"write", "sync", "rename", "syncdir", "create", "remove", "truncate"}

func (o Op) String() string {
	if o < numOps {
		return opNames[o]
	}
	return fmt.Sprintf("op%d", o)
}

// Ops lists the operations that can be failed, for tests that fail each in turn.
var Ops = []Op{OpWrite, OpSync, OpRename, OpSyncDir, OpCreate, OpRemove, OpTruncate}

// Fault says which operations fail and how.
type Fault struct {
	Op Op
	// PathContains limits the fault to paths containing it; empty matches every path.
	PathContains string
	// Skip lets this many matching operations succeed before the fault starts firing.
	Skip int
	// Count is how many matching operations fail once firing; 0 means every one until the
	// fault is removed (a disk that stays full).
	Count int
	// Err is the error the operation fails with (wrapped in *fs.PathError), e.g. syscall.ENOSPC.
	Err error
	// Torn, for OpWrite, writes the first half of the bytes before failing, as a disk that
	// fills mid-write does.
	Torn bool
}

type rule struct {
	Fault
	seen, fired int
}

// FS wraps another vfs.FS and fails operations as the faults say. Safe for concurrent use.
type FS struct {
	inner vfs.FS

	mu     sync.Mutex
	rules  []*rule
	counts [numOps]int
	fired  int
}

var _ vfs.FS = (*FS)(nil)

// New wraps inner.
func New(inner vfs.FS) *FS { return &FS{inner: inner} }

// Inject adds a fault. Faults are checked in the order they were added; the first that fires
// decides.
func (f *FS) Inject(fl Fault) {
	f.mu.Lock()
	f.rules = append(f.rules, &rule{Fault: fl})
	f.mu.Unlock()
}

// Clear removes every fault: the disk has room again.
func (f *FS) Clear() {
	f.mu.Lock()
	f.rules = nil
	f.mu.Unlock()
}

// Count is how many operations of kind op were attempted so far, failed or not. A test can run
// a workload once to count, then again failing the 1st, 2nd, ... Nth of them.
func (f *FS) Count(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[op]
}

// Fired is how many operations the faults have failed so far.
func (f *FS) Fired() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fired
}

// check counts the operation and returns the fault that fails it, if any.
func (f *FS) check(op Op, path string) *rule {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counts[op]++
	for _, r := range f.rules {
		if r.Op != op || (r.PathContains != "" && !strings.Contains(path, r.PathContains)) {
			continue
		}
		r.seen++
		if r.seen <= r.Skip || (r.Count > 0 && r.fired >= r.Count) {
			continue
		}
		r.fired++
		f.fired++
		cp := *r
		return &cp
	}
	return nil
}

func (f *FS) fail(op Op, path string) error {
	if r := f.check(op, path); r != nil {
		return &fs.PathError{Op: op.String(), Path: path, Err: r.Err}
	}
	return nil
}

func (f *FS) wrap(file vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f}, nil
}

func (f *FS) OpenFile(name string, flag int, perm fs.FileMode) (vfs.File, error) {
	if flag&os.O_CREATE != 0 {
		if err := f.fail(OpCreate, name); err != nil {
			return nil, err
		}
	}
	return f.wrap(f.inner.OpenFile(name, flag, perm))
}

func (f *FS) Open(name string) (vfs.File, error) { return f.wrap(f.inner.Open(name)) }

func (f *FS) CreateTemp(dir, pattern string) (vfs.File, error) {
	if err := f.fail(OpCreate, dir+"/"+pattern); err != nil {
		return nil, err
	}
	return f.wrap(f.inner.CreateTemp(dir, pattern))
}

func (f *FS) MkdirTemp(dir, pattern string) (string, error) {
	if err := f.fail(OpCreate, dir+"/"+pattern); err != nil {
		return "", err
	}
	return f.inner.MkdirTemp(dir, pattern)
}

func (f *FS) MkdirAll(path string, perm fs.FileMode) error {
	if err := f.fail(OpCreate, path); err != nil {
		return err
	}
	return f.inner.MkdirAll(path, perm)
}

func (f *FS) ReadDir(name string) ([]fs.DirEntry, error) { return f.inner.ReadDir(name) }
func (f *FS) Stat(name string) (fs.FileInfo, error)      { return f.inner.Stat(name) }

func (f *FS) Rename(oldpath, newpath string) error {
	if err := f.fail(OpRename, newpath); err != nil {
		return err
	}
	return f.inner.Rename(oldpath, newpath)
}

func (f *FS) Remove(name string) error {
	if err := f.fail(OpRemove, name); err != nil {
		return err
	}
	return f.inner.Remove(name)
}

func (f *FS) RemoveAll(path string) error {
	if err := f.fail(OpRemove, path); err != nil {
		return err
	}
	return f.inner.RemoveAll(path)
}

func (f *FS) SyncDir(dir string) error {
	if err := f.fail(OpSyncDir, dir); err != nil {
		return err
	}
	return f.inner.SyncDir(dir)
}

type faultFile struct {
	vfs.File
	fs *FS
}

func (f *faultFile) Write(p []byte) (int, error) {
	if r := f.fs.check(OpWrite, f.Name()); r != nil {
		n := 0
		if r.Torn && len(p) > 1 {
			n, _ = f.File.Write(p[:len(p)/2])
		}
		return n, &fs.PathError{Op: "write", Path: f.Name(), Err: r.Err}
	}
	return f.File.Write(p)
}

func (f *faultFile) Sync() error {
	if err := f.fs.fail(OpSync, f.Name()); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *faultFile) Datasync() error {
	if err := f.fs.fail(OpSync, f.Name()); err != nil {
		return err
	}
	return f.File.Datasync()
}

func (f *faultFile) Truncate(size int64) error {
	if err := f.fs.fail(OpTruncate, f.Name()); err != nil {
		return err
	}
	return f.File.Truncate(size)
}
