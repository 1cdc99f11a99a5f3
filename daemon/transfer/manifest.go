package transfer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path"
	"strings"
)

// Kind is what an entry is.
type Kind uint8

// Kinds of entry.
const (
	KindFile Kind = iota + 1
	KindDir
	KindSymlink
	KindHardlink // another name for an earlier file; Target is its path
	KindFIFO
	KindDevice // character or block device; refused unless the volume allows devices
)

func (k Kind) String() string {
	switch k {
	case KindFile:
		return "file"
	case KindDir:
		return "dir"
	case KindSymlink:
		return "symlink"
	case KindHardlink:
		return "hardlink"
	case KindFIFO:
		return "fifo"
	case KindDevice:
		return "device"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Limits on what a manifest may declare; anything beyond is hostile or broken.
const (
	MaxPath       = 4096
	MaxNameLen    = 255
	MaxXattrs     = 128
	MaxXattrName  = 255
	MaxXattrValue = 64 << 10
	MaxEntries    = 50_000_000
)

// Xattr is one extended attribute (POSIX ACLs are the system.posix_acl_* ones).
type Xattr struct {
	Name  string
	Value []byte
}

// Entry is one thing in a volume's tree, as everything that must arrive intact.
type Entry struct {
	// Path is slash-separated and relative to the volume root; "." is the root itself.
	Path string
	Kind Kind
	// Mode holds the permission bits plus setuid, setgid and sticky (07777).
	Mode     uint32
	UID, GID uint32
	Size     int64
	// MTime is the modification time in nanoseconds since the epoch.
	MTime int64
	// Target is a symlink's target, or the path of the file a hardlink names.
	Target string
	// Rdev is a device's number (with its type in Mode's S_IFCHR/S_IFBLK bit).
	Rdev   uint64
	Xattrs []Xattr
}

// sameContent reports whether the receiver's b can stand for the sender's a without
// sending a's content: same kind, size and modification time (rsync's quick check).
func sameContent(a, b Entry) bool {
	return a.Kind == b.Kind && a.Size == b.Size && a.MTime == b.MTime
}

// ErrCorrupt means a file's content did not match its hash on arrival. Nothing of it is
// kept; Pull asks for it again.
var ErrCorrupt = errors.New("content hash mismatch: damaged in transit")

// ErrRootMismatch means the two ends of a transfer disagree on the tree's root hash: a
// file the receiver already had is not what the sender has.
var ErrRootMismatch = errors.New("root hash mismatch")

// ErrHostile marks input that breaks the protocol's rules: names that escape the volume,
// sizes beyond limits, links out of the tree. Nothing of such a transfer is kept.
var ErrHostile = errors.New("refused")

// Validate checks an entry as the receiver must before acting on it. prior reports
// whether a path names an entry seen earlier in the same manifest, and its kind.
func (e Entry) Validate(allowPrivileged bool, prior func(string) (Kind, bool)) error {
	if err := validPath(e.Path); err != nil {
		return err
	}
	if e.Mode&^0o7777 != 0 && e.Kind != KindDevice {
		return fmt.Errorf("%w: %q has mode bits %o beyond permissions", ErrHostile, e.Path, e.Mode)
	}
	if e.Size < 0 || (e.Kind != KindFile && e.Size != 0) {
		return fmt.Errorf("%w: %q declares size %d", ErrHostile, e.Path, e.Size)
	}
	if len(e.Xattrs) > MaxXattrs {
		return fmt.Errorf("%w: %q has %d extended attributes (limit %d)", ErrHostile, e.Path, len(e.Xattrs), MaxXattrs)
	}
	for _, x := range e.Xattrs {
		if x.Name == "" || len(x.Name) > MaxXattrName || len(x.Value) > MaxXattrValue || strings.ContainsRune(x.Name, 0) {
			return fmt.Errorf("%w: %q has a bad extended attribute", ErrHostile, e.Path)
		}
	}
	if e.Path != "." {
		if k, ok := prior(path.Dir(e.Path)); !ok || k != KindDir {
			return fmt.Errorf("%w: %q comes before its directory (or its parent is not a directory)", ErrHostile, e.Path)
		}
	}
	switch e.Kind {
	case KindDir, KindFile, KindFIFO:
	case KindSymlink:
		if e.Target == "" || len(e.Target) > MaxPath || strings.ContainsRune(e.Target, 0) {
			return fmt.Errorf("%w: symlink %q has a bad target", ErrHostile, e.Path)
		}
	case KindHardlink:
		if err := validPath(e.Target); err != nil {
			return fmt.Errorf("%w: hardlink %q: target: %w", ErrHostile, e.Path, err)
		}
		if k, ok := prior(e.Target); !ok || k != KindFile {
			return fmt.Errorf("%w: hardlink %q names %q, which is not a file sent before it", ErrHostile, e.Path, e.Target)
		}
	case KindDevice:
		if !allowPrivileged {
			return fmt.Errorf("%w: %q is a device node; devices move only with a volume created with -o allow-privileged=true", ErrHostile, e.Path)
		}
	default:
		return fmt.Errorf("%w: %q has unknown kind %d", ErrHostile, e.Path, e.Kind)
	}
	if e.Path == "." && e.Kind != KindDir {
		return fmt.Errorf("%w: the volume root must be a directory", ErrHostile)
	}
	return nil
}

// validPath accepts clean, relative, slash-separated paths inside the volume.
func validPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: empty name", ErrHostile)
	case len(p) > MaxPath:
		return fmt.Errorf("%w: name of %d bytes (limit %d)", ErrHostile, len(p), MaxPath)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("%w: name with a NUL byte", ErrHostile)
	case p == ".":
		return nil
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("%w: absolute name %q", ErrHostile, p)
	case path.Clean(p) != p:
		return fmt.Errorf("%w: name %q is not clean", ErrHostile, p)
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." || c == "." {
			return fmt.Errorf("%w: name %q climbs out of the volume", ErrHostile, p)
		}
		if len(c) > MaxNameLen {
			return fmt.Errorf("%w: name component of %d bytes (limit %d)", ErrHostile, len(c), MaxNameLen)
		}
	}
	return nil
}

