package transfer

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zeebo/blake3"
)

// hostileSetup returns a staging dir and a sibling "outside" dir holding a sentinel that
// no transfer may touch, and checks it at the end of the test.
func hostileSetup(t *testing.T) (staging, outside string) {
	base := t.TempDir()
	staging, outside = filepath.Join(base, "staging"), filepath.Join(base, "outside")
	require.NoError(t, os.MkdirAll(outside, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("keep"), 0o600))
	t.Cleanup(func() {
		entries, err := os.ReadDir(outside)
		require.NoError(t, err)
		require.Len(t, entries, 1, "nothing was added outside staging")
		b, err := os.ReadFile(filepath.Join(outside, "secret"))
		require.NoError(t, err)
		assert.Equal(t, "keep", string(b), "nothing outside staging changed")
		parent, err := os.ReadDir(filepath.Dir(staging))
		require.NoError(t, err)
		for _, e := range parent {
			assert.Contains(t, []string{"staging", "staging.b3", "staging.tree", "outside"}, e.Name(), "nothing but the stored hashes was created beside staging")
		}
	})
	return staging, outside
}

var root = entry{Path: ".", Kind: kindDir, Mode: 0o755}

func TestHostileManifestsAreRefusedBeforeAnythingIsWritten(t *testing.T) {
	for name, tc := range map[string]struct {
		entries []entry
		opts    SinkOptions
		why     string
	}{
		"dot-dot name":          {[]entry{root, {Path: "../escape", Kind: kindFile}}, SinkOptions{}, "climbs out of the volume"},
		"dot-dot inside":        {[]entry{root, {Path: "a/../../b", Kind: kindFile}}, SinkOptions{}, "not clean"},
		"absolute name":         {[]entry{root, {Path: "/etc/cron.d/x", Kind: kindFile}}, SinkOptions{}, "absolute name"},
		"NUL in name":           {[]entry{root, {Path: "a\x00b", Kind: kindFile}}, SinkOptions{}, "NUL"},
		"long component":        {[]entry{root, {Path: strings.Repeat("n", 256), Kind: kindFile}}, SinkOptions{}, "name component of 256 bytes"},
		"long name":             {[]entry{root, {Path: strings.Repeat("d/", 2100), Kind: kindFile}}, SinkOptions{}, "limit 4096"},
		"file under a symlink":  {[]entry{root, {Path: "link", Kind: kindSymlink, Target: "../outside"}, {Path: "link/x", Kind: kindFile, Size: 1}}, SinkOptions{}, "comes before its directory"},
		"child before parent":   {[]entry{root, {Path: "d/x", Kind: kindFile}, {Path: "d", Kind: kindDir}}, SinkOptions{}, "comes before its directory"},
		"hardlink out":          {[]entry{root, {Path: "h", Kind: kindHardlink, Target: "../outside/secret"}}, SinkOptions{}, "climbs out of the volume"},
		"hardlink absolute":     {[]entry{root, {Path: "h", Kind: kindHardlink, Target: "/etc/shadow"}}, SinkOptions{}, "absolute name"},
		"hardlink to a dir":     {[]entry{root, {Path: "d", Kind: kindDir}, {Path: "h", Kind: kindHardlink, Target: "d"}}, SinkOptions{}, "not a file sent before it"},
		"hardlink forward":      {[]entry{root, {Path: "h", Kind: kindHardlink, Target: "f"}, {Path: "f", Kind: kindFile}}, SinkOptions{}, "not a file sent before it"},
		"device not allowed":    {[]entry{root, {Path: "sda", Kind: kindDevice, Mode: 0o060660, Rdev: 8 << 8}}, SinkOptions{}, "volume created with -o allow-privileged=true"},
		"over the volume limit": {[]entry{root, {Path: "big", Kind: kindFile, Size: 1 << 40}}, SinkOptions{MaxBytes: 1 << 30}, "above its limit"},
		// 2^62 twice wraps a naive sum around to a negative total, under any limit.
		"sizes that overflow the total": {[]entry{root, {Path: "a", Kind: kindFile, Size: 1 << 62}, {Path: "b", Kind: kindFile, Size: 1 << 62}},
			SinkOptions{MaxBytes: 1 << 30}, "declares more than"},
		"over the free space": {[]entry{root, {Path: "big", Kind: kindFile, Size: 1 << 62}}, SinkOptions{}, "free some space"},
		"listed twice":        {[]entry{root, {Path: "f", Kind: kindFile}, {Path: "f", Kind: kindFile}}, SinkOptions{}, "listed twice"},
		"no root":             {[]entry{{Path: "f", Kind: kindFile}}, SinkOptions{}, "comes before its directory"},
		"root not a dir":      {[]entry{{Path: ".", Kind: kindFile}}, SinkOptions{}, "must be a directory"},
		"negative size":       {[]entry{root, {Path: "f", Kind: kindFile, Size: -1}}, SinkOptions{}, "declares size"},
		"size on a symlink":   {[]entry{root, {Path: "l", Kind: kindSymlink, Target: "x", Size: 9}}, SinkOptions{}, "declares size"},
		"file type in mode":   {[]entry{root, {Path: "f", Kind: kindFile, Mode: 0o100644}}, SinkOptions{}, "beyond permissions"},
		"unknown kind":        {[]entry{root, {Path: "f", Kind: 99}}, SinkOptions{}, "unknown kind"},
		"huge xattr":          {[]entry{root, {Path: "f", Kind: kindFile, Xattrs: []xattr{{Name: "user.x", Value: make([]byte, maxXattrValue+1)}}}}, SinkOptions{}, "bad extended attribute"},
	} {
		t.Run(name, func(t *testing.T) {
			staging, _ := hostileSetup(t)
			_, err := openSink(staging, tc.entries, tc.opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.why)
			assert.NoDirExists(t, staging, "refused before staging was even made")
		})
	}
}

