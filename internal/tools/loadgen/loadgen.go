// Package loadgen is Ariadne's load generator: it sends OTLP trace requests over gRPC or HTTP, at a
// fixed rate or as fast as the server takes them, and reports what the server achieved and what
// it cost (CPU and memory, read from /proc when given the server's PID).
package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"

	"github.com/ariadne-tracing/ariadne/internal/serve/tlsconfig"
)

// Config says what load to send.
type Config struct {
	Endpoint    string        // host:port of the OTLP receiver
	Protocol    string        // "grpc" (default) or "http"
	Profile     string        // "small" (default), "guide" or "wide"
	Batch       int           // spans per request (default 512, the SDK's batch size)
	Concurrency int           // concurrent exporters (default 4)
	Rate        float64       // spans per second in total; 0 sends as fast as the server acknowledges
	Duration    time.Duration // how long to send (default 10s)
	Requests    int64         // stop after this many requests instead, when > 0
	PID         int           // the server's process ID, to read its CPU and memory; 0 to skip
	Progress    io.Writer     // a line per second while running; nil for none
	// SearchURL, when set (e.g. http://localhost:3200), makes the generator also measure the
	// time from acknowledgement to searchable: once a second it sends a marked trace and polls
	// TraceQL search until the trace is found.
	SearchURL string
	// Token, when set, is sent as "authorization: Bearer <token>" with every request.
	Token string
	// TLS, when set, makes every connection TLS (SearchURL then wants https://).
	TLS *tlsconfig.Client
}

// Report is what a run achieved.
type Report struct {
	Profile      string
	Protocol     string
	Spans        int64 // acknowledged spans
	Requests     int64 // acknowledged requests
	Refused      int64 // requests refused as retryable (overload)
	Failed       int64 // other errors
	Rejected     int64 // spans refused in partial successes
	FirstError   string
	Elapsed      time.Duration
	BytesPerSpan float64
	Latency      Percentiles
	SpansPerSec  float64
	Server       *ProcStats  // nil without a PID
	Searchable   Percentiles // acknowledgement to searchable, with SearchURL
	Probes       int
	// ProbeMisses counts searches that did not yet find an acknowledged probe. The head is
	// indexed before an export is acknowledged, so on a correct server this stays 0.
	ProbeMisses   int
	SpansPerCPU   float64 // acknowledged spans per server CPU-second
	ServerPeakRSS int64   // bytes, sampled every 100ms during the run
}

// Percentiles of export latency.
type Percentiles struct{ P50, P90, P99, Max time.Duration }

func (c *Config) defaults() {
	if c.Protocol == "" {
		c.Protocol = "grpc"
	}
	if c.Profile == "" {
		c.Profile = "small"
	}
	if c.Batch <= 0 {
		c.Batch = 512
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.Duration <= 0 && c.Requests <= 0 {
		c.Duration = 10 * time.Second
	}
}

func (c Config) tlsConfig() (*tls.Config, error) {
	if c.TLS == nil {
		return nil, nil
	}
	tc, err := c.TLS.Config()
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	return tc, nil
}

func probeClient(cfg Config) *http.Client {
	tc, _ := cfg.tlsConfig() // newSender has already refused a config that does not load
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
}

type sender interface {
	send(ctx context.Context, body []byte) (rejected int64, retryable bool, err error)
	close()
}

const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// rawCodec puts pre-encoded request bytes on the wire as they are.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		return b, nil
	}
	return proto.Marshal(v.(proto.Message))
}
func (rawCodec) Unmarshal(data []byte, v any) error { return proto.Unmarshal(data, v.(proto.Message)) }

type grpcSender struct {
	conn  *grpc.ClientConn
	token string
}

func (s *grpcSender) send(ctx context.Context, body []byte) (int64, bool, error) {
	if s.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.token)
	}
	var resp coltracepb.ExportTraceServiceResponse
	err := s.conn.Invoke(ctx, exportMethod, body, &resp, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		c := status.Code(err)
		return 0, c == codes.Unavailable || c == codes.ResourceExhausted, err
	}
	return resp.GetPartialSuccess().GetRejectedSpans(), false, nil
}
func (s *grpcSender) close() { s.conn.Close() }

type httpSender struct {
	url    string
	client *http.Client
	token  string
}

