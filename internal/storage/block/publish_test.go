package block

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
)

// failMetaAfterPut stores meta.json and then fails, as a Put whose rename landed but whose
// directory sync failed does.
type failMetaAfterPut struct{ objstore.Store }

func (f failMetaAfterPut) Put(ctx context.Context, name string, r io.Reader) error {
	if err := f.Store.Put(ctx, name, r); err != nil {
		return err
	}
	if strings.HasSuffix(name, "/"+fileMeta) {
		return errors.New("sync dir: input/output error")
	}
	return nil
}

// On a store without atomic publish, a meta.json write that fails after its object landed
// must not leave a block that looks complete while its files are deleted: Write cleans up
// meta.json first, so nothing of the block remains.
func TestWriteFailedMetaLeavesNoBlock(t *testing.T) {
	ctx := context.Background()
	local := newStore(t)
	rng := rand.New(rand.NewPCG(1, 2))
	traces := toTraces(t, richTrace(rng, traceID(rng), 5))
	_, err := Write(ctx, failMetaAfterPut{local}, traces, WriteOptions{})
	if err == nil {
		t.Fatal("Write reported success")
	}
	names, err := local.List(ctx, Prefix)
	if err != nil || len(names) != 0 {
		t.Fatalf("left behind: %v, %v", names, err)
	}
	inv, err := Survey(ctx, local)
	if err != nil || len(inv.Complete)+len(inv.Damaged)+len(inv.Incomplete) != 0 {
		t.Fatalf("survey after a failed write: %+v, %v", inv, err)
	}
}

// On a local store the block is published as one folder: written under a staging name and
// renamed, with every file and both directories synced, so no reader sees it half written.
func TestWritePublishesWholeFolder(t *testing.T) {
	ctx := context.Background()
	local := newStore(t)
	rng := rand.New(rand.NewPCG(3, 4))
	meta, err := Write(ctx, local, toTraces(t, richTrace(rng, traceID(rng), 5)), WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(local.Dir(), "blocks"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != meta.ID {
		t.Fatalf("blocks/ holds %v, want only %s (no staging left)", entries, meta.ID)
	}
	for name, size := range meta.Files {
		st, err := os.Stat(filepath.Join(local.Dir(), "blocks", meta.ID, name))
		if err != nil || st.Size() != size {
			t.Fatalf("%s: %v, %d bytes, meta says %d", name, err, st.Size(), size)
		}
		if _, ok := meta.Checksums[name]; !ok {
			t.Fatalf("%s has no checksum in meta.json", name)
		}
	}
	// A second publish under the same ID refuses rather than mixing two blocks' files.
	if _, err := Write(ctx, local, toTraces(t, richTrace(rng, traceID(rng), 5)), WriteOptions{ID: meta.ID}); err == nil {
		t.Fatal("a second block published over an existing one")
	}
	r, err := Open(ctx, local, meta.ID)
	if err != nil {
		t.Fatalf("the first block was harmed: %v", err)
	}
	r.Close()
}
