// Package sqltrace wraps database/sql so that every statement becomes a CLIENT span carrying the
// database semantic-convention attributes. It stands in for the guide's MongoDB
// auto-instrumentation: the demo's slow query must show up as a database span, not as time
// unaccounted for inside a repository span.
package sqltrace

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// TracerName identifies the spans this package creates.
const TracerName = "ariadne/demo/sqltrace"

// System is the db.system value of every span; the demo only speaks SQLite.
const System = "sqlite"

// DB is a traced handle over a *sql.DB.
type DB struct {
	db     *sql.DB
	tracer trace.Tracer
}

// Wrap traces statements run through the returned DB. A nil provider means the global one.
func Wrap(db *sql.DB, tp trace.TracerProvider) *DB {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return &DB{db: db, tracer: tp.Tracer(TracerName)}
}

// Raw is the untraced handle, for bulk work such as seeding whose thousands of statements would
// drown any trace they landed in.
func (d *DB) Raw() *sql.DB { return d.db }

// Close closes the underlying database.
func (d *DB) Close() error { return d.db.Close() }

// ExecContext runs a statement that returns no rows inside its own span.
func (d *DB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx, span := d.start(ctx, query)
	defer span.End()
	res, err := d.db.ExecContext(ctx, query, args...)
	if err != nil {
		fail(span, err)
		return nil, err
	}
	if n, err := res.RowsAffected(); err == nil {
		span.SetAttributes(attribute.Int64("db.response.affected_rows", n))
	}
	return res, nil
}

// QueryContext runs a query whose span stays open until the rows are closed: SQLite produces rows
// lazily, so the scanning cost is paid in Next, not in the call that starts the query.
func (d *DB) QueryContext(ctx context.Context, query string, args ...any) (*Rows, error) {
	ctx, span := d.start(ctx, query)
	rows, err := d.db.QueryContext(ctx, query, args...)
	if err != nil {
		fail(span, err)
		span.End()
		return nil, err
	}
	return &Rows{Rows: rows, span: span}, nil
}

// QueryRowContext runs a query expected to return at most one row. The span ends when Scan is
// called on the result.
func (d *DB) QueryRowContext(ctx context.Context, query string, args ...any) *Row {
	rows, err := d.QueryContext(ctx, query, args...)
	return &Row{rows: rows, err: err}
}

func (d *DB) start(ctx context.Context, query string) (context.Context, trace.Span) {
	op, table := describe(query)
	name := op
	if table != "" {
		name = op + " " + table
	}
	attrs := []attribute.KeyValue{
		attribute.String("db.system", System),
		attribute.String("db.operation.name", op),
		attribute.String("db.query.text", query),
	}
	if table != "" {
		attrs = append(attrs, attribute.String("db.collection.name", table))
	}
	return d.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

func fail(span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// Rows is a result set whose span ends on Close.
type Rows struct {
	*sql.Rows
	span   trace.Span
	n      int64
	closed bool
}

// Next advances to the next row, counting them for db.response.returned_rows.
func (r *Rows) Next() bool {
	ok := r.Rows.Next()
	if ok {
		r.n++
	}
	return ok
}

// Close releases the rows and ends the span, marking it failed if iteration failed.
func (r *Rows) Close() error {
	err := r.Rows.Close()
	if r.closed {
		return err
	}
	r.closed = true
	r.span.SetAttributes(attribute.Int64("db.response.returned_rows", r.n))
	if e := errors.Join(r.Rows.Err(), err); e != nil {
		fail(r.span, e)
	}
	r.span.End()
	return err
}

// Row is the result of QueryRowContext.
type Row struct {
	rows *Rows
	err  error
}

// Scan copies the first row into dest, returning sql.ErrNoRows when there is none.
func (r *Row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	return nil
}

// describe pulls the operation and the table out of a statement for the span name. It only needs
// to understand the statements the demo writes, and falls back to the bare keyword otherwise.
func describe(query string) (op, table string) {
	words := strings.Fields(query)
	if len(words) == 0 {
		return "", ""
	}
	op = strings.ToUpper(words[0])
	after := func(keyword string) string {
		for i := 1; i < len(words)-1; i++ {
			if strings.EqualFold(words[i], keyword) {
				// A subquery has no single table to name.
				if strings.HasPrefix(words[i+1], "(") {
					return ""
				}
				return strings.Trim(words[i+1], "),;")
			}
		}
		return ""
	}
	switch op {
	case "SELECT", "DELETE":
		table = after("FROM")
	case "INSERT", "REPLACE":
		table = after("INTO")
	case "UPDATE":
		if len(words) > 1 {
			table = strings.Trim(words[1], "(),;")
		}
	}
	return op, table
}
