package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster/embedded"
)

// Secrets the daemon is given in these tests; none may reach its log or its errors.
const (
	password = "s3cret-pa55word"
	token    = "tok3n-0f-consul"
	s3Secret = "s3-s3cret-4ccess-key"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// writeKeyPair writes a self-signed certificate and, if mismatched, the key of another
// certificate; it returns the paths and the key's PEM body.
func writeKeyPair(t *testing.T, dir string, mismatched bool) (certFile, keyFile, keyBody string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "drayage"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	if mismatched {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	require.NoError(t, os.WriteFile(keyFile, keyPEM, 0o600))
	lines := strings.Split(strings.TrimSpace(string(keyPEM)), "\n")
	return certFile, keyFile, strings.Join(lines[1:len(lines)-1], "")
}

// runDaemonFor runs 'drayage daemon' for a while in a fresh state dir with the given log
// format and extra arguments, and returns what it logged and the error it ended with.
func runDaemonFor(t *testing.T, d time.Duration, format string, args ...string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	cmd := newRootCmd()
	var logs bytes.Buffer
	cmd.SetOut(&logs)
	cmd.SetErr(&logs)
	cmd.SetArgs(append([]string{"--root", filepath.Join(dir, "state"), "--log-format", format, "--log-level", "debug",
		"daemon", "--name", "node-a", "--socket", filepath.Join(dir, "p.sock"), "--tls-dir", filepath.Join(dir, "tls")}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	return logs.String(), err
}

// assertNoSecret checks that a daemon's log and error hold none of the secrets.
func assertNoSecret(t *testing.T, logs string, err error, secrets ...string) {
	t.Helper()
	all := logs
	if err != nil {
		all += "\n" + err.Error()
	}
	for _, s := range append(secrets, password, token) {
		assert.NotContains(t, all, s)
	}
}

func TestNoSecretReachesTheLog(t *testing.T) {
	// An etcd server with authentication on, which refuses the password at once.
	ctx := context.Background()
	etcdAddr := freeAddr(t)
	etcd, err := embedded.Start(ctx, embedded.Options{Dir: t.TempDir(), Name: "etcd", ClientAddr: etcdAddr, PeerAddr: freeAddr(t)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = etcd.Close() })
	cli := etcd.Client()
	_, err = cli.UserAdd(ctx, "root", "root-pw")
	require.NoError(t, err)
	_, err = cli.UserGrantRole(ctx, "root", "root")
	require.NoError(t, err)
	_, err = cli.UserAdd(ctx, "drayage", "another-pw")
	require.NoError(t, err)
	_, err = cli.AuthEnable(ctx)
	require.NoError(t, err)
	// A Consul agent that refuses the token.
	consul := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "ACL not found", http.StatusForbidden)
	}))
	t.Cleanup(consul.Close)
	certFile, keyFile, keyBody := writeKeyPair(t, t.TempDir(), true)

	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			// etcd with a password, from the variables.
			t.Setenv("DRAYAGE_STORE", "etcd://"+etcdAddr)
			t.Setenv("DRAYAGE_STORE_USER", "drayage")
			t.Setenv("DRAYAGE_STORE_PASSWORD", password)
			logs, err := runDaemonFor(t, 3*time.Second, format)
			assert.Contains(t, logs, "cannot open the cluster store", "the failure is logged")
			assert.Contains(t, logs, "authentication failed")
			assertNoSecret(t, logs, err)

			// The same, from the flag.
			t.Setenv("DRAYAGE_STORE_PASSWORD", "")
			logs, err = runDaemonFor(t, 3*time.Second, format, "--store-password", password)
			assert.Contains(t, logs, "cannot open the cluster store")
			assertNoSecret(t, logs, err)
			t.Setenv("DRAYAGE_STORE_USER", "")

			// etcd with client TLS files whose key does not match.
			t.Setenv("DRAYAGE_STORE_CERT", certFile)
			t.Setenv("DRAYAGE_STORE_KEY", keyFile)
			logs, err = runDaemonFor(t, 1200*time.Millisecond, format)
			assert.Contains(t, logs, "store client certificate")
			assertNoSecret(t, logs, err, keyBody)
			t.Setenv("DRAYAGE_STORE_CERT", "")
			t.Setenv("DRAYAGE_STORE_KEY", "")

			// Consul with a token it refuses.
			t.Setenv("DRAYAGE_STORE", "consul://"+strings.TrimPrefix(consul.URL, "http://"))
			t.Setenv("DRAYAGE_STORE_TOKEN", token)
			logs, err = runDaemonFor(t, 1200*time.Millisecond, format)
			assert.Contains(t, logs, "cannot open the cluster store")
			assert.Contains(t, logs, "ACL not found")
			assertNoSecret(t, logs, err)
			t.Setenv("DRAYAGE_STORE_TOKEN", "")

			// Credentials written into the store URL are refused without repeating them.
			t.Setenv("DRAYAGE_STORE", "etcd://drayage:"+password+"@"+etcdAddr)
			logs, err = runDaemonFor(t, time.Second, format)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "credentials and TLS files have settings of their own")
			assertNoSecret(t, logs, err)
			t.Setenv("DRAYAGE_STORE", "consul://"+token+"@127.0.0.1:8500")
			logs, err = runDaemonFor(t, time.Second, format)
			require.Error(t, err)
			assertNoSecret(t, logs, err)

			// S3 credentials for seeding: the secret key is read from its file, and is
			// neither logged nor said when the file can't be read as a key.
			keyFile := filepath.Join(t.TempDir(), "s3-secret")
			require.NoError(t, os.WriteFile(keyFile, []byte(s3Secret+"\n"), 0o600))
			t.Setenv("DRAYAGE_STORE", "embedded")
			t.Setenv("DRAYAGE_S3_ENDPOINT", "http://127.0.0.1:1")
			t.Setenv("DRAYAGE_S3_ACCESS_KEY", "AKIDDRAYAGE")
			t.Setenv("DRAYAGE_S3_SECRET_KEY_FILE", keyFile)
			logs, err = runDaemonFor(t, 1500*time.Millisecond, format)
			assertNoSecret(t, logs, err, s3Secret)
			t.Setenv("DRAYAGE_S3_SECRET_KEY_FILE", keyFile+".missing")
			logs, err = runDaemonFor(t, time.Second, format)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "DRAYAGE_S3_SECRET_KEY_FILE")
			assertNoSecret(t, logs, err, s3Secret)
			for _, v := range []string{"DRAYAGE_S3_ENDPOINT", "DRAYAGE_S3_ACCESS_KEY", "DRAYAGE_S3_SECRET_KEY_FILE"} {
				t.Setenv(v, "")
			}
		})
	}
}
