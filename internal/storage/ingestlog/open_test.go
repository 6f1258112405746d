package ingestlog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/ariadne-tracing/ariadne/internal/testkit/natstest"
)

// Each of the three ways nats.* credentials can be given opens the log on a server that
// demands them (creating its stream and buckets and publishing through them); wrong ones are
// refused at Open with the server's reason, before anything is acknowledged.
func TestCredentials(t *testing.T) {
	for _, c := range []struct {
		name        string
		conf        func(t *testing.T) string
		good, wrong func(t *testing.T) Config
	}{
		{"user and password",
			func(*testing.T) string { return `authorization { user: ariadne, password: s3cret }` },
			func(*testing.T) Config { return Config{User: "ariadne", Password: "s3cret"} },
			func(*testing.T) Config { return Config{User: "ariadne", Password: "guess"} }},
		{"token",
			func(*testing.T) string { return `authorization { token: t0ken-of-ariadne }` },
			func(*testing.T) Config { return Config{Token: "t0ken-of-ariadne"} },
			func(*testing.T) Config { return Config{} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkCredentials(t, c.conf(t), c.good(t), c.wrong(t))
		})
	}
	t.Run("credentials file", func(t *testing.T) {
		conf, good, wrong := operatorMode(t)
		checkCredentials(t, conf, Config{CredsFile: good}, Config{CredsFile: wrong})
	})
}

func checkCredentials(t *testing.T, conf string, good, wrong Config) {
	t.Helper()
	nc := natstest.Start(t, 1, conf)
	good.Replicas, good.Partitions = 1, 2
	l := openLog(t, nc.URLs(), good)
	if err := l.Publish(context.Background(), "team-a", request(t, 0, 4, 2)); err != nil {
		t.Fatalf("publish with good credentials: %v", err)
	}
	wrong.Replicas, wrong.Partitions = 1, 2
	wrong.URLs = strings.Split(nc.URLs(), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bad, err := Open(ctx, wrong)
	if err == nil {
		bad.Close()
		t.Fatal("Open with wrong credentials succeeded")
	}
	if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		t.Fatalf("Open with wrong credentials: %v, want the server's authorization violation", err)
	}
}

// operatorMode makes a decentralised-auth server (operator, system and application accounts
// preloaded, JetStream enabled for the application account) and two user credentials files:
// one of the application account, one of an account the server does not know.
func operatorMode(t *testing.T) (conf, good, wrong string) {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	op, err := nkeys.CreateOperator()
	must(err)
	opPub, _ := op.PublicKey()
	opJWT, err := jwt.NewOperatorClaims(opPub).Encode(op)
	must(err)
	account := func(name string, js bool) (nkeys.KeyPair, string, string) {
		kp, err := nkeys.CreateAccount()
		must(err)
		pub, _ := kp.PublicKey()
		ac := jwt.NewAccountClaims(pub)
		ac.Name = name
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		enc, err := ac.Encode(op)
		must(err)
		return kp, pub, enc
	}
	_, sysPub, sysJWT := account("SYS", false)
	appKP, appPub, appJWT := account("APP", true)
	strangerKP, _, _ := account("STRANGER", true) // signed by the operator, never preloaded
	creds := func(acct nkeys.KeyPair, file string) string {
		u, err := nkeys.CreateUser()
		must(err)
		uPub, _ := u.PublicKey()
		seed, _ := u.Seed()
		uc := jwt.NewUserClaims(uPub)
		uc.IssuerAccount = ""
		ujwt, err := uc.Encode(acct)
		must(err)
		b, err := jwt.FormatUserConfig(ujwt, seed)
		must(err)
		path := filepath.Join(dir, file)
		must(os.WriteFile(path, b, 0o600))
		return path
	}
	conf = fmt.Sprintf("operator: %s\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n  %s: %s\n  %s: %s\n}\n",
		opJWT, sysPub, sysPub, sysJWT, appPub, appJWT)
	return conf, creds(appKP, "app.creds"), creds(strangerKP, "stranger.creds")
}

// A node started while its NATS cluster has no quorum waits for it instead of failing its start:
// with two of three servers down, Open retries until they are back, then creates the stream and
// buckets with their replicas. A configuration the servers refuse fails at once.
func TestOpenWaitsForQuorum(t *testing.T) {
	nc := natstest.Start(t, 3)
	nc.Servers[1].Kill()
	nc.Servers[2].Kill()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		l, err := Open(ctx, Config{URLs: []string{nc.Servers[0].URL}, Partitions: 2})
		if err == nil {
			defer l.Close()
			err = l.Publish(ctx, "team-a", request(t, 0, 4, 2))
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Open returned without a quorum: %v", err)
	case <-time.After(3 * time.Second):
	}
	nc.Servers[1].Restart()
	nc.Servers[2].Restart()
	if err := <-done; err != nil {
		t.Fatalf("Open once the quorum was back: %v", err)
	}

	single := natstest.Start(t, 1)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := Open(ctx, Config{URLs: []string{single.URLs()}, Replicas: 3, Partitions: 2})
	if err == nil {
		l.Close()
		t.Fatal("replicas 3 on one server opened")
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("a refused configuration took %v to fail: %v", time.Since(start), err)
	}
	t.Logf("replicas 3 on one server: %v", err)
}
