// Package s3store keeps objects in an S3-compatible bucket (AWS S3, MinIO, Ceph, Google Cloud
// Storage's S3 API) behind objstore.Store, through minio-go.
//
// Object names are mapped below an optional prefix, so one bucket can hold several
// installations. Beyond the Store interface it offers the few things coordination between
// nodes needs: conditional writes (If-None-Match / If-Match on the ETag) for leases and the
// block index, listing with a delimiter and after a key, and counters of requests and bytes so
// that what a query costs in round trips can be seen.
package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
)

// Config says where the bucket is and how to sign requests.
type Config struct {
	Endpoint  string // host[:port], no scheme
	Bucket    string
	Prefix    string // prepended to every object name, "/" added when missing
	Region    string
	Insecure  bool // plain HTTP
	AccessKey string
	SecretKey string
	// MaxRetries is minio-go's per-request retry count (0: 3). Retries here are for a lost
	// request; an outage is handled by the callers (upload queue, partial answers).
	MaxRetries int
	// PartBytes is the part size of multipart uploads (0: 16 MiB; S3 allows no less than
	// 5 MiB). A Put from a local file larger than this streams from the file in parts instead
	// of being read into memory: what keeps the compactor's memory flat whatever a block's size.
	PartBytes int64
}

// minPartBytes is S3's smallest part (the last one excepted).
const minPartBytes = 5 << 20

// ErrPrecondition is returned by conditional writes whose condition did not hold: the object
// exists (If-None-Match) or changed (If-Match).
var ErrPrecondition = errors.New("s3store: precondition failed")

// Stats count the requests made since the store was created.
type Stats struct {
	Requests     int64
	Gets         int64 // GET requests (whole or ranged)
	BytesRead    int64 // response bodies of GET requests
	BytesWritten int64
	// MultipartUploads are Puts streamed from a file in parts (PartBytes each).
	MultipartUploads int64
	Errors           int64         // requests that failed in transport or with a 5xx
	RequestTime      time.Duration // summed latency of every request
}

// Store is an objstore.Store in a bucket. Safe for concurrent use.
type Store struct {
	core   minio.Core
	bucket string
	prefix string

	c         *counters // shared by Sub views: one client, one set of counts
	partBytes int64
}

type counters struct {
	requests, gets, bytesRead, bytesWritten, errs, nanos, multipart atomic.Int64
}

var _ objstore.Store = (*Store)(nil)

// New connects to the endpoint (no request is made) and returns the store. Credentials fall
// back to AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY when cfg has none.
func New(cfg Config) (*Store, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("s3store: storage.s3.endpoint and storage.s3.bucket are required")
	}
	var creds *credentials.Credentials
	if cfg.AccessKey != "" || cfg.SecretKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")
	} else {
		// The usual AWS variables, then an instance role: what an SDK user expects.
		creds = credentials.NewChainCredentials([]credentials.Provider{&credentials.EnvAWS{}, &credentials.IAM{}})
	}
	s := &Store{bucket: cfg.Bucket, prefix: cfg.Prefix, c: &counters{}, partBytes: cfg.PartBytes}
	if s.partBytes <= 0 {
		s.partBytes = 16 << 20
	}
	s.partBytes = max(s.partBytes, minPartBytes)
	if s.prefix != "" && !strings.HasSuffix(s.prefix, "/") {
		s.prefix += "/"
	}
	tr, err := minio.DefaultTransport(!cfg.Insecure)
	if err != nil {
		return nil, fmt.Errorf("s3store: transport: %w", err)
	}
	// Queries fetch many small ranges in parallel from one endpoint; the default of two idle
	// connections per host would make most of them open a new connection.
	tr.MaxIdleConnsPerHost = 64
	retries := cfg.MaxRetries
	if retries <= 0 {
		retries = 3
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{Creds: creds, Secure: !cfg.Insecure, Region: cfg.Region,
		Transport: &countingTransport{c: s.c, next: tr}, MaxRetries: retries})
	if err != nil {
		return nil, fmt.Errorf("s3store: %w", err)
	}
	s.core = minio.Core{Client: c}
	return s, nil
}

