package transfer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Data streams carry files in frames: a 5-byte header (type, big-endian payload length)
// and the payload. No per-chunk protobuf, and no frame larger than maxFrame.
//
//	frameFile  u32 entry index, u64 size   a file's content follows
//	frameData  bytes                        the next part of the file
//	frameHole  u64 length                   a hole: length bytes of zeros not sent
//	frameEnd   32-byte BLAKE3                the file is complete; its hash
//	frameDone  (empty)                      the stream has no more files
//	frameError message                      the sender gives up, and why
const (
	frameFile  byte = 1
	frameData  byte = 2
	frameHole  byte = 3
	frameEnd   byte = 4
	frameDone  byte = 5
	frameError byte = 6
)

// maxFrame bounds a frame's payload; chunkSize is what senders put in a data frame.
const (
	maxFrame  = 1 << 20
	chunkSize = 256 << 10
)

// Frame is one decoded frame; Payload aliases the reader's buffer until the next read.
type frame struct {
	Type    byte
	Payload []byte
}

// frameReader reads frames from a stream into one reused buffer.
type frameReader struct {
	r   io.Reader
	hdr [5]byte
	buf []byte
}

// newFrameReader reads frames from r. Give it a buffered reader for a network stream
// (sink.Receive does), so that many small frames come in few reads.
func newFrameReader(r io.Reader) *frameReader { return &frameReader{r: r} }

// Next reads the next frame. It refuses unknown types and oversized or malformed frames
// with ErrHostile before reading their payload.
func (f *frameReader) Next() (frame, error) {
	if _, err := io.ReadFull(f.r, f.hdr[:]); err != nil {
		return frame{}, err
	}
	t, n := f.hdr[0], binary.BigEndian.Uint32(f.hdr[1:])
	if n > maxFrame {
		return frame{}, fmt.Errorf("%w: frame of %d bytes (limit %d)", ErrHostile, n, maxFrame)
	}
	if want, fixed := fixedSize(t); fixed && int(n) != want {
		return frame{}, fmt.Errorf("%w: frame type %d with %d bytes (want %d)", ErrHostile, t, n, want)
	}
	switch t {
	case frameFile, frameData, frameHole, frameEnd, frameDone, frameError:
	default:
		return frame{}, fmt.Errorf("%w: unknown frame type %d", ErrHostile, t)
	}
	if cap(f.buf) < int(n) {
		f.buf = make([]byte, n) // grows to the largest frame seen, at most maxFrame
	}
	p := f.buf[:n]
	if _, err := io.ReadFull(f.r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return frame{}, err
	}
	return frame{Type: t, Payload: p}, nil
}

func fixedSize(t byte) (int, bool) {
	switch t {
	case frameFile:
		return 12, true
	case frameHole:
		return 8, true
	case frameEnd:
		return 32, true
	case frameDone:
		return 0, true
	}
	return 0, false
}

// fileHeader decodes a frameFile payload.
func fileHeader(p []byte) (index uint32, size int64) {
	return binary.BigEndian.Uint32(p), int64(binary.BigEndian.Uint64(p[4:]))
}

// frameWriter writes frames to a stream.
type frameWriter struct {
	w   io.Writer
	hdr [5]byte
}

// newFrameWriter writes frames to w.
func newFrameWriter(w io.Writer) *frameWriter { return &frameWriter{w: w} }

// Write writes one frame.
func (f *frameWriter) Write(t byte, payload []byte) error {
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
func (f *frameWriter) File(index uint32, size int64) error {
	var p [12]byte
	binary.BigEndian.PutUint32(p[:], index)
	binary.BigEndian.PutUint64(p[4:], uint64(size))
	return f.Write(frameFile, p[:])
}

// Hole skips length bytes of zeros.
func (f *frameWriter) Hole(length int64) error {
	var p [8]byte
	binary.BigEndian.PutUint64(p[:], uint64(length))
	return f.Write(frameHole, p[:])
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
