package loadgen

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// probe measures how long after its acknowledgement a trace can be found by TraceQL search: it
// sends a one-span trace with a unique attribute, then polls the search API until it is there.
type probe struct {
	snd       sender
	searchURL string // the query API, e.g. http://localhost:3200
	client    *http.Client
	token     string // searching needs a role that reads: with authentication on, an admin token
	rng       *fastRand
	misses    int // searches after an acknowledgement that did not find the probe
}

func (p *probe) once(ctx context.Context) (time.Duration, error) {
	var tid [16]byte
	var sid [8]byte
	p.rng.fill(tid[:])
	p.rng.fill(sid[:])
	sid[0] |= 1
	marker := fmt.Sprintf("probe-%x", tid[:6])
	now := uint64(time.Now().UnixNano())
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: resource("loadgen-probe"),
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{TraceId: tid[:], SpanId: sid[:], Name: "probe",
			StartTimeUnixNano: now, EndTimeUnixNano: now + 1000,
			Attributes: []*commonpb.KeyValue{str("loadgen.probe", marker)}}}}},
	}}}
	body, err := proto.Marshal(req)
	if err != nil {
		return 0, err
	}
	for {
		_, retry, err := p.snd.send(ctx, body)
		if err == nil {
			break
		}
		if !retry {
			return 0, fmt.Errorf("probe export: %w", err)
		}
		// Refused under load like any other request: the clock starts at acknowledgement.
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	acked := time.Now()
	q := url.Values{"q": {fmt.Sprintf(`{ span.loadgen.probe = "%s" }`, marker)}, "limit": {"1"},
		"start": {strconv.FormatInt(acked.Add(-time.Minute).Unix(), 10)}, "end": {strconv.FormatInt(acked.Add(time.Minute).Unix(), 10)}}
	for {
		found, err := p.search(ctx, q, binary.BigEndian.Uint64(tid[:8]))
		if err != nil {
			return 0, err
		}
		if found {
			return time.Since(acked), nil
		}
		p.misses++
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (p *probe) search(ctx context.Context, q url.Values, _ uint64) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", p.searchURL+"/api/search?"+q.Encode(), nil)
	if err != nil {
		return false, err
	}
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("probe search: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return false, fmt.Errorf("probe search: HTTP %d: %s", resp.StatusCode, b)
	}
	var res struct{ Traces []json.RawMessage }
	if err := json.Unmarshal(b, &res); err != nil {
		return false, fmt.Errorf("probe search: %w", err)
	}
	return len(res.Traces) > 0, nil
}
