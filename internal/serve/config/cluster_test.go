package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestClusterSettings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	yaml := "target: query\nstorage:\n  backend: s3\n  s3:\n    endpoint: minio:9000\n    bucket: traces\n    insecure: true\ncluster:\n  peers: [a:3200, b:3200]\n  delete_grace: 10m\n"
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse([]string{"--s3-prefix", "prod", "--cluster-peers", "c:3200,d:3200"}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "env-key")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
	if err := cfg.CheckCluster(); err != nil {
		t.Fatal(err)
	}
	s := cfg.Storage.S3
	if cfg.Target != TargetQuery || s.Endpoint != "minio:9000" || s.Bucket != "traces" || !s.Insecure || s.Prefix != "prod" {
		t.Fatalf("file and flags not applied: %+v %+v", cfg.Target, s)
	}
	if s.AccessKey != "env-key" || s.SecretKey != "env-secret" {
		t.Fatalf("credentials did not fall back to the AWS variables: %q %q", s.AccessKey, s.SecretKey)
	}
	if strings.Join(cfg.Cluster.Peers, ",") != "c:3200,d:3200" || cfg.Cluster.DeleteGrace.String() != "10m0s" {
		t.Fatalf("cluster: %+v", cfg.Cluster)
	}
	// Keys given in the file win over the environment.
	cfg.Storage.S3.AccessKey, cfg.Storage.S3.SecretKey = "file-key", "file-secret"
	if err := cfg.CheckCluster(); err != nil || cfg.Storage.S3.AccessKey != "file-key" {
		t.Fatalf("explicit keys replaced: %v %q", err, cfg.Storage.S3.AccessKey)
	}
}

func TestClusterSettingsRefused(t *testing.T) {
	for _, c := range []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.Target = "ingester" }, "want all, ingest, query or compact"},
		{func(c *Config) { c.Target = TargetQuery }, "needs storage.backend: s3"},
		{func(c *Config) { c.Storage.Backend = "gcs" }, "want local or s3"},
		{func(c *Config) { c.Storage.Backend = "s3" }, "needs storage.s3.endpoint and storage.s3.bucket"},
		{func(c *Config) {
			c.Storage.Backend, c.Storage.S3.Endpoint, c.Storage.S3.Bucket = "s3", "http://minio:9000", "b"
		}, "give host[:port]"},
		{func(c *Config) {
			c.Storage.Backend, c.Storage.S3.Endpoint, c.Storage.S3.Bucket = "s3", "minio:9000", "b"
			c.Storage.MaxDiskBytes = 10 << 30
		}, "storage.max_disk_bytes is for local storage"},
		{func(c *Config) {
			c.Storage.Backend, c.Storage.S3.Endpoint, c.Storage.S3.Bucket = "s3", "minio:9000", "b"
			c.Ingest.Log, c.NATS.URLs, c.Auth.Enabled = IngestLogJetStream, []string{"nats://n:4222"}, true
		}, "needs cluster.peer_token"},
	} {
		cfg := Default()
		c.mutate(&cfg)
		err := cfg.CheckCluster()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want an error containing %q", err, c.want)
		}
	}
	cfg := Default()
	if err := cfg.CheckCluster(); err != nil || cfg.Target != TargetAll || cfg.Storage.Backend != "local" {
		t.Fatalf("defaults: %v %q %q", err, cfg.Target, cfg.Storage.Backend)
	}
}
