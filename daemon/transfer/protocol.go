package transfer

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/zeebo/blake3"
)

// This file is the transfer protocol: everything that puts bytes on the wire between a
// receiver (the node that pulls a volume) and a sender (the node that holds it), but for
// the manifest's encoding, which is beside the entries it encodes (manifest.go), and the
// zstd wrapping of data streams (wire.go).
//
// # Control calls
//
// gRPC over mutual TLS 1.3 on the sender's control port (package peers), service
// drayage.Transfer, no generated code. Three unary calls, in this order:
//
//  1. Open(openRequest{volume, epoch, wire, version}) returns openResponse{transfer,
//     manifest, data, wire, version}. The sender checks that the calling node (the name
//     in its certificate) may receive the volume at that epoch, walks the volume, and
//     answers with a transfer ID, the manifest, its data address, the wire options of the
//     data streams (the receiver's, under the sender's own rate cap) and the version both
//     ends speak.
//  2. Want(wantRequest{transfer, indexes}) returns empty: the manifest indexes of the
//     files the receiver lacks, in the order to send them. It is given once.
//  3. Finish(finishRequest{transfer, root_hash}) returns empty once the data streams are
//     done: the sender compares its root hash with the receiver's and fails the call with
//     DataLoss if they differ. Finish with abort set gives the transfer up instead, at any
//     time after Open.
//
// Messages are JSON objects (peers.Codec, content-subtype "json"), but for the two that
// grow with the volume, which encode themselves in binary (as JSON, a manifest of 50,000
// files took longer to decode than to read from disk): openResponse is a uvarint length,
// a JSON header of the other fields, then the manifest as it is; wantRequest is the
// transfer ID as a uvarint length and its bytes, then one uvarint per index.
//
// # Data streams
//
// Contents go on TLS 1.3 connections, with client certificates, to the sender's data
// port: several per transfer, opened after Want. A stream opens with the 32-byte transfer
// ID; the sender serves it only to the node that opened the transfer. Then the sender
// writes frames, through zstd if the wire options say so: each frame is a type byte, the
// payload's length as a big-endian u32 (at most maxFrame), and the payload.
//
//	frameFile  u32 entry index, u64 size   a file's content follows
//	frameData  bytes                        the next part of the file
//	frameHole  u64 length                   a hole: length bytes of zeros not sent
//	frameEnd   32-byte BLAKE3                the file is complete; its hash
//	frameDone  (empty)                      the stream has no more files
//	frameError message                      the sender gives up, and why
//	frameSame  u64 length                   the next length bytes are the receiver's own
//	                                        (version 3: a chunk it offered in Basis)
//
// Each wanted file travels whole on one stream: frameFile, then data and hole frames
// that add up to its size, then frameEnd. A stream ends with frameDone, or with
// frameError.
//
// # Root hash
//
// BLAKE3 over the encoded manifest as the sender sent it, then the 32-byte content hash
// of each file in manifest order: every file of the tree (version 2), or only the files
// sent (version 1).
//
// # Versions
//
// The receiver sends its version in Open (absent: 1); the sender answers with the lower
// of the two, and both speak it. Version 1's root hash covers the files sent, version 2's
// every file. Version 3 adds Basis, between Open and Want: the chunk hashes of the
// receiver's copies of large wanted files, so that the sender sends only the chunks
// that differ, and frameSame for the others (delta.go). A field added to a message must be optional, so that an older node can
// ignore it.

// protocolVersion is the transfer protocol this node speaks (see Versions above).
const protocolVersion = 3

// negotiate is the version both ends speak: the lower of the receiver's (absent: 1) and
// this node's.
func negotiate(receiver int) int { return max(1, min(receiver, protocolVersion)) }

// The control service and its methods.
const (
	serviceName  = "drayage.Transfer"
	methodOpen   = "Open"
	methodWant   = "Want"
	methodFinish = "Finish"
)

// openRequest asks the node holding a volume to send it.
type openRequest struct {
	Volume string `json:"volume"`
	// Epoch is the one in the receiver's migration claim; the sender checks it.
	Epoch uint64 `json:"epoch"`
	Wire  Wire   `json:"wire"`
	// Version is the receiver's protocol version (absent: 1).
	Version int `json:"version,omitempty"`
	// Live says the volume may be written while it is sent (a replica's sync of a
	// mounted volume): the sender then treats a file changed a moment before it was read
	// as changed (ErrChanged), since a write in the same clock tick would go unseen.
	Live bool `json:"live,omitempty"`
	// Walk asks the sender to read the volume whole, trusting no record of it: the
	// receiver checks now and then that the records on both ends still hold.
	Walk bool `json:"walk,omitempty"`
}

// openResponse carries the sender's manifest.
type openResponse struct {
	Transfer string `json:"transfer"`
	Manifest []byte `json:"manifest"`
	// Data is the sender's data address.
	Data string `json:"data"`
	// Wire is what the data streams use: the receiver's request under the sender's cap.
	Wire Wire `json:"wire"`
	// Version is the protocol version both ends speak (absent: 1).
	Version int `json:"version,omitempty"`
}

