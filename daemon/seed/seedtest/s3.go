package seedtest

import (
	"bytes"
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/cluster/storetest"
)

// S3 is a real S3-compatible server for a test: versitygw (Apache-2.0) serving a
// directory of its own, built by scripts/build-tools.sh versitygw.
type S3 struct {
	// Addr is where it listens (plain HTTP); Access and Secret its root credentials;
	// Region its region.
	Addr, Access, Secret, Region string
	// Client reaches it with those credentials.
	Client *minio.Client
}

// StartS3 starts versitygw on addr (an IP and port) with a bucket, stopped when the test
// ends. The test fails, never skips, if versitygw is not built.
func StartS3(t testing.TB, addr, secret, bucket string) *S3 {
	t.Helper()
	bin := storetest.FindBinary(t, "versitygw", "DRAYAGE_VERSITYGW", "build it with scripts/build-tools.sh versitygw (make test does)")
	s := &S3{Addr: addr, Access: "drayage-test", Secret: secret, Region: "us-east-1"}
	cmd := exec.Command(bin, "--access", s.Access, "--secret", s.Secret, "--region", s.Region, "--port", addr, "posix", t.TempDir())
	var out bytes.Buffer // its banner and access log, shown if the test fails
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("versitygw on %s said:\n%s", addr, out.String())
		}
	})
	c, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(s.Access, s.Secret, ""), Region: s.Region, BucketLookup: minio.BucketLookupPath})
	require.NoError(t, err)
	s.Client = c
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.MakeBucket(context.Background(), bucket, minio.MakeBucketOptions{Region: s.Region})
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw on %s did not answer within 30s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
