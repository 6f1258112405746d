package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ariadne-tracing/ariadne/internal/serve/tlsconfig"
)

// defaultServer is where commands look for Ariadne when neither --server nor ARIADNE_SERVER is set.
const defaultServer = "http://localhost:3200"

// clientOptions are the flags of every command that talks to a running Ariadne's query API.
// Adding a connection setting (a token, TLS) means a field here, a line in register and its use
// in httpClient or newRequest: every such command then has it, spelled the same way.
type clientOptions struct {
	Server string
	Token  string
	TLS    tlsconfig.Client
}

func (o *clientOptions) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.Server, "server", envOr("ARIADNE_SERVER", defaultServer),
		"Ariadne query API address; $ARIADNE_SERVER sets the default")
	cmd.Flags().StringVar(&o.Token, "token", os.Getenv("ARIADNE_TOKEN"),
		"bearer token for a server with authentication on (a read token); $ARIADNE_TOKEN sets the default")
	cmd.Flags().StringVar(&o.TLS.CAFile, "ca-file", os.Getenv("ARIADNE_CA_FILE"), "CA certificate (PEM) to trust for an https:// --server; $ARIADNE_CA_FILE sets the default")
	cmd.Flags().StringVar(&o.TLS.CertFile, "cert-file", os.Getenv("ARIADNE_CERT_FILE"), "client certificate (PEM) for a server that requires mutual TLS")
	cmd.Flags().StringVar(&o.TLS.KeyFile, "key-file", os.Getenv("ARIADNE_KEY_FILE"), "the client certificate's key (PEM)")
	cmd.ValidArgsFunction = cobra.NoFileCompletions // trace IDs and queries, never file names
}

// baseURL is the server address with a scheme: "localhost:3200" is taken as plain HTTP.
func (o *clientOptions) baseURL() string {
	s := strings.TrimRight(o.Server, "/")
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	return s
}

func (o *clientOptions) httpClient() *http.Client {
	var rt http.RoundTripper = http.DefaultTransport
	if o.TLS != (tlsconfig.Client{}) {
		tc, err := o.TLS.Config()
		if err != nil {
			return &http.Client{Transport: failing{err}}
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		rt = tr
	}
	if o.Token != "" {
		rt = bearer{token: o.Token, next: rt}
	}
	if rt == http.DefaultTransport {
		return http.DefaultClient
	}
	return &http.Client{Transport: rt}
}

// failing reports a TLS file that does not load on the first request, where errors are shown.
type failing struct{ err error }

func (f failing) RoundTrip(*http.Request) (*http.Response, error) { return nil, f.err }

// bearer sends the token with every request, whoever builds the request (treeview.Fetch does).
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

func (o *clientOptions) newRequest(ctx context.Context, path string, q url.Values) (*http.Request, error) {
	u := o.baseURL() + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
}

// get calls the query API and returns a 200 answer's body, turning anything else into an error
// that carries the server's message.
func (o *clientOptions) get(ctx context.Context, path string, q url.Values) ([]byte, error) {
	req, err := o.newRequest(ctx, path, q)
	if err != nil {
		return nil, fmt.Errorf("--server %q: %w", o.Server, err)
	}
	resp, err := o.httpClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach Ariadne at %s (set --server or ARIADNE_SERVER): %w", o.Server, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the answer from %s: %w", o.Server, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(body))
		if msg == "" {
			msg = resp.Status
		}
		return nil, fmt.Errorf("%s", msg)
	}
	return body, nil
}

// getJSON calls the query API and decodes its JSON answer into out.
func (o *clientOptions) getJSON(ctx context.Context, path string, q url.Values, out any) error {
	body, err := o.get(ctx, path, q)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decoding the answer of %s%s: %w", o.Server, path, err)
	}
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
