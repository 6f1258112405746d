package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Object is one named object for Publish. Name is relative to the published prefix. Its
// content is Data, or, when Path is set, the local file at Path, which Publish may move.
type Object struct {
	Name string
	Data []byte
	Path string
}

// Open returns the object's content for reading.
func (o Object) Open() (io.ReadCloser, error) {
	if o.Path == "" {
		return io.NopCloser(bytes.NewReader(o.Data)), nil
	}
	f, err := os.Open(o.Path)
	if err != nil {
		return nil, fmt.Errorf("objstore: %s: %w", o.Name, err)
	}
	return f, nil
}

// Publisher is implemented by stores that can make a folder of objects appear all at once.
// Stores without it (S3) get the same effect from the writer's protocol instead: the block's
// meta.json is written last and is what makes the folder count.
type Publisher interface {
	// Publish stores objects under prefix (which ends in '/') so that readers, and a restart
	// after a crash, see all of them or none. It fails if prefix already holds objects, and
	// on error has published nothing.
	Publish(ctx context.Context, prefix string, objects []Object) error
}

// Mover is implemented by stores that can move every object under one prefix to another in one
// step. MovePrefix falls back to copying.
type Mover interface {
	Move(ctx context.Context, from, to string) error
}

// Sweeper is implemented by stores whose crashed writes leave staging files behind.
type Sweeper interface {
	// Sweep removes staging files and folders under prefix and returns how many it removed.
	// Only call it when no write is in progress: a live write's staging looks the same.
	Sweep(ctx context.Context, prefix string) (int, error)
}

var (
	_ Publisher = (*Local)(nil)
	_ Mover     = (*Local)(nil)
	_ Sweeper   = (*Local)(nil)
)

