package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ariadne-tracing/ariadne/internal/storage/vfs"
)

// tempPrefix marks files still being written by Put; List hides them so that a crash mid-write
// never exposes a partial object under its real name.
const tempPrefix = ".tmp-"

// Local is a Store on a local directory. Object names map to files, '/' to sub-folders. Every
// write, fsync, rename and directory sync goes through a vfs.FS, so that tests can fail each
// one (internal/testkit/faultfs).
type Local struct {
	dir string
	fs  vfs.FS
}

var _ Store = (*Local)(nil)

// NewLocal returns a Store rooted at dir, creating dir if needed.
func NewLocal(dir string) (*Local, error) { return NewLocalFS(dir, vfs.OS) }

// NewLocalFS is NewLocal writing through fsys.
func NewLocalFS(dir string, fsys vfs.FS) (*Local, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("objstore: resolve %q: %w", dir, err)
	}
	if err := fsys.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("objstore: create %q: %w", abs, err)
	}
	return &Local{dir: abs, fs: fsys}, nil
}

// Dir returns the root directory.
func (l *Local) Dir() string { return l.dir }

// path validates name and maps it to a file path. Names are rejected rather than cleaned so that
// two different names can never alias one file.
func (l *Local) path(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") ||
		path.Clean(name) != name || name == ".." || strings.HasPrefix(name, "../") ||
		strings.Contains(name, "\\") {
		return "", fmt.Errorf("objstore: invalid object name %q", name)
	}
	for _, part := range strings.Split(name, "/") {
		if strings.HasPrefix(part, tempPrefix) {
			return "", fmt.Errorf("objstore: invalid object name %q: reserved prefix", name)
		}
	}
	return filepath.Join(l.dir, filepath.FromSlash(name)), nil
}

// Put writes to a temporary file beside the target, syncs it, renames it into place and syncs
// the directory, so that after a crash the name holds either nothing or the whole object.
func (l *Local) Put(ctx context.Context, name string, r io.Reader) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := l.path(name)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	var f vfs.File
	// A concurrent Delete may remove the folder between MkdirAll and CreateTemp; one retry
	// covers that.
	for try := 0; ; try++ {
		if err = l.mkdirAllSync(dir); err != nil {
			return fmt.Errorf("objstore: put %q: %w", name, err)
		}
		f, err = l.fs.CreateTemp(dir, tempPrefix+"*")
		if err == nil {
			break
		}
		if try > 0 || !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("objstore: put %q: %w", name, err)
		}
	}
	defer func() {
		if err != nil {
			f.Close()
			l.fs.Remove(f.Name())
		}
	}()
	if _, err = io.Copy(f, ctxReader{ctx, r}); err != nil {
		return fmt.Errorf("objstore: put %q: write: %w", name, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("objstore: put %q: sync: %w", name, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("objstore: put %q: close: %w", name, err)
	}
	if err = l.fs.Rename(f.Name(), p); err != nil {
		return fmt.Errorf("objstore: put %q: rename: %w", name, err)
	}
	if err = l.syncDir(dir); err != nil {
		return fmt.Errorf("objstore: put %q: %w", name, err)
	}
	return nil
}

func (l *Local) syncDir(dir string) error {
	if err := l.fs.SyncDir(dir); err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	return nil
}

// ctxReader stops a long copy when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (l *Local) open(ctx context.Context, name string) (vfs.File, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := l.path(name)
	if err != nil {
		return nil, err
	}
	f, err := l.fs.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("objstore: %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("objstore: open %q: %w", name, err)
	}
	return f, nil
}

// Get opens the object for reading.
func (l *Local) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	return l.open(ctx, name)
}

// ReaderAt opens the object for random access. *os.File uses pread, so concurrent ReadAt calls
// on one handle are safe.
func (l *Local) ReaderAt(ctx context.Context, name string) (ReaderAtCloser, int64, error) {
	f, err := l.open(ctx, name)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("objstore: stat %q: %w", name, err)
	}
	if st.IsDir() {
		f.Close()
		return nil, 0, fmt.Errorf("objstore: %q is a prefix: %w", name, ErrNotFound)
	}
	return f, st.Size(), nil
}

// List walks the directory. Prefixes are plain string prefixes, as in S3: "blocks/01" matches
// "blocks/01A/meta.json".
func (l *Local) List(ctx context.Context, prefix string) ([]string, error) {
	// Only walk the deepest folder the prefix names in full.
	start := l.dir
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = filepath.Join(l.dir, filepath.FromSlash(prefix[:i]))
	}
	var names []string
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), tempPrefix) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(l.dir, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("objstore: list %q: %w", prefix, err)
	}
	sort.Strings(names)
	return names, nil
}

// Delete removes the object and then any folders it leaves empty, so that deleted blocks do not
// leave a trail of directories for List to walk.
func (l *Local) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := l.path(name)
	if err != nil {
		return err
	}
	if err := l.fs.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("objstore: delete %q: %w", name, err)
	}
	for dir := filepath.Dir(p); dir != l.dir && strings.HasPrefix(dir, l.dir); dir = filepath.Dir(dir) {
		// Fails when the folder still has entries, which is the signal to stop.
		if l.fs.Remove(dir) != nil {
			break
		}
	}
	return nil
}
