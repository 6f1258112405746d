package sqltrace

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	_ "modernc.org/sqlite"
)

func TestDescribe(t *testing.T) {
	for q, want := range map[string][2]string{
		"SELECT a FROM tasks WHERE id = ?":           {"SELECT", "tasks"},
		"insert into task_events (a) values (?)":     {"INSERT", "task_events"},
		"UPDATE tasks SET x = 1":                     {"UPDATE", "tasks"},
		"DELETE FROM tasks WHERE id = ?":             {"DELETE", "tasks"},
		"  PRAGMA journal_mode":                      {"PRAGMA", ""},
		"SELECT count(*) FROM (SELECT 1 FROM tasks)": {"SELECT", ""},
	} {
		op, table := describe(q)
		if op != want[0] || table != want[1] {
			t.Errorf("%q: got %s %s, want %v", q, op, table, want)
		}
	}
}

func TestSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	raw, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	raw.SetMaxOpenConns(1)
	db := Wrap(raw, tp)
	defer db.Close()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (v INTEGER)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO t VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	var v int
	if err := db.QueryRowContext(ctx, "SELECT v FROM t WHERE v > ?", 5).Scan(&v); !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("want ErrNoRows, got %v", err)
	}
	if _, err := db.QueryContext(ctx, "SELECT nope FROM t"); err == nil {
		t.Fatal("want an error")
	}
	spans := rec.Ended()
	if len(spans) != 4 {
		t.Fatalf("%d spans", len(spans))
	}
	attrs := map[string]string{}
	for _, kv := range spans[1].Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	if spans[1].Name() != "INSERT t" || attrs["db.system"] != "sqlite" || attrs["db.collection.name"] != "t" ||
		attrs["db.operation.name"] != "INSERT" || attrs["db.response.affected_rows"] != "2" {
		t.Errorf("insert span %s %v", spans[1].Name(), attrs)
	}
	if spans[3].Status().Code != codes.Error || len(spans[3].Events()) != 1 {
		t.Errorf("failed query: status %v events %d", spans[3].Status(), len(spans[3].Events()))
	}
}