// MovePrefix moves every object under from (ending in '/') to the same name under to: in one
// step where the store is a Mover, else by copying each object and then deleting the originals.
func MovePrefix(ctx context.Context, s Store, from, to string) error {
	if m, ok := s.(Mover); ok {
		return m.Move(ctx, from, to)
	}
	names, err := s.List(ctx, from)
	if err != nil {
		return err
	}
	for _, n := range names {
		rc, err := s.Get(ctx, n)
		if err != nil {
			return err
		}
		err = s.Put(ctx, to+strings.TrimPrefix(n, from), rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	for _, n := range names {
		if err := s.Delete(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// folder validates a prefix ending in '/' and maps it to a directory path.
func (l *Local) folder(prefix string) (string, error) {
	if !strings.HasSuffix(prefix, "/") {
		return "", fmt.Errorf("objstore: prefix %q does not end in /", prefix)
	}
	return l.path(strings.TrimSuffix(prefix, "/"))
}

// Publish writes the objects into a hidden staging folder beside the target, fsyncs each file
// and the folder, renames the folder into place and fsyncs its parent. A crash at any point
// leaves either the complete folder or a staging folder that List ignores and Sweep removes.
func (l *Local) Publish(ctx context.Context, prefix string, objects []Object) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir, err := l.folder(prefix)
	if err != nil {
		return err
	}
	for _, o := range objects {
		if o.Name == "" || strings.ContainsAny(o.Name, `/\`) || strings.HasPrefix(o.Name, tempPrefix) || o.Name == "." || o.Name == ".." {
			return fmt.Errorf("objstore: publish %q: invalid object name %q", prefix, o.Name)
		}
	}
	parent := filepath.Dir(dir)
	if err := l.mkdirAllSync(parent); err != nil {
		return fmt.Errorf("objstore: publish %q: %w", prefix, err)
	}
	tmp, err := l.fs.MkdirTemp(parent, tempPrefix+filepath.Base(dir)+"-")
	if err != nil {
		return fmt.Errorf("objstore: publish %q: %w", prefix, err)
	}
	defer func() {
		if err != nil {
			l.fs.RemoveAll(tmp)
		}
	}()
	// The files are independent, so their writes and fsyncs overlap.
	errs := make([]error, len(objects))
	var wg sync.WaitGroup
	for i, o := range objects {
		wg.Go(func() { errs[i] = l.placeFile(filepath.Join(tmp, o.Name), o) })
	}
	wg.Wait()
	if err = errors.Join(errs...); err != nil {
		return fmt.Errorf("objstore: publish %q: %w", prefix, err)
	}
	if err = l.syncDir(tmp); err != nil {
		return fmt.Errorf("objstore: publish %q: %w", prefix, err)
	}
	if err = ctx.Err(); err != nil {
		return err
	}
	// rename(2) replaces an empty directory but refuses one with entries, which is the
	// "already holds objects" case.
	if err = l.fs.Rename(tmp, dir); err != nil {
		return fmt.Errorf("objstore: publish %q: rename: %w", prefix, err)
	}
	if err = l.syncDir(parent); err != nil {
		// The folder is in place but its entry may not survive a crash. An error must mean
		// nothing was published, so it goes again (a crash may still leave it: it is whole).
		l.fs.RemoveAll(dir)
		return fmt.Errorf("objstore: publish %q: %w", prefix, err)
	}
	return nil
}

// placeFile puts o's content at name, durably: a file o names is renamed there (its writer
// synced it) or, across file systems, copied; data is written and synced.
func (l *Local) placeFile(name string, o Object) error {
	if o.Path == "" {
		return l.writeFileSync(name, o.Data)
	}
	if err := l.fs.Rename(o.Path, name); err == nil {
		return nil
	}
	src, err := os.Open(o.Path)
	if err != nil {
		return fmt.Errorf("open %s: %w", o.Name, err)
	}
	defer src.Close()
	f, err := l.fs.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return fmt.Errorf("copy %s: %w", o.Name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", o.Name, err)
	}
	return f.Close()
}

func (l *Local) writeFileSync(name string, data []byte) error {
	f, err := l.fs.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(name), err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", filepath.Base(name), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", filepath.Base(name), err)
	}
	return nil
}

// mkdirAllSync is os.MkdirAll that also makes each directory it creates durable, by syncing
// the parent that holds its entry.
func (l *Local) mkdirAllSync(dir string) error {
	var missing []string
	for d := dir; d != l.dir && strings.HasPrefix(d, l.dir); d = filepath.Dir(d) {
		_, err := l.fs.Stat(d)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
	}
	if len(missing) == 0 {
		return nil
	}
	if err := l.fs.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, d := range missing {
		if err := l.syncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

// Move renames the folder of prefix from to that of prefix to, creating to's parents. It
// fails if to already holds objects.
func (l *Local) Move(ctx context.Context, from, to string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	src, err := l.folder(from)
	if err != nil {
		return err
	}
	dst, err := l.folder(to)
	if err != nil {
		return err
	}
	if err := l.mkdirAllSync(filepath.Dir(dst)); err != nil {
		return fmt.Errorf("objstore: move %q: %w", from, err)
	}
	if err := l.fs.Rename(src, dst); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("objstore: move %q: %w", from, ErrNotFound)
		}
		return fmt.Errorf("objstore: move %q: %w", from, err)
	}
	if err := l.syncDir(filepath.Dir(dst)); err != nil {
		return fmt.Errorf("objstore: move %q: %w", from, err)
	}
	if err := l.syncDir(filepath.Dir(src)); err != nil {
		return fmt.Errorf("objstore: move %q: %w", from, err)
	}
	return nil
}

// Sweep removes the staging files of interrupted Puts and the staging folders of interrupted
// Publishes under prefix (which names a folder, ending in '/').
func (l *Local) Sweep(ctx context.Context, prefix string) (int, error) {
	dir, err := l.folder(prefix)
	if err != nil {
		return 0, err
	}
	n := 0
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		if err := l.fs.RemoveAll(p); err != nil {
			return err
		}
		n++
		if d.IsDir() {
			return fs.SkipDir
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("objstore: sweep %q: %w", prefix, err)
	}
	return n, nil
}
