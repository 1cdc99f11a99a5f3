package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/drayage/drayage/daemon/seed/seedtest"
)

// Seeding: volumes created with -o from=URL on real engines, filled from a real HTTPS
// server (a test CA the daemons trust through DRAYAGE_SEED_CA, which can cut a download
// or pace it) and from a real S3 server (versitygw, built by scripts/build-tools.sh). One
// two-node cluster serves every case.

const (
	s3Secret = "s3cret-Key-that-must-never-show"
	s3Bucket = "seeds"
)

// seedCluster is the cluster and the servers the seeding tests share.
type seedCluster struct {
	a, b  *node
	https *seedtest.Server
	s3    *minio.Client
}

func startSeedCluster(t *testing.T) *seedCluster {
	cert, err := seedtest.NewCert(bridgeHost)
	require.NoError(t, err)
	_, port, _ := net.SplitHostPort(freeAddr())
	s3Addr := net.JoinHostPort(bridgeHost, port)
	nodes, _ := startNodesWith(t, embeddedStore, []string{"seed-a", "seed-b"}, func(n *node) {
		require.NoError(t, os.WriteFile(filepath.Join(n.state, "seed-ca.pem"), cert.CA, 0o600))
		require.NoError(t, os.WriteFile(filepath.Join(n.state, "s3-secret"), []byte(s3Secret+"\n"), 0o600))
	}, "DRAYAGE_SEED_CA=/var/lib/drayage/seed-ca.pem", "DRAYAGE_S3_ENDPOINT=http://"+s3Addr,
		"DRAYAGE_S3_REGION=us-east-1", "DRAYAGE_S3_ACCESS_KEY=drayage-test", "DRAYAGE_S3_SECRET_KEY_FILE=/var/lib/drayage/s3-secret")
	https, err := seedtest.Start(bridgeHost+":0", cert)
	require.NoError(t, err)
	t.Cleanup(https.Close)
	s3 := seedtest.StartS3(t, s3Addr, s3Secret, s3Bucket) // the bridge exists now
	return &seedCluster{a: nodes[0], b: nodes[1], https: https, s3: s3.Client}
}

// seedTree is what the archives hold: nested directories, owners and modes, a hardlink,
// a symlink, an empty directory and file, a sparse file and 2 MiB of random content.
func seedTree(t *testing.T) string {
	src := filepath.Join(t.TempDir(), "src")
	must := func(err error) { t.Helper(); require.NoError(t, err) }
	must(os.MkdirAll(filepath.Join(src, "www", "static", "empty"), 0o755))
	must(os.WriteFile(filepath.Join(src, "www", "index.html"), []byte("<h1>seeded</h1>\n"), 0o644))
	big := make([]byte, 2<<20)
	_, _ = rand.Read(big)
	must(os.WriteFile(filepath.Join(src, "www", "static", "blob.bin"), big, 0o600))
	must(os.WriteFile(filepath.Join(src, "empty"), nil, 0o640))
	must(os.Link(filepath.Join(src, "www", "index.html"), filepath.Join(src, "index-link.html")))
	must(os.Symlink("www/index.html", filepath.Join(src, "current")))
	must(os.Chown(filepath.Join(src, "www", "static"), 1000, 1000))
	must(os.Chown(filepath.Join(src, "www", "static", "blob.bin"), 1000, 1001))
	f, err := os.Create(filepath.Join(src, "sparse.img"))
	must(err)
	_, err = f.WriteAt([]byte("end"), 32<<20)
	must(err)
	must(f.Close())
	must(os.Chmod(src, 0o755))
	return src
}

// tarOf archives dir with GNU tar, as a user would.
func tarOf(t *testing.T, dir string) []byte {
	out := filepath.Join(t.TempDir(), "a.tar")
	run(t, "tar", "--numeric-owner", "--sparse", "--xattrs", "--format=posix", "-C", dir, "-cf", out, ".")
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	return b
}