func (s *httpSender) send(ctx context.Context, body []byte) (int64, bool, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", s.url, bytes.NewReader(body))
	if err != nil {
		return 0, false, err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return 0, resp.StatusCode == 429 || resp.StatusCode == 503, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var r coltracepb.ExportTraceServiceResponse
	if err := proto.Unmarshal(b, &r); err != nil {
		return 0, false, fmt.Errorf("decode response: %w", err)
	}
	return r.GetPartialSuccess().GetRejectedSpans(), false, nil
}
func (s *httpSender) close() {}

func newSender(cfg Config) (sender, error) {
	tc, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	switch cfg.Protocol {
	case "grpc":
		creds := insecure.NewCredentials()
		if tc != nil {
			creds = credentials.NewTLS(tc)
		}
		conn, err := grpc.NewClient(cfg.Endpoint, grpc.WithTransportCredentials(creds),
			grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
		if err != nil {
			return nil, fmt.Errorf("loadgen: dial %s: %w", cfg.Endpoint, err)
		}
		return &grpcSender{conn: conn, token: cfg.Token}, nil
	case "http":
		tr := &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency * 2, TLSClientConfig: tc}
		scheme := "http://"
		if tc != nil {
			scheme = "https://"
		}
		return &httpSender{url: scheme + cfg.Endpoint + "/v1/traces", client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
			token: cfg.Token}, nil
	default:
		return nil, fmt.Errorf("loadgen: unknown protocol %q (grpc or http)", cfg.Protocol)
	}
}

// Run sends load until the duration or request count is reached or ctx ends.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg.defaults()
	tmpl, err := buildProfile(cfg.Profile, cfg.Batch)
	if err != nil {
		return Report{}, err
	}
	snd, err := newSender(cfg)
	if err != nil {
		return Report{}, err
	}
	defer snd.close()
	rep := Report{Profile: cfg.Profile, Protocol: cfg.Protocol, BytesPerSpan: float64(len(tmpl.wire)) / float64(tmpl.nspans)}

	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	var before *ProcStats
	var peak atomic.Int64
	stopSampling := make(chan struct{})
	var samplerDone sync.WaitGroup
	if cfg.PID > 0 {
		if before, err = ReadProc(cfg.PID); err != nil {
			return rep, err
		}
		samplerDone.Add(1)
		go func() {
			defer samplerDone.Done()
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				if ps, err := ReadProc(cfg.PID); err == nil && ps.RSS > peak.Load() {
					peak.Store(ps.RSS)
				}
				select {
				case <-stopSampling:
					return
				case <-t.C:
				}
			}
		}()
	}

	var spans, requests, refused, failed, rejected atomic.Int64
	var firstErr atomic.Value
	var issued atomic.Int64
	start := time.Now()
	interval := time.Duration(0)
	if cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(tmpl.nspans) / cfg.Rate)
	}
	lat := make([][]time.Duration, cfg.Concurrency)
	var wg sync.WaitGroup
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := &fastRand{s: uint64(time.Now().UnixNano()) ^ uint64(w+1)*0x9e3779b97f4a7c15}
			var buf []byte
			for ctx.Err() == nil {
				n := issued.Add(1)
				if cfg.Requests > 0 && n > cfg.Requests {
					return
				}
				if interval > 0 {
					// Open-loop pacing: request n is due at start + n×interval, whatever the
					// latency of earlier ones.
					if d := time.Until(start.Add(time.Duration(n-1) * interval)); d > 0 {
						select {
						case <-time.After(d):
						case <-ctx.Done():
							return
						}
					}
				}
				buf = tmpl.fill(buf, rng, uint64(time.Now().UnixNano()))
				t0 := time.Now()
				rej, retry, err := snd.send(ctx, buf)
				d := time.Since(t0)
				switch {
				case err != nil && (ctx.Err() != nil || endingNow(ctx)):
					// The run ended while this request was in flight: neither success nor failure.
					return
				case err != nil && retry:
					refused.Add(1)
					time.Sleep(50 * time.Millisecond)
				case err != nil:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				default:
					lat[w] = append(lat[w], d)
					requests.Add(1)
					spans.Add(int64(tmpl.nspans) - rej)
					rejected.Add(rej)
				}
			}
		}()
	}
	var probeLat []time.Duration
	var probeErr error
	probeDone := make(chan struct{})
	var pr *probe
	if cfg.SearchURL != "" {
		pr = &probe{snd: snd, searchURL: cfg.SearchURL, client: probeClient(cfg), token: cfg.Token,
			rng: &fastRand{s: uint64(time.Now().UnixNano()) | 1}}
		go func() {
			defer close(probeDone)
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				d, err := pr.once(ctx)
				if err != nil {
					if ctx.Err() == nil && !endingNow(ctx) {
						probeErr = err
					}
					return
				}
				probeLat = append(probeLat, d)
			}
		}()
	} else {
		close(probeDone)
	}
	if cfg.Progress != nil {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			last := int64(0)
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					s := spans.Load()
					fmt.Fprintf(cfg.Progress, "%6.0fs  %9d spans/s  refused %d  failed %d\n", time.Since(start).Seconds(), s-last, refused.Load(), failed.Load())
					last = s
				}
			}
		}()
	}
	wg.Wait()
	rep.Elapsed = time.Since(start)
	<-probeDone
	if probeErr != nil {
		return rep, probeErr
	}
	rep.Probes = len(probeLat)
	if pr != nil {
		rep.ProbeMisses = pr.misses
	}
	rep.Searchable = percentiles(probeLat)
	close(stopSampling)
	samplerDone.Wait()

	rep.Spans, rep.Requests, rep.Refused, rep.Failed, rep.Rejected = spans.Load(), requests.Load(), refused.Load(), failed.Load(), rejected.Load()
	if e, ok := firstErr.Load().(string); ok {
		rep.FirstError = e
	}
	rep.SpansPerSec = float64(rep.Spans) / rep.Elapsed.Seconds()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	rep.Latency = percentiles(all)
	if cfg.PID > 0 {
		after, err := ReadProc(cfg.PID)
		if err != nil {
			return rep, err
		}
		delta := after.Sub(before)
		rep.Server = &delta
		if cpu := delta.CPU.Seconds(); cpu > 0 {
			rep.SpansPerCPU = float64(rep.Spans) / cpu
		}
		rep.ServerPeakRSS = max(peak.Load(), after.RSS)
	}
	return rep, nil
}

