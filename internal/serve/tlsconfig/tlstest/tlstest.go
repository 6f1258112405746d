// Package tlstest makes certificate authorities and certificates for tests of TLS listeners and
// clients, with crypto/x509, so no test depends on files or tools from outside.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA issues certificates.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	PEM  []byte
}

// NewCA makes a self-signed CA valid for a day.
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &CA{Cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Pool is a certificate pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue returns a PEM certificate and key: a server certificate for 127.0.0.1 and localhost, or
// a client certificate.
func (ca *CA) Issue(tb testing.TB, serial int64, client bool) (certPEM, keyPEM []byte) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "ariadne-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// WriteFile writes b to path through a rename, as certificate managers do, so a reader never
// sees half a file.
func WriteFile(tb testing.TB, path string, b []byte) {
	tb.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

// Files is a CA, a server certificate (serial 100) and a client certificate (serial 200) from
// it, and a client certificate (serial 300) from another CA, written to a directory.
type Files struct {
	CA, Other                     *CA
	ServerCert, ServerKey, CAFile string
	ClientCert, ClientKey         string
	StrangerCert, StrangerKey     string
}

// NewFiles writes a Files set to a new temporary directory.
func NewFiles(tb testing.TB) *Files {
	dir := tb.TempDir()
	f := &Files{CA: NewCA(tb, "test CA"), Other: NewCA(tb, "another CA")}
	p := func(n string) string { return filepath.Join(dir, n) }
	f.ServerCert, f.ServerKey, f.CAFile = p("server.crt"), p("server.key"), p("ca.crt")
	f.ClientCert, f.ClientKey = p("client.crt"), p("client.key")
	f.StrangerCert, f.StrangerKey = p("stranger.crt"), p("stranger.key")
	c, k := f.CA.Issue(tb, 100, false)
	WriteFile(tb, f.ServerCert, c)
	WriteFile(tb, f.ServerKey, k)
	WriteFile(tb, f.CAFile, f.CA.PEM)
	c, k = f.CA.Issue(tb, 200, true)
	WriteFile(tb, f.ClientCert, c)
	WriteFile(tb, f.ClientKey, k)
	c, k = f.Other.Issue(tb, 300, true)
	WriteFile(tb, f.StrangerCert, c)
	WriteFile(tb, f.StrangerKey, k)
	return f
}