// openHeader is openResponse but for the manifest.
type openHeader struct {
	Transfer string `json:"transfer"`
	Data     string `json:"data"`
	Wire     Wire   `json:"wire"`
	Version  int    `json:"version,omitempty"`
}

// MarshalBinary encodes the response as the length of a JSON header, the header, and
// the manifest as it is.
func (r *openResponse) MarshalBinary() ([]byte, error) {
	h, err := json.Marshal(openHeader{r.Transfer, r.Data, r.Wire, r.Version})
	if err != nil {
		return nil, err
	}
	b := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(h)+len(r.Manifest)), uint64(len(h)))
	return append(append(b, h...), r.Manifest...), nil
}

// UnmarshalBinary decodes what MarshalBinary encodes.
func (r *openResponse) UnmarshalBinary(b []byte) error {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return errors.New("open response: bad header length")
	}
	var h openHeader
	if err := json.Unmarshal(b[k:k+int(n)], &h); err != nil {
		return fmt.Errorf("open response: %w", err)
	}
	r.Transfer, r.Data, r.Wire, r.Version = h.Transfer, h.Data, h.Wire, h.Version
	r.Manifest = bytes.Clone(b[k+int(n):]) // the codec does not promise b outlives the call
	return nil
}

// wantRequest lists the files the receiver needs.
type wantRequest struct {
	Transfer string   `json:"transfer"`
	Indexes  []uint32 `json:"indexes"`
}

// MarshalBinary encodes the request as the transfer ID's length and bytes, then each
// index as a varint.
func (r *wantRequest) MarshalBinary() ([]byte, error) {
	b := binary.AppendUvarint(make([]byte, 0, 1+len(r.Transfer)+3*len(r.Indexes)), uint64(len(r.Transfer)))
	b = append(b, r.Transfer...)
	for _, i := range r.Indexes {
		b = binary.AppendUvarint(b, uint64(i))
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary encodes.
func (r *wantRequest) UnmarshalBinary(b []byte) error {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > 64 || n > uint64(len(b)-k) {
		return errors.New("want request: bad transfer ID")
	}
	r.Transfer = string(b[k : k+int(n)])
	b = b[k+int(n):]
	// An index takes one to five bytes: room grows with what is decoded.
	r.Indexes = make([]uint32, 0, min(len(b), 4096))
	for len(b) > 0 {
		i, k := binary.Uvarint(b)
		if k <= 0 || i > math.MaxUint32 {
			return errors.New("want request: bad index")
		}
		r.Indexes = append(r.Indexes, uint32(i))
		b = b[k:]
	}
	return nil
}

// finishRequest ends a transfer; RootHash is the receiver's.
type finishRequest struct {
	Transfer string `json:"transfer"`
	RootHash []byte `json:"root_hash,omitempty"`
	Abort    bool   `json:"abort,omitempty"`
}

// empty is an empty reply.
type empty struct{}

// transferIDLen is the length of a transfer ID, which opens every data stream.
const transferIDLen = 32

// newTransferID makes a transfer ID: 16 random bytes in hex.
func newTransferID() string {
	var b [transferIDLen / 2]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// readHello reads the transfer ID a data stream opens with.
func readHello(r io.Reader) (string, error) {
	var b [transferIDLen]byte
	_, err := io.ReadFull(r, b[:])
	return string(b[:]), err
}

// Frame types (see Data streams above).
const (
	frameFile  byte = 1
	frameData  byte = 2
	frameHole  byte = 3
	frameEnd   byte = 4
	frameDone  byte = 5
	frameError byte = 6
	frameSame  byte = 7
)

// maxFrame bounds a frame's payload; chunkSize is what senders put in a data frame.
const (
	maxFrame  = 1 << 20
	chunkSize = 256 << 10
)

// frame is one decoded frame; Payload aliases the reader's buffer until the next read.
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
	case frameFile, frameData, frameHole, frameEnd, frameDone, frameError, frameSame:
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
	case frameHole, frameSame:
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

// holeLength decodes a frameHole payload. A hostile sender may make it negative.
func holeLength(p []byte) int64 { return int64(binary.BigEndian.Uint64(p)) }

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

// rootHashOf is the root hash of a tree: over its manifest and the content hashes given.
func rootHashOf(entries []entry, hashes map[uint32][32]byte) [32]byte {
	h := blake3.New()
	_, _ = h.Write(encodeManifest(entries))
	return rootHash(h, len(entries), hashes)
}

// rootHash finishes a root hash: manifest has hashed the manifest of n entries; the
// content hashes follow in the manifest's order.
func rootHash(manifest *blake3.Hasher, n int, hashes map[uint32][32]byte) [32]byte {
	for i := range n {
		if sum, ok := hashes[uint32(i)]; ok {
			_, _ = manifest.Write(sum[:])
		}
	}
	var out [32]byte
	manifest.Sum(out[:0])
	return out
}