// Sub returns a store for the names below prefix in the same bucket, sharing the client, its
// connection pool and its counters.
func (s *Store) Sub(prefix string) *Store {
	return &Store{core: s.core, bucket: s.bucket, prefix: s.prefix + strings.TrimSuffix(prefix, "/") + "/", c: s.c, partBytes: s.partBytes}
}

// Stats returns the request counters of the client behind this store.
func (s *Store) Stats() Stats {
	c := s.c
	return Stats{Requests: c.requests.Load(), Gets: c.gets.Load(), BytesRead: c.bytesRead.Load(),
		BytesWritten: c.bytesWritten.Load(), MultipartUploads: c.multipart.Load(), Errors: c.errs.Load(),
		RequestTime: time.Duration(c.nanos.Load())}
}

// EnsureBucket creates the bucket if it does not exist.
func (s *Store) EnsureBucket(ctx context.Context, region string) error {
	ok, err := s.core.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("s3store: bucket %s: %w", s.bucket, err)
	}
	if ok {
		return nil
	}
	if err := s.core.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: region}); err != nil {
		if r := minio.ToErrorResponse(err); r.Code == "BucketAlreadyOwnedByYou" || r.Code == "BucketAlreadyExists" {
			return nil
		}
		return fmt.Errorf("s3store: create bucket %s: %w", s.bucket, err)
	}
	return nil
}

func (s *Store) key(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") || strings.Contains(name, "//") {
		return "", fmt.Errorf("s3store: invalid object name %q", name)
	}
	return s.prefix + name, nil
}

// Put uploads the object in one request when it is small enough to buffer, which also lets the
// request carry its length and checksum; S3 makes a PUT visible whole or not at all.
// A local file larger than PartBytes (a merged block's Parquet file) is streamed from the file
// in parts instead, with ranged reads of the file, so memory stays at about a part per upload
// thread; S3 makes the object visible whole when the upload completes, never a prefix.
func (s *Store) Put(ctx context.Context, name string, r io.Reader) error {
	if f, ok := r.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > s.partBytes {
			return s.putMultipart(ctx, name, f, fi.Size())
		}
	}
	_, err := s.put(ctx, name, r, minio.PutObjectOptions{})
	return err
}

func (s *Store) putMultipart(ctx context.Context, name string, f *os.File, size int64) error {
	key, err := s.key(name)
	if err != nil {
		return err
	}
	// minio-go reads parts of an io.ReaderAt through section readers (no part buffers); two
	// threads keep one part in flight while the next is sent.
	_, err = s.core.Client.PutObject(ctx, s.bucket, key, f, size, minio.PutObjectOptions{ContentType: "application/octet-stream",
		PartSize: uint64(s.partBytes), NumThreads: 2})
	if err != nil {
		return fmt.Errorf("s3store: multipart put %q: %w", name, err)
	}
	s.c.multipart.Add(1)
	s.c.bytesWritten.Add(size)
	return nil
}

// PutIfAbsent writes the object only if no object has the name (If-None-Match: *) and returns
// its ETag; ErrPrecondition when one exists.
func (s *Store) PutIfAbsent(ctx context.Context, name string, data []byte) (string, error) {
	var o minio.PutObjectOptions
	o.SetMatchETagExcept("*")
	return s.put(ctx, name, bytes.NewReader(data), o)
}

// PutIfMatch replaces the object only if its ETag is still etag (If-Match) and returns the new
// ETag; ErrPrecondition when it changed or is gone.
func (s *Store) PutIfMatch(ctx context.Context, name string, data []byte, etag string) (string, error) {
	var o minio.PutObjectOptions
	o.SetMatchETag(etag)
	return s.put(ctx, name, bytes.NewReader(data), o)
}

