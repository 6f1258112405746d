package main

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestStagesImportBackward holds docs/architecture.md's rule for internal/: a package imports
// its own stage and earlier ones, never a later one, and production code never imports testkit.
func TestStagesImportBackward(t *testing.T) {
	order := []string{"wire", "intake", "pipeline", "storage", "read", "insight", "serve", "tools", "testkit"}
	allowed := map[string]bool{"pipeline/ingest -> storage/wal": true}
	const prefix = "github.com/ariadne-tracing/ariadne/internal/"
	root := filepath.Join("..", "..", "internal")
	seen := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := filepath.ToSlash(rel)
		stage := strings.Split(pkg, "/")[0]
		if !slices.Contains(order, stage) {
			t.Errorf("%s: internal/%s is in no stage of docs/architecture.md", path, stage)
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		seen++
		test := strings.HasSuffix(path, "_test.go")
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			if !strings.HasPrefix(p, prefix) {
				continue
			}
			dep := strings.TrimPrefix(p, prefix)
			depStage := strings.Split(dep, "/")[0]
			switch {
			case depStage == "testkit" && stage != "testkit" && !test:
				t.Errorf("%s imports %s: production code never imports testkit", path, dep)
			case depStage == "testkit" || depStage == stage:
			case slices.Index(order, depStage) > slices.Index(order, stage) && !test && !allowed[pkg+" -> "+dep]:
				t.Errorf("%s (stage %s) imports %s, a later stage", path, stage, dep)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen < 100 {
		t.Fatalf("read only %d Go files under %s", seen, root)
	}
}
