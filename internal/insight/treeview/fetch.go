package treeview

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// ErrNotFound matches (errors.Is) the error Fetch returns when the server
// does not have the trace.
var ErrNotFound = errors.New("trace not found")

// NotFoundError reports a trace the server does not have.
type NotFoundError struct {
	TraceID string
	Server  string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("trace %s not found on Ariadne at %s", e.TraceID, e.Server)
}

// Is lets callers test with errors.Is(err, ErrNotFound).
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// StatusError is any other non-200 answer; Message is the server's own text.
type StatusError struct {
	StatusCode int
	Message    string
}

func (e *StatusError) Error() string {
	if e.StatusCode == http.StatusBadRequest {
		return "bad request: " + e.Message
	}
	return fmt.Sprintf("server answered %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// errBodyLimit caps how much of an error body is quoted back to the user.
const errBodyLimit = 64 << 10

// Fetch gets one trace with GET {server}/api/v2/traces/{traceID} asking for
// protobuf. start and end are optional Unix seconds narrowing the search, as
// in Tempo's API; zero leaves them out. server may omit the scheme (http is
// assumed) and may carry a path prefix. A nil client means http.DefaultClient.
//
// The body is Tempo's TraceByIDResponse; only its field 1, the trace, is
// read, which is wire-compatible with TracesData.
func Fetch(ctx context.Context, client *http.Client, server, traceID string, start, end int64) (*tracepb.TracesData, error) {
	if traceID == "" {
		return nil, errors.New("no trace ID given")
	}
	if client == nil {
		client = http.DefaultClient
	}
	base, u, err := traceURL(server, traceID, start, end)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/protobuf")

	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("fetching trace %s: %w", traceID, ctx.Err())
		}
		// The url.Error repeats the whole request URL; the dial error is the
		// useful part.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("cannot reach Ariadne at %s: %w", base, err)
	}
	defer resp.Body.Close()

	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, &NotFoundError{TraceID: traceID, Server: base}
	default:
		return nil, &StatusError{StatusCode: resp.StatusCode, Message: serverMessage(resp)}
	}

	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/json" {
		return nil, fmt.Errorf("server at %s answered JSON, not protobuf; is it an Ariadne server?", base)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading trace %s: %w", traceID, err)
	}
	td, err := decodeTraceByID(body)
	if err != nil {
		return nil, fmt.Errorf("decoding trace %s: %w", traceID, err)
	}
	if len(td.GetResourceSpans()) == 0 {
		return nil, &NotFoundError{TraceID: traceID, Server: base}
	}
	return td, nil
}

func traceURL(server, traceID string, start, end int64) (base, full string, err error) {
	server = strings.TrimSpace(server)
	if server == "" {
		return "", "", errors.New("no Ariadne server address given")
	}
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	u, err := url.Parse(server)
	if err != nil {
		return "", "", fmt.Errorf("bad Ariadne server address %q: %w", server, err)
	}
	if u.Host == "" {
		return "", "", fmt.Errorf("bad Ariadne server address %q: no host", server)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	u.RawQuery, u.Fragment = "", ""
	base = u.String()
	u = u.JoinPath("api", "v2", "traces", traceID)
	q := url.Values{}
	if start > 0 {
		q.Set("start", strconv.FormatInt(start, 10))
	}
	if end > 0 {
		q.Set("end", strconv.FormatInt(end, 10))
	}
	u.RawQuery = q.Encode()
	return base, u.String(), nil
}

// serverMessage reads the error text: plain text as Tempo sends it, or the
// message/error field of a JSON body.
func serverMessage(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, errBodyLimit))
	msg := strings.TrimSpace(string(b))
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/json" {
		var j struct {
			Message string `json:"message"`
			Error   string `json:"error"`
		}
		if json.Unmarshal(b, &j) == nil {
			msg = strings.TrimSpace(cmp.Or(j.Message, j.Error, msg))
		}
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return clean(msg)
}

// decodeTraceByID takes field 1 of a TraceByIDResponse. Repeated occurrences
// merge, as protobuf requires for a singular message field.
func decodeTraceByID(b []byte) (*tracepb.TracesData, error) {
	td := &tracepb.TracesData{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, protowire.ParseError(m)
			}
			if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(v, td); err != nil {
				return nil, err
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		b = b[m:]
	}
	return td, nil
}
