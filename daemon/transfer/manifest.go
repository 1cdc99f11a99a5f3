package transfer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path"
	"strings"
)

// kind is what an entry is.
type kind uint8

// Kinds of entry.
const (
	kindFile kind = iota + 1
	kindDir
	kindSymlink
	kindHardlink // another name for an earlier file; Target is its path
	kindFIFO
	kindDevice // character or block device; refused unless the volume allows devices
)

func (k kind) String() string {
	switch k {
	case kindFile:
		return "file"
	case kindDir:
		return "dir"
	case kindSymlink:
		return "symlink"
	case kindHardlink:
		return "hardlink"
	case kindFIFO:
		return "fifo"
	case kindDevice:
		return "device"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Limits on what a manifest may declare; anything beyond is hostile or broken.
const (
	maxPath       = 4096
	maxNameLen    = 255
	maxXattrs     = 128
	maxXattrName  = 255
	maxXattrValue = 64 << 10
	maxEntries    = 50_000_000
)

// xattr is one extended attribute (POSIX ACLs are the system.posix_acl_* ones).
type xattr struct {
	Name  string
	Value []byte
}

// entry is one thing in a volume's tree, as everything that must arrive intact.
type entry struct {
	// Path is slash-separated and relative to the volume root; "." is the root itself.
	Path string
	Kind kind
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
	Xattrs []xattr
}

// sameContent reports whether the receiver's b can stand for the sender's a without
// sending a's content: same kind, size and modification time (rsync's quick check).
func sameContent(a, b entry) bool {
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

// ErrChanged means files of the volume changed while they were sent (it was sent while
// mounted, to a replica): what arrived may be torn, so the pull does not count. Pull
// tries again; the next attempt sends only what changed.
var ErrChanged = errors.New("files changed while they were sent")

// Validate checks an entry as the receiver must before acting on it. prior reports
// whether a path names an entry seen earlier in the same manifest, and its kind.
func (e entry) Validate(allowPrivileged bool, prior func(string) (kind, bool)) error {
	if err := validPath(e.Path); err != nil {
		return err
	}
	if e.Mode&^0o7777 != 0 && e.Kind != kindDevice {
		return fmt.Errorf("%w: %q has mode bits %o beyond permissions", ErrHostile, e.Path, e.Mode)
	}
	if e.Size < 0 || (e.Kind != kindFile && e.Size != 0) {
		return fmt.Errorf("%w: %q declares size %d", ErrHostile, e.Path, e.Size)
	}
	if len(e.Xattrs) > maxXattrs {
		return fmt.Errorf("%w: %q has %d extended attributes (limit %d)", ErrHostile, e.Path, len(e.Xattrs), maxXattrs)
	}
	for _, x := range e.Xattrs {
		if x.Name == "" || len(x.Name) > maxXattrName || len(x.Value) > maxXattrValue || strings.ContainsRune(x.Name, 0) {
			return fmt.Errorf("%w: %q has a bad extended attribute", ErrHostile, e.Path)
		}
	}
	if e.Path != "." {
		if k, ok := prior(path.Dir(e.Path)); !ok || k != kindDir {
			return fmt.Errorf("%w: %q comes before its directory (or its parent is not a directory)", ErrHostile, e.Path)
		}
	}
	switch e.Kind {
	case kindDir, kindFile, kindFIFO:
	case kindSymlink:
		if e.Target == "" || len(e.Target) > maxPath || strings.ContainsRune(e.Target, 0) {
			return fmt.Errorf("%w: symlink %q has a bad target", ErrHostile, e.Path)
		}
	case kindHardlink:
		if err := validPath(e.Target); err != nil {
			return fmt.Errorf("%w: hardlink %q: target: %w", ErrHostile, e.Path, err)
		}
		if k, ok := prior(e.Target); !ok || k != kindFile {
			return fmt.Errorf("%w: hardlink %q names %q, which is not a file sent before it", ErrHostile, e.Path, e.Target)
		}
	case kindDevice:
		if !allowPrivileged {
			return fmt.Errorf("%w: %q is a device node; devices move only with a volume created with -o allow-privileged=true", ErrHostile, e.Path)
		}
	default:
		return fmt.Errorf("%w: %q has unknown kind %d", ErrHostile, e.Path, e.Kind)
	}
	if e.Path == "." && e.Kind != kindDir {
		return fmt.Errorf("%w: the volume root must be a directory", ErrHostile)
	}
	return nil
}

// validPath accepts clean, relative, slash-separated paths inside the volume.
func validPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: empty name", ErrHostile)
	case len(p) > maxPath:
		return fmt.Errorf("%w: name of %d bytes (limit %d)", ErrHostile, len(p), maxPath)
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
		if len(c) > maxNameLen {
			return fmt.Errorf("%w: name component of %d bytes (limit %d)", ErrHostile, len(c), maxNameLen)
		}
	}
	return nil
}

// Manifest encoding, part of the protocol (protocol.go): a version byte, a uvarint count,
// then each entry: its kind byte, path, mode, uid, gid, size, mtime, target, rdev and
// extended attributes (a count, then each name and value), in that order, as uvarints,
// varints (size, mtime) and strings (a uvarint length and the bytes). Every length is
// bounded before anything is allocated for it.
const manifestVersion = 1

// minEntryBytes is the smallest encoding of an entry: the kind byte and nine one-byte
// varints (path and target lengths, mode, uid, gid, size, mtime, rdev, xattr count).
const minEntryBytes = 10

// encodeManifest serialises entries.
func encodeManifest(entries []entry) []byte {
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

// decodeManifest parses an encoded manifest, refusing oversized or malformed input with
// ErrHostile. It checks the encoding only; Validate checks each entry's meaning.
func decodeManifest(b []byte) ([]entry, error) {
	d := decoder{b: b}
	if v := d.byte(); v != manifestVersion {
		return nil, fmt.Errorf("%w: manifest version %d (want %d)", ErrHostile, v, manifestVersion)
	}
	n := d.uvarint()
	// Each entry takes at least minEntryBytes, so a count beyond that is a lie.
	if n > maxEntries || n > uint64(len(d.b))/minEntryBytes {
		return nil, fmt.Errorf("%w: manifest declares %d entries in %d bytes", ErrHostile, n, len(b))
	}
	// Room grows with the entries actually decoded, never with the count declared: an
	// entry is ten times the size of its smallest encoding.
	out := make([]entry, 0, min(n, 1024))
	for range n {
		var e entry
		e.Kind = kind(d.byte())
		e.Path = d.string(maxPath)
		e.Mode = uint32(d.uvarintMax(1 << 32))
		e.UID = uint32(d.uvarintMax(1 << 32))
		e.GID = uint32(d.uvarintMax(1 << 32))
		e.Size = d.varint()
		e.MTime = d.varint()
		e.Target = d.string(maxPath)
		e.Rdev = d.uvarint()
		nx := d.uvarintMax(maxXattrs + 1)
		for range nx {
			name := d.string(maxXattrName)
			value := d.string(maxXattrValue)
			e.Xattrs = append(e.Xattrs, xattr{Name: name, Value: []byte(value)})
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
