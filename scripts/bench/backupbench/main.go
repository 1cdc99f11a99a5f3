// Command backupbench times drayage's backups and restores against tar | zstd uploaded
// with the same S3 client, to and from a real S3 server (versitygw on loopback, storing
// on this disk), in one run: make bench runs it on its datasets.
//
//	backupbench -versitygw BIN -work DIR -runs N DATASET...
//
// For each dataset (a directory under DIR) and run, each from a cold page cache:
// drayage backup (a full one, to a fresh prefix), the same tree as tar | zstd -1 -T0
// streamed to one object, drayage's restore of the snapshot, and the download piped to
// zstd -d | tar -x; then drayage's second backup after 1% of the files changed. It
// prints the medians and drayage's time as a ratio to tar | zstd's.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/drayage/drayage/daemon/backup"
	"github.com/drayage/drayage/daemon/transfer"
)

const bucket = "bench"

func main() {
	gw := flag.String("versitygw", "", "the versitygw binary")
	work := flag.String("work", "", "the directory holding the datasets, and the server's")
	runs := flag.Int("runs", 3, "runs of each tool")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the whole run here")
	flag.Parse()
	if *gw == "" || *work == "" || flag.NArg() == 0 {
		log.Fatal("usage: backupbench -versitygw BIN -work DIR [-runs N] DATASET...")
	}
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
	}
	if err := benchAll(*gw, *work, *runs, flag.Args()); err != nil {
		pprof.StopCPUProfile()
		log.Fatal(err)
	}
	pprof.StopCPUProfile()
}

// benchAll times every dataset against one S3 server.
func benchAll(gw, work string, runs int, sets []string) error {
	c, stop, err := startS3(gw, filepath.Join(work, "s3"))
	if err != nil {
		return err
	}
	defer stop()
	fmt.Printf("\nbackups to S3 (versitygw on loopback, this disk), median of %d runs, cold cache:\n", runs)
	fmt.Printf("%-8s %-28s %9s %10s %8s\n", "dataset", "operation", "seconds", "MB/s", "ratio")
	for _, ds := range sets {
		if err := bench(c, filepath.Join(work, ds), ds, work, runs); err != nil {
			return fmt.Errorf("%s: %w", ds, err)
		}
	}
	return nil
}

// bench times the operations on one dataset and prints them.
func bench(c *minio.Client, dir, ds, work string, runs int) error {
	ctx := context.Background()
	size, err := sizeOf(dir)
	if err != nil {
		return err
	}
	times := map[string][]time.Duration{}
	timed := func(what string, f func() error) error {
		cold()
		t := time.Now()
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		times[what] = append(times[what], time.Since(t))
		return nil
	}
	for run := range runs {
		repo := backup.Open(c, backup.Location{Bucket: bucket, Prefix: fmt.Sprintf("%s-%d/", ds, run)})
		key := fmt.Sprintf("%s-%d.tar.zst", ds, run)
		steps := []struct {
			what string
			f    func() error
		}{
			{"backup", func() error {
				_, err := repo.Run(ctx, backup.Request{Volume: ds, Node: "bench", Dir: dir})
				return err
			}},
			{"tar|zstd upload", func() error { return tarUp(ctx, c, dir, key) }},
			{"restore", func() error {
				_, snap, err := repo.Load(ctx, "")
				if err != nil {
					return err
				}
				_, err = transfer.Restore(ctx, filepath.Join(work, fmt.Sprintf("restore-drayage-%s-%d", ds, run)), snap, repo, transfer.RestoreOptions{Sink: transfer.SinkOptions{AllowPrivileged: true}})
				return err
			}},
			{"download|zstd -d|tar -x", func() error {
				return tarDown(ctx, c, key, filepath.Join(work, fmt.Sprintf("restore-tar-%s-%d", ds, run)))
			}},
		}
		for _, s := range steps {
			if err := timed(s.what, s.f); err != nil {
				return err
			}
		}
		if err := touch(dir, run); err != nil {
			return err
		}
		if err := timed("backup, 1% changed", func() error {
			_, err := repo.Run(ctx, backup.Request{Volume: ds, Node: "bench", Dir: dir})
			return err
		}); err != nil {
			return err
		}
	}
	row := func(what, peer string) {
		t := median(times[what])
		ratio := ""
		if peer != "" {
			ratio = fmt.Sprintf("%.2fx", t.Seconds()/median(times[peer]).Seconds())
		}
		fmt.Printf("%-8s %-28s %9.2f %10.1f %8s\n", ds, what, t.Seconds(), float64(size)/1e6/t.Seconds(), ratio)
	}
	row("backup", "tar|zstd upload")
	row("tar|zstd upload", "")
	row("restore", "download|zstd -d|tar -x")
	row("download|zstd -d|tar -x", "")
	row("backup, 1% changed", "tar|zstd upload")
	return nil
}

// tarUp streams tar | zstd -1 -T0 of dir to one object, as a script would.
func tarUp(ctx context.Context, c *minio.Client, dir, key string) error {
	cmd := exec.Command("sh", "-c", `tar -C "$1" --sparse --numeric-owner --xattrs -cf - . | zstd -1 -T0 -q -c`, "sh", dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	_, err = c.PutObject(ctx, bucket, key, out, -1, minio.PutObjectOptions{PartSize: 16 << 20})
	if werr := cmd.Wait(); err == nil {
		err = werr
	}
	return err
}

// tarDown downloads the object and unpacks it with zstd -d | tar -x into dir.
func tarDown(ctx context.Context, c *minio.Client, key, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	obj, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return err
	}
	defer obj.Close()
	cmd := exec.Command("sh", "-c", `zstd -d -q -c | tar -C "$1" --numeric-owner --xattrs -xpf -`, "sh", dir)
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	_, err = io.Copy(in, obj)
	in.Close()
	if werr := cmd.Wait(); err == nil {
		err = werr
	}
	return err
}

// touch rewrites 1% of the dataset's files (at least one), a different 1% each run.
func touch(dir string, run int) error {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		return err
	}
	slices.Sort(files)
	n := max(1, len(files)/100)
	for i := range n {
		p := files[(i*100+run)%len(files)]
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteAt([]byte(fmt.Sprintf("run %d changed this %d\n", run, time.Now().UnixNano())), 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func sizeOf(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	})
	return n, err
}

// cold drops the page cache, as make bench does before each run.
func cold() {
	syscall.Sync()
	_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
}

// startS3 starts versitygw on a free loopback port, storing under dir, with a bucket.
func startS3(bin, dir string) (*minio.Client, func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "--access", "bench", "--secret", "bench-secret-key", "--region", "us-east-1", "--port", addr, "posix", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	c, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4("bench", "bench-secret-key", ""), Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		stop()
		return nil, nil, err
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		err := c.MakeBucket(context.Background(), bucket, minio.MakeBucketOptions{Region: "us-east-1"})
		if err == nil || strings.Contains(err.Error(), "already") {
			return c, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, nil, fmt.Errorf("versitygw on %s did not answer: %w", addr, err)
		}
	}
}