// endingNow reports whether ctx's deadline is (all but) reached: gRPC can fail a call on its
// deadline a moment before ctx.Err() turns non-nil.
func endingNow(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && time.Until(d) < 20*time.Millisecond
}

func percentiles(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return Percentiles{P50: at(.5), P90: at(.9), P99: at(.99), Max: d[len(d)-1]}
}

// Print writes the report for people.
func (r Report) Print(w io.Writer) {
	fmt.Fprintf(w, "profile %s over %s: %d spans acknowledged in %d requests in %.1fs (%.0f bytes/span on the wire)\n",
		r.Profile, r.Protocol, r.Spans, r.Requests, r.Elapsed.Seconds(), r.BytesPerSpan)
	fmt.Fprintf(w, "throughput        %.0f spans/s\n", r.SpansPerSec)
	fmt.Fprintf(w, "export latency    p50 %v  p90 %v  p99 %v  max %v\n", r.Latency.P50.Round(time.Microsecond),
		r.Latency.P90.Round(time.Microsecond), r.Latency.P99.Round(time.Microsecond), r.Latency.Max.Round(time.Microsecond))
	fmt.Fprintf(w, "errors            refused (retryable) %d, failed %d, spans rejected %d\n", r.Refused, r.Failed, r.Rejected)
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error       %s\n", r.FirstError)
	}
	if r.Probes > 0 {
		fmt.Fprintf(w, "searchable after  p50 %v  p90 %v  p99 %v  max %v (%d probes: acknowledgement to found by TraceQL)\n",
			r.Searchable.P50.Round(time.Microsecond), r.Searchable.P90.Round(time.Microsecond), r.Searchable.P99.Round(time.Microsecond),
			r.Searchable.Max.Round(time.Microsecond), r.Probes)
	}
	if r.Server != nil {
		fmt.Fprintf(w, "server CPU        %.2fs (%.0f%% of one core)\n", r.Server.CPU.Seconds(), 100*r.Server.CPU.Seconds()/r.Elapsed.Seconds())
		fmt.Fprintf(w, "spans per server CPU-second  %.0f\n", r.SpansPerCPU)
		fmt.Fprintf(w, "server peak RSS   %.1f MiB during the run (%.1f MiB at the end)\n", float64(r.ServerPeakRSS)/(1<<20), float64(r.Server.RSS)/(1<<20))
	}
}
