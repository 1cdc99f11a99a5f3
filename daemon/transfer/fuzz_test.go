package transfer

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/zeebo/blake3"
)

// FuzzDecodeManifest: no input may crash the decoder or make it allocate beyond what the
// input could describe; what it accepts must re-encode to the same bytes.
func FuzzDecodeManifest(f *testing.F) {
	f.Add(encodeManifest([]entry{{Path: ".", Kind: kindDir, Mode: 0o755}}))
	f.Add(encodeManifest([]entry{
		{Path: ".", Kind: kindDir, Mode: 0o755},
		{Path: "a", Kind: kindFile, Mode: 0o644, Size: 5, MTime: 1, Xattrs: []xattr{{Name: "user.x", Value: []byte("v")}}},
		{Path: "l", Kind: kindSymlink, Target: "a"},
		{Path: "h", Kind: kindHardlink, Target: "a"},
	}))
	f.Add([]byte{manifestVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := decodeManifest(b)
		if err != nil {
			if !errors.Is(err, ErrHostile) {
				t.Fatalf("decode error not marked hostile: %v", err)
			}
			return
		}
		if again := encodeManifest(entries); !bytes.Equal(again, b) {
			// Varints have one canonical form per value; anything else is refused.
			if _, err := decodeManifest(again); err != nil {
				t.Fatalf("re-encoded manifest does not decode: %v", err)
			}
		}
		for _, e := range entries {
			_ = e.Validate(false, func(string) (kind, bool) { return kindDir, true })
		}
	})
}

// FuzzFrameReader: no stream may crash the frame reader or make it allocate more than
// maxFrame.
func FuzzFrameReader(f *testing.F) {
	var seed bytes.Buffer
	w := newFrameWriter(&seed)
	_ = w.File(3, 11)
	_ = w.Write(frameData, []byte("hello world"))
	_ = w.Hole(4096)
	_ = w.Write(frameEnd, make([]byte, 32))
	_ = w.Write(frameDone, nil)
	f.Add(seed.Bytes())
	f.Add([]byte{frameData, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{frameEnd, 0, 0, 0, 3, 1, 2, 3})
	f.Add([]byte{9, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := newFrameReader(bytes.NewReader(b))
		for {
			fr, err := r.Next()
			if err != nil {
				if !errors.Is(err, ErrHostile) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				return
			}
			if len(fr.Payload) > maxFrame {
				t.Fatalf("payload of %d bytes", len(fr.Payload))
			}
			if fr.Type == frameFile {
				fileHeader(fr.Payload)
			}
		}
	})
}

// receiveManifest is what FuzzReceive's sink expects: a directory, files of a few sizes
// (one large enough for several data frames and holes), a hardlink and a symlink.
var receiveManifest = []entry{
	{Path: ".", Kind: kindDir, Mode: 0o755},
	{Path: "b", Kind: kindFile, Mode: 0o644, Size: 70_000, MTime: 1},
	{Path: "d", Kind: kindDir, Mode: 0o755},
	{Path: "d/a", Kind: kindFile, Mode: 0o600, Size: 5, MTime: 2},
	{Path: "d/e", Kind: kindFile, Mode: 0o600, MTime: 3},
	{Path: "h", Kind: kindHardlink, Target: "b"},
	{Path: "l", Kind: kindSymlink, Target: "../../etc/passwd"},
}

// FuzzReceive drives a sink's whole Receive, and Finish, with arbitrary streams: no
// stream may crash it, hang it, make it write outside staging, or leave a file in
// staging that did not arrive whole and verified.
func FuzzReceive(f *testing.F) {
	valid := func(build func(w *frameWriter)) []byte {
		var b bytes.Buffer
		build(newFrameWriter(&b))
		return b.Bytes()
	}
	content := bytes.Repeat([]byte("drayage!"), 7500)
	sum := blake3.New()
	_, _ = sum.Write(content)
	hashZeros(sum, 10_000)
	whole := sum.Sum(nil)
	f.Add(valid(func(w *frameWriter) {
		_ = w.File(3, 5)
		_ = w.Write(frameData, []byte("hello"))
		_ = w.Write(frameEnd, hashOf([]byte("hello")))
		_ = w.File(1, 70_000)
		_ = w.Write(frameData, content[:chunkSize/8])
		_ = w.Write(frameData, content[chunkSize/8:])
		_ = w.Hole(10_000)
		_ = w.Write(frameEnd, whole)
		_ = w.File(4, 0)
		_ = w.Write(frameEnd, hashOf(nil))
		_ = w.Write(frameDone, nil)
	}))
	f.Add(valid(func(w *frameWriter) { // a hole that would overflow the offset
		_ = w.File(3, 5)
		_ = w.Write(frameData, []byte("h"))
		_ = w.Hole(math.MaxInt64)
	}))
	f.Add(valid(func(w *frameWriter) { // a file sent twice, the second time damaged
		for _, c := range []string{"hello", "jello"} {
			_ = w.File(3, 5)
			_ = w.Write(frameData, []byte(c))
			_ = w.Write(frameEnd, hashOf([]byte("hello")))
		}
	}))
	f.Add(valid(func(w *frameWriter) { _ = w.Write(frameError, []byte("sender gave up")) }))
	// On a tmpfs: Finish's syncfs would otherwise sync the machine's disk every run.
	base := smallFS(f, "64m")
	f.Fuzz(func(t *testing.T, stream []byte) {
		dir, err := os.MkdirTemp(base, "run")
		require.NoError(t, err)
		defer os.RemoveAll(dir)
		staging := filepath.Join(dir, "staging")
		sink, err := openSink(staging, receiveManifest, SinkOptions{})
		require.NoError(t, err)
		defer sink.Close()
		if err := sink.Receive(bytes.NewReader(stream)); err != nil {
			var fl *failure
			if !errors.Is(err, ErrHostile) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, io.EOF) &&
				!errors.Is(err, io.ErrUnexpectedEOF) && !errors.As(err, &fl) {
				t.Fatalf("unexpected error kind: %v", err)
			}
		} else if _, err := sink.Finish(t.Context()); err == nil {
			for i, want := range sink.send {
				if want && !sink.received[i] {
					t.Fatalf("finished without %s", receiveManifest[i].Path)
				}
			}
		}
		// Nothing but staging, its stored hashes and its record was made, and every file
		// in staging arrived verified.
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		for _, e := range entries {
			require.Contains(t, []string{"staging", "staging.b3", "staging.tree"}, e.Name(), "nothing else beside staging")
		}
		for i, e := range receiveManifest {
			if e.Kind != kindFile {
				continue
			}
			if _, err := os.Lstat(filepath.Join(staging, e.Path)); err == nil {
				if _, ok := sink.hashes[uint32(i)]; !ok {
					t.Fatalf("%s is in staging but never arrived verified", e.Path)
				}
			}
		}
	})
}