// frames builds a data stream by hand.
func frames(build func(w *frameWriter)) *bytes.Reader {
	var b bytes.Buffer
	build(newFrameWriter(&b))
	return bytes.NewReader(b.Bytes())
}

func hashOf(b []byte) []byte {
	s := blake3.Sum256(b)
	return s[:]
}

func TestHostileStreamsAreRefusedAndLeaveNoFile(t *testing.T) {
	entries := []entry{root, {Path: "d", Kind: kindDir, Mode: 0o755}, {Path: "d/f", Kind: kindFile, Mode: 0o644, Size: 5}}
	for name, tc := range map[string]struct {
		stream *bytes.Reader
		why    string
	}{
		"content for a dir":    {frames(func(w *frameWriter) { _ = w.File(1, 0) }), "not asked for"},
		"index out of range":   {frames(func(w *frameWriter) { _ = w.File(99, 5) }), "not asked for"},
		"size unlike declared": {frames(func(w *frameWriter) { _ = w.File(2, 6) }), "declared 5"},
		"more data than declared": {frames(func(w *frameWriter) {
			_ = w.File(2, 5)
			_ = w.Write(frameData, []byte("hello, and then some"))
		}), "more data than"},
		"hole beyond the end": {frames(func(w *frameWriter) {
			_ = w.File(2, 5)
			_ = w.Hole(1 << 40)
		}), "hole beyond"},
		// off+n would wrap to a negative number and pass a naive bound, and hashing 2^63
		// zero bytes would hold the stream for ever.
		"hole that overflows the offset": {frames(func(w *frameWriter) {
			_ = w.File(2, 5)
			_ = w.Write(frameData, []byte("h"))
			_ = w.Hole(math.MaxInt64)
		}), "hole beyond"},
		"hole of negative length": {frames(func(w *frameWriter) {
			_ = w.File(2, 5)
			_ = w.Hole(-1)
		}), "hole beyond"},
		"end before all data": {frames(func(w *frameWriter) {
			_ = w.File(2, 5)
			_ = w.Write(frameData, []byte("he"))
			_ = w.Write(frameEnd, hashOf([]byte("he")))
		}), "ended at 2 of 5"},
		"wrong hash": {frames(func(w *frameWriter) {
			_ = w.File(2, 5)
			_ = w.Write(frameData, []byte("hello"))
			_ = w.Write(frameEnd, hashOf([]byte("jello")))
		}), "content hash mismatch"},
		"oversized frame": {bytes.NewReader([]byte{frameData, 0x7f, 0xff, 0xff, 0xff}), "limit"},
		"unknown frame":   {bytes.NewReader([]byte{42, 0, 0, 0, 0}), "unknown frame type"},
		"data outside a file": {frames(func(w *frameWriter) {
			_ = w.Write(frameData, []byte("stray"))
		}), "outside a file"},
		"same file twice": {frames(func(w *frameWriter) {
			for range 2 {
				_ = w.File(2, 5)
				_ = w.Write(frameData, []byte("hello"))
				_ = w.Write(frameEnd, hashOf([]byte("hello")))
			}
		}), "not asked for"},
	} {
		t.Run(name, func(t *testing.T) {
			staging, _ := hostileSetup(t)
			sink, err := openSink(staging, entries, SinkOptions{})
			require.NoError(t, err)
			defer sink.Close()
			err = sink.Receive(tc.stream)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.why)
			left, err := os.ReadDir(filepath.Join(staging, "d"))
			require.NoError(t, err)
			if name == "same file twice" {
				require.Len(t, left, 1, "the first copy, verified, stays")
				assert.Equal(t, "f", left[0].Name())
			} else {
				assert.Empty(t, left, "nothing unverified is left")
			}
		})
	}
}

