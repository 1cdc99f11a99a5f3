package transfer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Data streams carry files in frames: a 5-byte header (type, big-endian payload length)
// and the payload. No per-chunk protobuf, and no frame larger than MaxFrame.
//
//	FrameFile  u32 entry index, u64 size   a file's content follows
//	FrameData  bytes                        the next part of the file
//	FrameHole  u64 length                   a hole: length bytes of zeros not sent
//	FrameEnd   32-byte BLAKE3                the file is complete; its hash
//	FrameDone  (empty)                      the stream has no more files
//	FrameError message                      the sender gives up, and why
const (
	FrameFile  byte = 1
	FrameData  byte = 2
	FrameHole  byte = 3
	FrameEnd   byte = 4
	FrameDone  byte = 5
	FrameError byte = 6
)

// MaxFrame bounds a frame's payload; ChunkSize is what senders put in a data frame.
const (
	MaxFrame  = 1 << 20
	ChunkSize = 256 << 10
)

// Frame is one decoded frame; Payload aliases the reader's buffer until the next read.
type Frame struct {
	Type    byte
	Payload []byte
}

// FrameReader reads frames from a stream into one reused buffer.
type FrameReader struct {
	r   io.Reader
	hdr [5]byte
	buf []byte
}

// NewFrameReader reads frames from r. Give it a buffered reader for a network stream
// (Sink.Receive does), so that many small frames come in few reads.
func NewFrameReader(r io.Reader) *FrameReader { return &FrameReader{r: r} }

// Next reads the next frame. It refuses unknown types and oversized or malformed frames
// with ErrHostile before reading their payload.
func (f *FrameReader) Next() (Frame, error) {
	if _, err := io.ReadFull(f.r, f.hdr[:]); err != nil {
		return Frame{}, err
	}
	t, n := f.hdr[0], binary.BigEndian.Uint32(f.hdr[1:])
	if n > MaxFrame {
		return Frame{}, fmt.Errorf("%w: frame of %d bytes (limit %d)", ErrHostile, n, MaxFrame)
	}
	if want, fixed := fixedSize(t); fixed && int(n) != want {
		return Frame{}, fmt.Errorf("%w: frame type %d with %d bytes (want %d)", ErrHostile, t, n, want)
	}
	switch t {
	case FrameFile, FrameData, FrameHole, FrameEnd, FrameDone, FrameError:
	default:
		return Frame{}, fmt.Errorf("%w: unknown frame type %d", ErrHostile, t)
	}
	if cap(f.buf) < int(n) {
		f.buf = make([]byte, n) // grows to the largest frame seen, at most MaxFrame
	}
	p := f.buf[:n]
	if _, err := io.ReadFull(f.r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return Frame{Type: t, Payload: p}, nil
}

func fixedSize(t byte) (int, bool) {
	switch t {
	case FrameFile:
		return 12, true
	case FrameHole:
		return 8, true
	case FrameEnd:
		return 32, true
	case FrameDone:
		return 0, true
	}
	return 0, false
}

// FileHeader decodes a FrameFile payload.
func FileHeader(p []byte) (index uint32, size int64) {
	return binary.BigEndian.Uint32(p), int64(binary.BigEndian.Uint64(p[4:]))
}

// FrameWriter writes frames to a stream.
type FrameWriter struct {
	w   io.Writer
	hdr [5]byte
}

// NewFrameWriter writes frames to w.
func NewFrameWriter(w io.Writer) *FrameWriter { return &FrameWriter{w: w} }

// Write writes one frame.
func (f *FrameWriter) Write(t byte, payload []byte) error {
	f.hdr[0] = t
	binary.BigEndian.PutUint32(f.hdr[1:], uint32(len(payload)))
	if _, err := f.w.Write(f.hdr[:]); err != nil {
		return err
	}
	if len(payload) == 0 {
		return nil
	}
	_, err := f.w.Write(payload)
	return err
}

// File starts a file's content.
func (f *FrameWriter) File(index uint32, size int64) error {
	var p [12]byte
	binary.BigEndian.PutUint32(p[:], index)
	binary.BigEndian.PutUint64(p[4:], uint64(size))
	return f.Write(FrameFile, p[:])
}

// Hole skips length bytes of zeros.
func (f *FrameWriter) Hole(length int64) error {
	var p [8]byte
	binary.BigEndian.PutUint64(p[:], uint64(length))
	return f.Write(FrameHole, p[:])
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