func (s *Store) put(ctx context.Context, name string, r io.Reader, o minio.PutObjectOptions) (string, error) {
	key, err := s.key(name)
	if err != nil {
		return "", err
	}
	// Blocks' files are at most tens of MiB; reading them into memory gives the request a known
	// length (no chunked multipart upload, one round trip) at the price of one copy.
	data, err := io.ReadAll(r)
	if err != nil {
		return "", fmt.Errorf("s3store: put %q: read: %w", name, err)
	}
	o.ContentType = "application/octet-stream"
	o.DisableMultipart = true
	info, err := s.core.Client.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)), o)
	if err != nil {
		if minio.ToErrorResponse(err).StatusCode == http.StatusPreconditionFailed ||
			minio.ToErrorResponse(err).Code == "PreconditionFailed" {
			return "", fmt.Errorf("s3store: put %q: %w", name, ErrPrecondition)
		}
		return "", fmt.Errorf("s3store: put %q: %w", name, err)
	}
	s.c.bytesWritten.Add(int64(len(data)))
	return info.ETag, nil
}

func notFound(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.StatusCode == http.StatusNotFound || r.Code == minio.NoSuchKey
}

// Get reads the whole object.
func (s *Store) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	rc, _, err := s.GetWithETag(ctx, name, "")
	return rc, err
}

// ErrNotModified is returned by GetWithETag when the object still has the ETag given.
var ErrNotModified = errors.New("s3store: not modified")

// GetWithETag reads the whole object and returns its ETag. With ifNoneMatch set, an unchanged
// object costs one request and no body: ErrNotModified.
func (s *Store) GetWithETag(ctx context.Context, name, ifNoneMatch string) (io.ReadCloser, string, error) {
	key, err := s.key(name)
	if err != nil {
		return nil, "", err
	}
	var o minio.GetObjectOptions
	if ifNoneMatch != "" {
		if err := o.SetMatchETagExcept(ifNoneMatch); err != nil {
			return nil, "", err
		}
	}
	rc, info, _, err := s.core.GetObject(ctx, s.bucket, key, o)
	if err != nil {
		if notFound(err) {
			return nil, "", fmt.Errorf("objstore: %q: %w", name, objstore.ErrNotFound)
		}
		if minio.ToErrorResponse(err).StatusCode == http.StatusNotModified {
			return nil, ifNoneMatch, ErrNotModified
		}
		return nil, "", fmt.Errorf("s3store: get %q: %w", name, err)
	}
	return rc, info.ETag, nil
}

// ReadRange reads n bytes at off with one ranged GET.
func (s *Store) ReadRange(ctx context.Context, name string, off, n int64) ([]byte, error) {
	key, err := s.key(name)
	if err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	var o minio.GetObjectOptions
	if err := o.SetRange(off, off+n-1); err != nil {
		return nil, err
	}
	rc, _, _, err := s.core.GetObject(ctx, s.bucket, key, o)
	if err != nil {
		if notFound(err) {
			return nil, fmt.Errorf("objstore: %q: %w", name, objstore.ErrNotFound)
		}
		return nil, fmt.Errorf("s3store: get %q [%d,+%d): %w", name, off, n, err)
	}
	defer rc.Close()
	buf := make([]byte, n)
	if _, err := io.ReadFull(rc, buf); err != nil {
		return nil, fmt.Errorf("s3store: get %q [%d,+%d): %w", name, off, n, err)
	}
	return buf, nil
}

