package transfer

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzDecodeManifest: no input may crash the decoder or make it allocate beyond what the
// input could describe; what it accepts must re-encode to the same bytes.
func FuzzDecodeManifest(f *testing.F) {
	f.Add(EncodeManifest([]Entry{{Path: ".", Kind: KindDir, Mode: 0o755}}))
	f.Add(EncodeManifest([]Entry{
		{Path: ".", Kind: KindDir, Mode: 0o755},
		{Path: "a", Kind: KindFile, Mode: 0o644, Size: 5, MTime: 1, Xattrs: []Xattr{{Name: "user.x", Value: []byte("v")}}},
		{Path: "l", Kind: KindSymlink, Target: "a"},
		{Path: "h", Kind: KindHardlink, Target: "a"},
	}))
	f.Add([]byte{manifestVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := DecodeManifest(b)
		if err != nil {
			if !errors.Is(err, ErrHostile) {
				t.Fatalf("decode error not marked hostile: %v", err)
			}
			return
		}
		if again := EncodeManifest(entries); !bytes.Equal(again, b) {
			// Varints have one canonical form per value; anything else is refused.
			if _, err := DecodeManifest(again); err != nil {
				t.Fatalf("re-encoded manifest does not decode: %v", err)
			}
		}
		for _, e := range entries {
			_ = e.Validate(false, func(string) (Kind, bool) { return KindDir, true })
		}
	})
}

// FuzzFrameReader: no stream may crash the frame reader or make it allocate more than
// MaxFrame.
func FuzzFrameReader(f *testing.F) {
	var seed bytes.Buffer
	w := NewFrameWriter(&seed)
	_ = w.File(3, 11)
	_ = w.Write(FrameData, []byte("hello world"))
	_ = w.Hole(4096)
	_ = w.Write(FrameEnd, make([]byte, 32))
	_ = w.Write(FrameDone, nil)
	f.Add(seed.Bytes())
	f.Add([]byte{FrameData, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{FrameEnd, 0, 0, 0, 3, 1, 2, 3})
	f.Add([]byte{9, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewFrameReader(bytes.NewReader(b))
		for {
			fr, err := r.Next()
			if err != nil {
				if !errors.Is(err, ErrHostile) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				return
			}
			if len(fr.Payload) > MaxFrame {
				t.Fatalf("payload of %d bytes", len(fr.Payload))
			}
			if fr.Type == FrameFile {
				FileHeader(fr.Payload)
			}
		}
	})
}