// Manifest encoding: a version byte, a uvarint count, then each entry. Every length is
// bounded before anything is allocated for it.
const manifestVersion = 1

// minEntryBytes is the smallest encoding of an entry: the kind byte and nine one-byte
// varints (path and target lengths, mode, uid, gid, size, mtime, rdev, xattr count).
const minEntryBytes = 10

// EncodeManifest serialises entries.
func EncodeManifest(entries []Entry) []byte {
	var b []byte
	b = append(b, manifestVersion)
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for _, e := range entries {
		b = append(b, byte(e.Kind))
		b = appendString(b, e.Path)
		b = binary.AppendUvarint(b, uint64(e.Mode))
		b = binary.AppendUvarint(b, uint64(e.UID))
		b = binary.AppendUvarint(b, uint64(e.GID))
		b = binary.AppendVarint(b, e.Size)
		b = binary.AppendVarint(b, e.MTime)
		b = appendString(b, e.Target)
		b = binary.AppendUvarint(b, e.Rdev)
		b = binary.AppendUvarint(b, uint64(len(e.Xattrs)))
		for _, x := range e.Xattrs {
			b = appendString(b, x.Name)
			b = appendString(b, string(x.Value))
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// DecodeManifest parses an encoded manifest, refusing oversized or malformed input with
// ErrHostile. It checks the encoding only; Validate checks each entry's meaning.
func DecodeManifest(b []byte) ([]Entry, error) {
	d := decoder{b: b}
	if v := d.byte(); v != manifestVersion {
		return nil, fmt.Errorf("%w: manifest version %d (want %d)", ErrHostile, v, manifestVersion)
	}
	n := d.uvarint()
	// Each entry takes at least minEntryBytes, so a count beyond that is a lie.
	if n > MaxEntries || n > uint64(len(d.b))/minEntryBytes {
		return nil, fmt.Errorf("%w: manifest declares %d entries in %d bytes", ErrHostile, n, len(b))
	}
	// Room grows with the entries actually decoded, never with the count declared: an
	// Entry is ten times the size of its smallest encoding.
	out := make([]Entry, 0, min(n, 1024))
	for range n {
		var e Entry
		e.Kind = Kind(d.byte())
		e.Path = d.string(MaxPath)
		e.Mode = uint32(d.uvarintMax(1 << 32))
		e.UID = uint32(d.uvarintMax(1 << 32))
		e.GID = uint32(d.uvarintMax(1 << 32))
		e.Size = d.varint()
		e.MTime = d.varint()
		e.Target = d.string(MaxPath)
		e.Rdev = d.uvarint()
		nx := d.uvarintMax(MaxXattrs + 1)
		for range nx {
			name := d.string(MaxXattrName)
			value := d.string(MaxXattrValue)
			e.Xattrs = append(e.Xattrs, Xattr{Name: name, Value: []byte(value)})
		}
		if d.err != nil {
			return nil, d.err
		}
		out = append(out, e)
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d bytes after the manifest", ErrHostile, len(d.b))
	}
	return out, d.err
}

// decoder reads the manifest encoding, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: manifest truncated or malformed (%s)", ErrHostile, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarintMax(limit uint64) uint64 {
	v := d.uvarint()
	if v >= limit {
		d.fail("value out of range")
		return 0
	}
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string(limit int) string {
	n := d.uvarint()
	if n > uint64(limit) || n > uint64(len(d.b)) {
		d.fail("string length")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
