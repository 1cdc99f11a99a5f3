package seed

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// ErrFormat means an archive is in a format drayage does not unpack.
var ErrFormat = errors.New("not a .tar, .tar.gz or .tar.zst archive")

// maxZstdWindow bounds the memory a zstd stream may ask for to decompress: a stream
// that asks for more is refused, not obeyed (zstd's own command line stops at 128 MiB
// without --long too).
const maxZstdWindow = 128 << 20

// Format says how an archive is compressed, by its first bytes: "gzip", "zstd" or "tar".
func Format(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var head [512]byte
	n, _ := io.ReadFull(f, head[:])
	return formatOf(head[:n])
}

func formatOf(b []byte) (string, error) {
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		return "gzip", nil
	case bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "zstd", nil
	case len(b) >= 262 && string(b[257:262]) == "ustar":
		return "tar", nil
	case bytes.HasPrefix(b, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return "", fmt.Errorf("%w: it is xz; recompress it with gzip or zstd", ErrFormat)
	case bytes.HasPrefix(b, []byte("BZh")):
		return "", fmt.Errorf("%w: it is bzip2; recompress it with gzip or zstd", ErrFormat)
	case bytes.HasPrefix(b, []byte("PK\x03\x04")):
		return "", fmt.Errorf("%w: it is zip; make a tar of the files instead", ErrFormat)
	}
	return "", fmt.Errorf("%w: its first bytes are neither gzip, zstd nor tar", ErrFormat)
}

// Open returns a function that opens the tar stream of the archive in file, decompressed
// as its first bytes say; each call reads it from its start (transfer.Unpack reads it
// twice).
func Open(file string) (func() (io.ReadCloser, error), error) {
	format, err := Format(file)
	if err != nil {
		return nil, err
	}
	return func() (io.ReadCloser, error) {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		r := bufio.NewReaderSize(f, 1<<20)
		switch format {
		case "gzip":
			z, err := gzip.NewReader(r)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("%w: %w", ErrFormat, err)
			}
			return readCloser{z, func() error { return errors.Join(z.Close(), f.Close()) }}, nil
		case "zstd":
			z, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxZstdWindow), zstd.WithDecoderLowmem(true))
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("%w: %w", ErrFormat, err)
			}
			return readCloser{z, func() error { z.Close(); return f.Close() }}, nil
		}
		return readCloser{r, f.Close}, nil
	}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }
