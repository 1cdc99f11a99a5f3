package seed_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/seed"
	"github.com/drayage/drayage/daemon/seed/seedtest"
	"github.com/drayage/drayage/daemon/seed/source"
)

// archive is 8 MiB of random bytes: what a fetch moves, whatever it is.
func archive(t *testing.T) ([]byte, string) {
	b := make([]byte, 8<<20)
	_, _ = rand.Read(b)
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

func serve(t *testing.T) *seedtest.Server {
	cert, err := seedtest.NewCert("127.0.0.1")
	require.NoError(t, err)
	s, err := seedtest.Start("127.0.0.1:0", cert)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// A download cut at 30% resumes where it was cut, with If-Range: only the rest crosses
// the network again.
func TestACutDownloadResumesWhereItWasCut(t *testing.T) {
	s := serve(t)
	b, sum := archive(t)
	s.Put("/a.tar", b)
	cut := int64(len(b)) * 3 / 10
	s.CutAfter("/a.tar", cut)
	src, err := source.Parse(s.URL+"/a.tar", sum)
	require.NoError(t, err)
	f := &seed.Fetcher{HTTP: s.Client()}
	file := filepath.Join(t.TempDir(), "download")

	_, err = f.Fetch(context.Background(), src, file, nil)
	require.Error(t, err, "the first attempt is cut")
	assert.False(t, seed.Permanent(err), "a cut is worth another try: %v", err)
	var last int64
	res, err := f.Fetch(context.Background(), src, file, func(got, total int64) { last = got; assert.Equal(t, int64(len(b)), total) })
	require.NoError(t, err)
	assert.Equal(t, cut, res.From, "the second attempt starts where the first was cut")
	assert.Equal(t, int64(len(b))-cut, res.Got)
	assert.Equal(t, int64(len(b)), last)
	assert.Equal(t, int64(len(b)), s.Sent("/a.tar"), "not a byte was sent twice")
	assert.Equal(t, []string{"", "bytes=2516582-"}, s.Ranges("/a.tar"))
	got, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(b, got))

	again, err := f.Fetch(context.Background(), src, file, nil)
	require.NoError(t, err)
	assert.Zero(t, again.Got, "a finished download is not fetched again")
}

// A server that ignores Range, or whose archive changed, sends the archive whole: the
// download starts over rather than splicing two archives.
func TestADownloadStartsOverWhenTheServerWillNotResume(t *testing.T) {
	for name, change := range map[string]func(s *seedtest.Server, b []byte){
		"range ignored":   func(s *seedtest.Server, _ []byte) { s.IgnoreRange.Store(true) },
		"archive changed": func(s *seedtest.Server, b []byte) { s.Put("/a.tar", b) },
	} {
		t.Run(name, func(t *testing.T) {
			s := serve(t)
			b, sum := archive(t)
			s.Put("/a.tar", b)
			s.CutAfter("/a.tar", 1<<20)
			src, err := source.Parse(s.URL+"/a.tar", sum)
			require.NoError(t, err)
			f := &seed.Fetcher{HTTP: s.Client()}
			file := filepath.Join(t.TempDir(), "download")
			_, err = f.Fetch(context.Background(), src, file, nil)
			require.Error(t, err)
			change(s, b)
			res, err := f.Fetch(context.Background(), src, file, nil)
			require.NoError(t, err)
			assert.True(t, res.Restarted)
			assert.Equal(t, int64(len(b)), res.Got)
		})
	}
}

// The wrong sha256 fails for good, and the download goes; so does a missing archive.
func TestAWrongSHA256OrAMissingArchiveIsPermanent(t *testing.T) {
	s := serve(t)
	b, _ := archive(t)
	s.Put("/a.tar", b)
	src, err := source.Parse(s.URL+"/a.tar", hex.EncodeToString(make([]byte, 32)))
	require.NoError(t, err)
	f := &seed.Fetcher{HTTP: s.Client()}
	file := filepath.Join(t.TempDir(), "download")
	_, err = f.Fetch(context.Background(), src, file, nil)
	require.ErrorIs(t, err, seed.ErrMismatch)
	assert.True(t, seed.Permanent(err))
	assert.Contains(t, err.Error(), "not the 0000000000000000000000000000000000000000000000000000000000000000 the volume was created with")
	_, serr := os.Stat(file)
	assert.ErrorIs(t, serr, os.ErrNotExist, "a download that is not the archive is not kept")

	missing, err := source.Parse(s.URL+"/missing.tar", "")
	require.NoError(t, err)
	_, err = f.Fetch(context.Background(), missing, file, nil)
	require.ErrorIs(t, err, seed.ErrRefused)
	assert.Contains(t, err.Error(), "404 Not Found")
}

func TestFormatIsToldByTheFirstBytes(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		head []byte
		want string
	}{
		"gzip": {[]byte{0x1f, 0x8b, 8, 0}, "gzip"},
		"zstd": {[]byte{0x28, 0xb5, 0x2f, 0xfd, 0}, "zstd"},
		"tar":  {append(make([]byte, 257), "ustar\x0000"...), "tar"},
		"xz":   {[]byte{0xfd, '7', 'z', 'X', 'Z', 0}, "xz"},
		"text": {[]byte("hello"), "neither gzip, zstd nor tar"},
	} {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, tc.head, 0o600))
		got, err := seed.Format(p)
		if err != nil {
			require.ErrorIs(t, err, seed.ErrFormat)
			assert.Contains(t, err.Error(), tc.want)
			continue
		}
		assert.Equal(t, tc.want, got)
	}
}

