package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"
)

// hashFile reads the regular file p of a tree and returns its content hash, as a sender
// hashes what it sends. It gives up once ctx ends.
func hashFile(ctx context.Context, dirs *dirCache, p string) ([32]byte, error) {
	var sum [32]byte
	fd, _, err := openRegular(dirs, p)
	if err != nil {
		return sum, err
	}
	defer unix.Close(fd)
	h := blake3.New()
	buf := make([]byte, chunkSize)
	for off := int64(0); ; {
		if err := ctx.Err(); err != nil {
			return sum, fmt.Errorf("hash %s: %w", p, err)
		}
		n, err := unix.Pread(fd, buf, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return sum, fmt.Errorf("read %s: %w", p, err)
		}
		if n == 0 {
			break
		}
		_, _ = h.Write(buf[:n])
		off += int64(n)
	}
	h.Sum(sum[:0])
	return sum, nil
}

// openRegular opens the regular file p of a tree for reading, and returns it with its
// stat: an error if it is gone or no longer a regular file.
func openRegular(dirs *dirCache, p string) (int, unix.Stat_t, error) {
	var st unix.Stat_t
	d, base, release, err := dirs.split(p)
	if err != nil {
		return -1, st, fmt.Errorf("open the directory of %s: %w", p, err)
	}
	defer release()
	// O_NONBLOCK: a FIFO put in the file's place must not block the open.
	fd, err := d.open(base, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, st, fmt.Errorf("open %s: %w", p, err)
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, st, fmt.Errorf("stat %s: %w", p, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, st, fmt.Errorf("%s is no longer a regular file", p)
	}
	return fd, st, nil
}

// forEach runs fn(0..n-1) on a few goroutines and returns the first error; after one,
// or once ctx ends, the rest are skipped. It returns when every goroutine has ended.
func forEach(ctx context.Context, n int, fn func(int) error) error {
	var next atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range min(n, 8) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1) - 1)
				if k >= n {
					return
				}
				err := ctx.Err()
				if err == nil {
					err = fn(k)
				}
				if err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// zeros is read-only: holes are hashed as the zeros they stand for, from this one buffer.
var zeros = make([]byte, 64<<10)

// hashZeros feeds n zero bytes to h.
func hashZeros(h io.Writer, n int64) {
	for n > 0 {
		c := min(n, int64(len(zeros)))
		_, _ = h.Write(zeros[:c])
		n -= c
	}
}