func TestSymlinkPlantedInStagingCannotRedirectWrites(t *testing.T) {
	staging, outside := hostileSetup(t)
	// A previous (hostile) transfer left "d" as a symlink to outside.
	require.NoError(t, os.MkdirAll(staging, 0o700))
	require.NoError(t, os.Symlink(outside, filepath.Join(staging, "d")))
	entries := []entry{root, {Path: "d", Kind: kindDir, Mode: 0o755}, {Path: "d/secret", Kind: kindFile, Mode: 0o644, Size: 5}}
	sink, err := openSink(staging, entries, SinkOptions{})
	require.NoError(t, err)
	defer sink.Close()
	require.NoError(t, sink.Receive(frames(func(w *frameWriter) {
		_ = w.File(2, 5)
		_ = w.Write(frameData, []byte("owned"))
		_ = w.Write(frameEnd, hashOf([]byte("owned")))
		_ = w.Write(frameDone, nil)
	})))
	_, err = sink.Finish(t.Context())
	require.NoError(t, err)
	fi, err := os.Lstat(filepath.Join(staging, "d"))
	require.NoError(t, err)
	assert.True(t, fi.IsDir(), "the planted symlink was replaced by a real directory")
	b, err := os.ReadFile(filepath.Join(staging, "d", "secret"))
	require.NoError(t, err)
	assert.Equal(t, "owned", string(b), "the file landed inside staging")
}

func TestSymlinkTargetsAreStoredNotFollowed(t *testing.T) {
	staging, _ := hostileSetup(t)
	entries := []entry{root, {Path: "l", Kind: kindSymlink, Target: "../outside/secret"}}
	sink, err := openSink(staging, entries, SinkOptions{})
	require.NoError(t, err)
	defer sink.Close()
	_, err = sink.Finish(t.Context())
	require.NoError(t, err)
	target, err := os.Readlink(filepath.Join(staging, "l"))
	require.NoError(t, err)
	assert.Equal(t, "../outside/secret", target, "a symlink may point anywhere; nothing is written through it")
}

func TestStagingEntriesOfAnotherKindAreReplacedWholly(t *testing.T) {
	staging, _ := hostileSetup(t)
	require.NoError(t, os.MkdirAll(filepath.Join(staging, "x", "deep", "er"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(staging, "x", "deep", "f"), []byte("old"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(staging, "y"), []byte("old file"), 0o644))
	entries := []entry{root, {Path: "x", Kind: kindFile, Mode: 0o644, Size: 3}, {Path: "y", Kind: kindDir, Mode: 0o755}}
	sink, err := openSink(staging, entries, SinkOptions{})
	require.NoError(t, err)
	defer sink.Close()
	assert.Equal(t, []uint32{1}, sink.Wanted())
	require.NoError(t, sink.Receive(frames(func(w *frameWriter) {
		_ = w.File(1, 3)
		_ = w.Write(frameData, []byte("new"))
		_ = w.Write(frameEnd, hashOf([]byte("new")))
		_ = w.Write(frameDone, nil)
	})))
	_, err = sink.Finish(t.Context())
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(staging, "x"))
	require.NoError(t, err)
	assert.Equal(t, "new", string(b), "the directory and all inside it gave way to the file")
	fi, err := os.Lstat(filepath.Join(staging, "y"))
	require.NoError(t, err)
	assert.True(t, fi.IsDir(), "the file gave way to the directory")
}