// Open reads a zstd archive, told by its first bytes.
func TestOpenDecompresses(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.tar.zst")
	require.NoError(t, os.WriteFile(p, zstdOf(t, []byte("tar bytes")), 0o600))
	open, err := seed.Open(p)
	require.NoError(t, err)
	r, err := open()
	require.NoError(t, err)
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	require.NoError(t, r.Close())
	assert.Equal(t, "tar bytes", string(b))
}

func zstdOf(t *testing.T, b []byte) []byte {
	e, err := zstd.NewWriter(nil)
	require.NoError(t, err)
	return e.EncodeAll(b, nil)
}

// From a real S3 server (versitygw): a download cut on the way resumes with a ranged
// read of the same object; an object replaced meanwhile is read again whole; a missing
// one is refused for good.
func TestAnS3DownloadResumesByRanges(t *testing.T) {
	ctx := context.Background()
	s3 := seedtest.StartS3(t, freeLoopback(t), "secret-key-of-the-test", "seeds")
	proxy, err := seedtest.StartProxy("127.0.0.1:0", s3.Addr)
	require.NoError(t, err)
	defer proxy.Close()
	b, sum := archive(t)
	_, err = s3.Client.PutObject(ctx, "seeds", "a/data.tar", bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{})
	require.NoError(t, err)
	f := &seed.Fetcher{S3: seed.S3Config{Endpoint: "http://" + proxy.Addr, Region: s3.Region, AccessKey: s3.Access, SecretKey: s3.Secret}}
	src, err := source.Parse("s3://seeds/a/data.tar", sum)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "download")

	// The stat and the read share one connection: cut it at 30% of the object.
	proxy.CutAfter(int64(len(b)) * 3 / 10)
	_, err = f.Fetch(ctx, src, file, nil)
	require.Error(t, err, "the first attempt is cut")
	assert.False(t, seed.Permanent(err), "%v", err)
	res, err := f.Fetch(ctx, src, file, nil)
	require.NoError(t, err)
	assert.Greater(t, res.From, int64(len(b))/4, "the second attempt started where the first was cut")
	assert.Equal(t, int64(len(b))-res.From, res.Got)
	assert.Less(t, proxy.Sent(), int64(len(b))*11/10, "what came before the cut was not sent again")
	whole, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(b, whole))

	missing, err := source.Parse("s3://seeds/a/none.tar", "")
	require.NoError(t, err)
	_, err = f.Fetch(ctx, missing, filepath.Join(t.TempDir(), "none"), nil)
	require.ErrorIs(t, err, seed.ErrRefused)
	assert.Contains(t, err.Error(), "NoSuchKey")
}

func freeLoopback(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// A server that stops sending mid-way is given up after the idle timeout, and the next
// attempt resumes.
func TestASilentServerIsGivenUp(t *testing.T) {
	s := serve(t)
	b, sum := archive(t)
	s.Put("/a.tar", b)
	s.Rate.Store(1) // a byte a second: silent, as far as the download can tell
	src, err := source.Parse(s.URL+"/a.tar", sum)
	require.NoError(t, err)
	f := &seed.Fetcher{HTTP: s.Client(), IdleTimeout: 300 * time.Millisecond}
	file := filepath.Join(t.TempDir(), "download")
	_, err = f.Fetch(context.Background(), src, file, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the source went silent: nothing arrived for 300ms")
	assert.False(t, seed.Permanent(err))
	s.Rate.Store(0)
	_, err = f.Fetch(context.Background(), src, file, nil)
	require.NoError(t, err)
}