func gzipOf(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, err := w.Write(b)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

func zstdOf(t *testing.T, b []byte) []byte {
	e, err := zstd.NewWriter(nil)
	require.NoError(t, err)
	return e.EncodeAll(b, nil)
}

func sha256Of(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// filled waits until volume name is filled and idle on node n.
func (c *seedCluster) filled(t *testing.T, n *node, name string) {
	t.Helper()
	eventually(t, 2*time.Minute, "volume "+name+" to be filled", func() bool {
		info, err := tryInspect(n.state, name)
		return err == nil && info.State == "idle"
	})
}

// gone waits until volume name is in no node's list.
func (c *seedCluster) gone(t *testing.T, name string) {
	t.Helper()
	eventually(t, time.Minute, "volume "+name+" to be removed", func() bool {
		return !strings.Contains(c.a.drayage("volume", "ls"), name)
	})
}

func mountOf(name string) string {
	return "type=volume,source=" + name + ",target=/data,volume-driver=" + nodePlugin
}

// TestVolumesFromAndToObjectStorage: volumes filled from archives (https, s3), then
// backed up to S3 and restored (backupCases), on one two-node cluster.
func TestVolumesFromAndToObjectStorage(t *testing.T) {
	c := startSeedCluster(t)
	src := seedTree(t)
	want := treeOf(t, src)
	archive := tarOf(t, src)
	kinds := map[string][]byte{"tar": archive, "tar.gz": gzipOf(t, archive), "tar.zst": zstdOf(t, archive)}

	// Every kind of archive, from https (told by its content: the names say nothing), and
	// the first container on the other node sees the whole tree.
	t.Run("https", func(t *testing.T) {
		for kind, b := range kinds {
			name := "web-" + strings.ReplaceAll(kind, ".", "-")
			c.https.Put("/"+name, b)
			c.a.docker("volume", "create", "--driver", nodePlugin, "-o", "from="+c.https.URL+"/"+name, "-o", "sha256="+sha256Of(b), name)
			out := c.b.run("--mount", mountOf(name), testImage, "cat", "/data/current", "/data/index-link.html")
			assert.Equal(t, "<h1>seeded</h1>\n<h1>seeded</h1>", out, kind)
			assert.Equal(t, want, treeOf(t, filepath.Join(c.b.state, "volumes", name, "data")), "%s: the tree arrived as it was archived", kind)
			assert.Less(t, allocated(t, filepath.Join(c.b.state, "volumes", name, "data", "sparse.img")), int64(1<<20), "%s: the sparse file stayed sparse", kind)
		}
	})

	t.Run("s3", func(t *testing.T) {
		for kind, b := range kinds {
			name := "s3-" + strings.ReplaceAll(kind, ".", "-")
			_, err := c.s3.PutObject(context.Background(), s3Bucket, "site/"+name, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{})
			require.NoError(t, err)
			c.a.docker("volume", "create", "--driver", nodePlugin, "-o", "from=s3://"+s3Bucket+"/site/"+name, name)
			out := c.a.run("--mount", mountOf(name), testImage, "cat", "/data/www/index.html")
			assert.Equal(t, "<h1>seeded</h1>", out, kind)
			assert.Equal(t, want, treeOf(t, filepath.Join(c.a.state, "volumes", name, "data")), kind)
			for _, n := range []*node{c.a, c.b} {
				assert.NotContains(t, n.docker("volume", "inspect", name), s3Secret, "docker volume inspect never shows the secret key")
				assert.NotContains(t, n.drayage("volume", "inspect", name), s3Secret, "nor drayage volume inspect")
			}
		}
		for _, n := range []*node{c.a, c.b} {
			assert.NotContains(t, n.log(), s3Secret, "no log line shows the secret key")
		}
		missing := "s3missing"
		c.a.docker("volume", "create", "--driver", nodePlugin, "-o", "from=s3://"+s3Bucket+"/site/nothing.tar", missing)
		c.gone(t, missing)
		assert.Contains(t, c.a.log(), "NoSuchKey")
	})

	// A download cut at 30% resumes from there: no byte is sent twice.
	t.Run("cut", func(t *testing.T) {
		b := bigArchive(t, 32<<20)
		c.https.Put("/cut.tar.zst", b)
		c.https.CutAfter("/cut.tar.zst", int64(len(b))*3/10)
		c.a.docker("volume", "create", "--driver", nodePlugin, "-o", "from="+c.https.URL+"/cut.tar.zst", "-o", "sha256="+sha256Of(b), "cutvol")
		c.filled(t, c.a, "cutvol")
		assert.Equal(t, int64(len(b)), c.https.Sent("/cut.tar.zst"), "the bytes before the cut were not sent again")
		assert.Equal(t, []string{"", fmt.Sprintf("bytes=%d-", int64(len(b))*3/10)}, c.https.Ranges("/cut.tar.zst"))
		t.Logf("cut at 30%% of %d bytes: %d bytes sent in all, %d requests", len(b), c.https.Sent("/cut.tar.zst"), c.https.Requests("/cut.tar.zst"))
	})

	// The daemon is killed at 60% of a paced download: the restarted daemon takes the
	// fill up and resumes from what it had synced; a container started on the other node
	// meanwhile waits for the fill, within its Mount budget, and sees the whole tree.
	t.Run("kill", func(t *testing.T) {
		b := bigArchive(t, 16<<20)
		c.https.Put("/kill.tar.zst", b)
		c.https.Rate.Store(1 << 20)
		defer c.https.Rate.Store(0)
		c.a.docker("volume", "create", "--driver", nodePlugin, "-o", "from="+c.https.URL+"/kill.tar.zst", "-o", "sha256="+sha256Of(b), "killvol")
		eventually(t, time.Minute, "60% of the download", func() bool { return c.https.Sent("/kill.tar.zst") >= int64(len(b))*6/10 })
		before := c.a.docker("volume", "inspect", "killvol")
		assert.Contains(t, before, `"state": "filling"`, "docker volume inspect shows the fill")
		assert.Contains(t, before, `"progress": "`, "with its progress")
		t.Logf("docker volume inspect during the fill: %s", before)
		c.a.killPlugin()
		assert.Contains(t, c.b.drayage("volume", "inspect", "killvol"), "filling")
		out := c.b.run("--mount", mountOf("killvol"), testImage, "sh", "-c", "wc -c < /data/random.bin")
		assert.Equal(t, "16777216", strings.TrimSpace(out))
		again := c.https.Sent("/kill.tar.zst") - int64(len(b))
		t.Logf("killed at 60%% of %d bytes: %d bytes downloaded again (%.1f%%), %d requests, ranges %v", len(b), again,
			100*float64(again)/float64(len(b)), c.https.Requests("/kill.tar.zst"), c.https.Ranges("/kill.tar.zst"))
		assert.LessOrEqual(t, again, int64(2<<20), "at most what was not yet synced (a second of it, at 1 MiB/s) is downloaded again")
		assert.Contains(t, strings.Join(c.https.Ranges("/kill.tar.zst"), " "), "bytes=", "the restarted daemon resumed with a range")
	})

	// A container started while a fill runs longer than the Mount budget (25 s) fails,
	// saying how far the fill is; started again once it is done, it sees the whole tree.
	t.Run("slow", func(t *testing.T) {
		b := bigArchive(t, 8<<20)
		c.https.Put("/slow.tar.zst", b)
		c.https.Rate.Store(256 << 10) // 32 s for the whole archive
		defer c.https.Rate.Store(0)
		c.a.docker("volume", "create", "--driver", nodePlugin, "-o", "from="+c.https.URL+"/slow.tar.zst", "-o", "sha256="+sha256Of(b), "slowvol")
		eventually(t, time.Minute, "the download to start", func() bool { return c.https.Sent("/slow.tar.zst") > 0 })
		c.https.Rate.Store(0) // the running answer stays paced
		out := mustFail(t, "docker", "-H", c.b.engine.host, "run", "--rm", "--network", "none", "--mount", mountOf("slowvol"), testImage, "true")
		t.Logf("docker run on the other node during a fill longer than the Mount budget: %s", strings.TrimSpace(out))
		assert.Contains(t, out, "is still being filled from "+c.https.URL+"/slow.tar.zst")
		assert.Regexp(t, `: \d+%, [\d.]+ of [\d.]+ MiB`, out, "with its progress")
		assert.Contains(t, out, "continues in the background")
		c.filled(t, c.a, "slowvol")
		assert.Equal(t, "8388608", c.b.run("--mount", mountOf("slowvol"), testImage, "sh", "-c", "wc -c < /data/random.bin"))
	})

	// What no retry cures leaves no volume, and says why in the log of the node.
	t.Run("refused", func(t *testing.T) {
		for name, tc := range map[string]struct {
			archive []byte
			sha     string
			why     string
		}{
			"badsum":   {kinds["tar.gz"], strings.Repeat("0", 64), "sha256 mismatch"},
			"dotdot":   {gzipOf(t, tarWith(t, &tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o644, Size: 4}, []byte("evil"))), "", `../escape`},
			"symlink":  {tarWith(t, &tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc"}, nil, &tar.Header{Name: "link/cron", Typeflag: tar.TypeReg, Mode: 0o644, Size: 4}, []byte("evil")), "", `a symlink: unpacking it would write through it`},
			"absolute": {tarWith(t, &tar.Header{Name: "/etc/drayage-evil", Typeflag: tar.TypeReg, Mode: 0o644, Size: 4}, []byte("evil")), "", `/etc/drayage-evil`},
			"hardlink": {tarWith(t, &tar.Header{Name: "shadow", Typeflag: tar.TypeLink, Linkname: "/etc/shadow"}, nil), "", `is a hardlink to`},
			"device":   {tarWith(t, &tar.Header{Name: "sda", Typeflag: tar.TypeBlock, Mode: 0o660, Devmajor: 8}, nil), "", `is a device node`},
			"bomb":     {zstdOf(t, bombHeader(t)), "", "larger than the free space"},
			"gzbomb":   {gzipBomb(t), "", "larger than the free space"},
			"notar":    {gzipOf(t, bytes.Repeat([]byte("not tar "), 1000)), "", "not a readable tar archive"},
		} { // the engine's log quotes the plugin's lines again: whys hold no quotes
			c.https.Put("/"+name, tc.archive)
			opts := []string{"volume", "create", "--driver", nodePlugin, "-o", "from=" + c.https.URL + "/" + name}
			if tc.sha != "" {
				opts = append(opts, "-o", "sha256="+tc.sha)
			}
			c.a.docker(append(opts, name)...)
			c.gone(t, name)
			log := c.a.log()
			assert.Contains(t, log, tc.why, name)
			assert.Contains(t, log, `volume=`+name, name)
		}
		escaped, _ := filepath.Glob(filepath.Join(c.a.state, "*", "escape"))
		assert.Empty(t, escaped, "nothing was written outside staging")
		rootfs := filepath.Join(strings.TrimSpace(c.a.docker("info", "-f", "{{.DockerRootDir}}")), "plugins",
			strings.TrimSpace(c.a.docker("plugin", "inspect", "-f", "{{.Id}}", nodePlugin)), "rootfs")
		for _, p := range []string{"/etc/cron", "/etc/drayage-evil", filepath.Join(rootfs, "etc", "cron"), filepath.Join(rootfs, "etc", "drayage-evil")} {
			_, err := os.Stat(p)
			assert.ErrorIs(t, err, os.ErrNotExist, "nothing was written to %s, on the host or in the plugin", p)
		}
		_, err := os.Stat(filepath.Join(rootfs, "drayage"))
		require.NoError(t, err, "the plugin's rootfs is where the checks above look")
	})

	// A setuid file arrives without its bit in a volume that does not allow privileged
	// content, and the log says so; with allow-privileged it keeps it.
	t.Run("setuid", func(t *testing.T) {
		b := tarWith(t, &tar.Header{Name: "su", Typeflag: tar.TypeReg, Mode: 0o4755, Size: 2}, []byte("#!"))
		c.https.Put("/setuid.tar", b)
		for name, want := range map[string]string{"plainsu": "755", "privsu": "4755"} {
			opts := []string{"volume", "create", "--driver", nodePlugin, "-o", "from=" + c.https.URL + "/setuid.tar", "-o", "sha256=" + sha256Of(b)}
			if name == "privsu" {
				opts = append(opts, "-o", "allow-privileged=true")
			}
			c.a.docker(append(opts, name)...)
			out := c.b.run("--mount", mountOf(name), testImage, "stat", "-c", "%a", "/data/su")
			assert.Equal(t, want, out, name)
		}
		assert.Contains(t, c.a.log(), "stripped privileged content from the source of a volume created without allow-privileged", "the log says what was stripped")
	})

	// Bad options are refused at create, saying what to give instead.
	t.Run("options", func(t *testing.T) {
		out := mustFail(t, "docker", "-H", c.a.engine.host, "volume", "create", "--driver", nodePlugin, "-o", "from=http://"+bridgeHost+"/a.tar", "plain")
		assert.Contains(t, out, "plain http")
		out = mustFail(t, "docker", "-H", c.a.engine.host, "volume", "create", "--driver", nodePlugin, "-o", "from=https://u:pw@"+bridgeHost+"/a.tar", "creds")
		assert.Contains(t, out, "carries credentials")
		assert.NotContains(t, out, "pw@")
	})

	t.Run("backup", func(t *testing.T) { backupCases(t, c) })
}

// bigArchive is a tar.zst of size random bytes: incompressible, so its download takes a
// while.
func bigArchive(t *testing.T, size int) []byte {
	b := make([]byte, size)
	_, _ = rand.Read(b)
	return zstdOf(t, tarWith(t, &tar.Header{Name: "random.bin", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))}, b))
}

// tarWith writes an archive of header and content pairs (content nil: none).
func tarWith(t *testing.T, parts ...any) []byte {
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	for i := 0; i < len(parts); i += 2 {
		h := parts[i].(*tar.Header)
		h.ModTime = time.Unix(1_700_000_000, 0)
		require.NoError(t, w.WriteHeader(h))
		if b, _ := parts[i+1].([]byte); b != nil {
			_, err := w.Write(b)
			require.NoError(t, err)
		}
	}
	require.NoError(t, w.Close())
	return buf.Bytes()
}

// gzipBomb is a real gzip bomb: a tar header declaring a 1 TiB file, then 1 GiB of
// zeros in 1 MiB of gzip members (gzip streams may be concatenated; each decompresses
// about a thousandfold). It is refused at its header, before its zeros are inflated.
func gzipBomb(t *testing.T) []byte {
	var hdr bytes.Buffer
	w := tar.NewWriter(&hdr)
	require.NoError(t, w.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 40}))
	zeros := gzipOf(t, make([]byte, 64<<20))
	out := gzipOf(t, hdr.Bytes())
	for range 16 {
		out = append(out, zeros...)
	}
	return out
}

// bombHeader is the start of an archive that declares a 1 PiB file: a bomb's headers,
// refused before its content would be read.
func bombHeader(t *testing.T) []byte {
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	require.NoError(t, w.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 50}))
	return append(buf.Bytes(), make([]byte, 1<<20)...) // the header is written at once; no Flush, which wants the content
}