// ReadTail reads the last n bytes of the object (fewer if it is smaller) and returns them with
// the object's size, in one request: a Parquet reader starts at the footer, so opening a file
// costs one round trip instead of a HEAD and a GET.
func (s *Store) ReadTail(ctx context.Context, name string, n int64) ([]byte, int64, error) {
	key, err := s.key(name)
	if err != nil {
		return nil, 0, err
	}
	var o minio.GetObjectOptions
	if err := o.SetRange(0, -n); err != nil {
		return nil, 0, err
	}
	rc, info, hdr, err := s.core.GetObject(ctx, s.bucket, key, o)
	if err != nil {
		if notFound(err) {
			return nil, 0, fmt.Errorf("objstore: %q: %w", name, objstore.ErrNotFound)
		}
		// An empty object has no satisfiable range.
		if minio.ToErrorResponse(err).StatusCode == http.StatusRequestedRangeNotSatisfiable {
			return nil, 0, nil
		}
		return nil, 0, fmt.Errorf("s3store: get tail of %q: %w", name, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, 0, fmt.Errorf("s3store: get tail of %q: %w", name, err)
	}
	size := info.Size
	// "bytes 100-199/200": the total is after the slash.
	if cr := hdr.Get("Content-Range"); cr != "" {
		if i := strings.LastIndexByte(cr, '/'); i >= 0 {
			if v, err := strconv.ParseInt(cr[i+1:], 10, 64); err == nil {
				size = v
			}
		}
	} else {
		size = int64(len(data)) // the whole object came back
	}
	return data, size, nil
}

// ReaderAt returns ranged reads over the object; its size comes from a HEAD request. Callers
// that read through objcache avoid the HEAD and most of the ranges.
func (s *Store) ReaderAt(ctx context.Context, name string) (objstore.ReaderAtCloser, int64, error) {
	key, err := s.key(name)
	if err != nil {
		return nil, 0, err
	}
	info, err := s.core.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		if notFound(err) {
			return nil, 0, fmt.Errorf("objstore: %q: %w", name, objstore.ErrNotFound)
		}
		return nil, 0, fmt.Errorf("s3store: stat %q: %w", name, err)
	}
	return &rangeReader{s: s, name: name, size: info.Size}, info.Size, nil
}

type rangeReader struct {
	s    *Store
	name string
	size int64
}

// ReadAt has no context of its own (io.ReaderAt); a minute bounds a request to a hung endpoint.
func (r *rangeReader) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), r.size-off)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := r.s.ReadRange(ctx, r.name, off, n)
	if err != nil {
		return 0, err
	}
	copy(p, b)
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

func (r *rangeReader) Close() error { return nil }

// List returns every object name under prefix, sorted.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	return s.ListAfter(ctx, prefix, "")
}

// ListAfter lists the names under prefix that sort after startAfter (a name, without the
// store's prefix): S3 starts the listing there, so a poller that knows the newest block it has
// seen lists only what came since.
func (s *Store) ListAfter(ctx context.Context, prefix, startAfter string) ([]string, error) {
	var names []string
	opts := minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}
	if startAfter != "" {
		opts.StartAfter = s.prefix + startAfter
	}
	for obj := range s.core.Client.ListObjects(ctx, s.bucket, opts) {
		if obj.Err != nil {
			return nil, fmt.Errorf("s3store: list %q: %w", prefix, obj.Err)
		}
		names = append(names, strings.TrimPrefix(obj.Key, s.prefix))
	}
	sort.Strings(names)
	return names, nil
}

// Folders returns the distinct next path elements under prefix ("a/" for "prefix/a/x"),
// listing with a delimiter so that the objects below are not walked.
func (s *Store) Folders(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	for obj := range s.core.Client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("s3store: list %q: %w", prefix, obj.Err)
		}
		if strings.HasSuffix(obj.Key, "/") {
			out = append(out, strings.TrimSuffix(strings.TrimPrefix(obj.Key, s.prefix+prefix), "/"))
		}
	}
	sort.Strings(out)
	return out, nil
}

// Delete removes the object; S3 answers success for a missing one.
func (s *Store) Delete(ctx context.Context, name string) error {
	key, err := s.key(name)
	if err != nil {
		return err
	}
	if err := s.core.Client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil && !notFound(err) {
		return fmt.Errorf("s3store: delete %q: %w", name, err)
	}
	return nil
}

// countingTransport counts every HTTP request the client makes, retries included.
type countingTransport struct {
	c    *counters
	next http.RoundTripper
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	t.c.requests.Add(1)
	t.c.nanos.Add(int64(time.Since(start)))
	if err != nil || resp.StatusCode >= 500 {
		t.c.errs.Add(1)
	}
	if err == nil && req.Method == http.MethodGet && resp.StatusCode < 300 && req.URL.Query().Get("list-type") == "" &&
		!req.URL.Query().Has("location") {
		t.c.gets.Add(1)
		if resp.ContentLength > 0 {
			t.c.bytesRead.Add(resp.ContentLength)
		}
	}
	return resp, err
}
