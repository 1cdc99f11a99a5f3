package transfer

import (
	"archive/tar"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"
)

// A tar archive is one more sender: Unpack turns it into a manifest and a stream of
// frames, and the sink that receives a pull receives it, with every rule a pull has (no
// name outside staging, no symlink traversal, no hardlink out, limits, privileged-content
// policy). What an archive can say that a manifest can't (a name given twice, a parent
// that is not a directory) is refused here first, naming the entry.

// ErrArchive means the archive could not be read as tar: damaged, truncated, or not tar.
var ErrArchive = errors.New("not a readable tar archive")

// ErrTooBig means an archive declares more bytes than the disk has free for it: refused
// from its headers, before its content is read (what a decompression bomb is).
var ErrTooBig = errors.New("the archive is larger than the free space")

// UnpackOptions say how an archive is unpacked.
type UnpackOptions struct {
	Sink SinkOptions
	// MaxEntries bounds the entries the archive may hold (0: the manifest's limit).
	MaxEntries int
	// Now stands for the time of the directories the archive does not list (its parents'
	// and the root's, unless it lists "./"); zero: the time of the call.
	Now time.Time
}

// UnpackResult describes a finished unpack.
type UnpackResult struct {
	Entries, Files int
	// Total is the tree's size; Written the content bytes written (a retry writes only
	// the files staging lacks).
	Total, Written int64
	RootHash       [32]byte
	Stripped       Stripped
}

// Unpack fills staging with the tree a tar archive holds, and makes it durable there;
// Install then puts it in place. open returns the archive's tar stream from its start:
// Unpack reads it twice, once for the manifest, which it checks whole before it touches
// staging (a hostile archive leaves nothing), once for the contents of the files staging
// lacks (an unpack cut midway resumes from the files it finished). Errors wrap
// ErrHostile (naming the entry), ErrTooBig or ErrArchive.
func Unpack(ctx context.Context, staging string, open func() (io.ReadCloser, error), o UnpackOptions) (UnpackResult, error) {
	var res UnpackResult
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = maxEntries
	}
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(staging), &st); err != nil {
		return res, fmt.Errorf("check the free space of %s: %w", filepath.Dir(staging), err)
	}
	a, err := scanArchive(ctx, open, o, filepath.Dir(staging), int64(st.Bavail)*st.Bsize)
	if err != nil {
		return res, err
	}
	// Staging is walked, not taken from its record: an unpack is rare, and what it left
	// may be anything.
	have, err := readStaging(ctx, staging, false)
	if err != nil {
		return res, err
	}
	s, err := newSink(staging, a.entries, have, o.Sink)
	if err != nil {
		return res, err
	}
	defer s.Close()
	res.Entries, res.Stripped = len(a.entries), s.Stripped()
	for _, e := range a.entries {
		res.Total += e.Size
	}
	wanted := s.Wanted()
	res.Files = len(wanted)
	if err := a.feed(ctx, open, s, wanted); err != nil {
		return res, err
	}
	res.Written = s.Bytes()
	if res.RootHash, err = s.Finish(ctx); err != nil {
		return res, err
	}
	return res, nil
}

// archived is what the first reading of an archive found: the manifest, and for each
// header (by its position in the archive) the entry whose content it carries.
type archived struct {
	entries []entry
	content map[int]uint32
}

// scanned is an entry as the archive lists it, before the manifest is put in order.
type scanned struct {
	entry
	header int // position of its header in the archive; -1 for a directory it implies
}

// scanArchive reads the archive's headers into a manifest (orderScanned). It refuses an
// archive that declares more than o.Sink.MaxBytes or free bytes as soon as its headers
// do: a bomb's content is never read.
func scanArchive(ctx context.Context, open func() (io.ReadCloser, error), o UnpackOptions, dir string, free int64) (archived, error) {
	r, err := open()
	if err != nil {
		return archived{}, err
	}
	defer r.Close()
	now := o.Now.UnixNano()
	byPath := map[string]*scanned{".": {entry: entry{Path: ".", Kind: kindDir, Mode: 0o755, MTime: now}, header: -1}}
	listed := map[string]bool{}
	var declared int64
	tr := tar.NewReader(r)
	for n := 0; ; n++ {
		if n%1024 == 0 && ctx.Err() != nil {
			return archived{}, ctx.Err()
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return archived{}, fmt.Errorf("%w: after %d entries: %w", ErrArchive, n, err)
		}
		e, skip, err := entryOf(h, o.Sink)
		if err != nil || skip {
			if err != nil {
				return archived{}, err
			}
			continue
		}
		if declared += e.Size; o.Sink.MaxBytes > 0 && declared > o.Sink.MaxBytes {
			return archived{}, fmt.Errorf("%w: archive entry %q: the archive declares %d bytes up to here, above the volume's limit of %d", ErrHostile, h.Name, declared, o.Sink.MaxBytes)
		}
		if declared > free {
			return archived{}, fmt.Errorf("%w: archive entry %q: the archive declares %d bytes up to here, but %s has %d free; free some space, then try again",
				ErrTooBig, h.Name, declared, dir, free)
		}
		if len(byPath) >= o.MaxEntries {
			return archived{}, fmt.Errorf("%w: the archive holds more than %d entries", ErrHostile, o.MaxEntries)
		}
		if err := addScanned(byPath, listed, scanned{entry: e, header: n}, now); err != nil {
			return archived{}, err
		}
	}
	return orderScanned(byPath), nil
}

// archiveName turns a name as tar stores it ("./a/b", "a/b/") into a manifest path, or
// refuses it with ErrHostile.
func archiveName(name string) (string, error) {
	p := strings.TrimSuffix(name, "/")
	for strings.HasPrefix(p, "./") {
		p = strings.TrimLeft(p[2:], "/")
	}
	if p == "" || p == "." {
		return ".", nil
	}
	if err := validPath(p); err != nil {
		return "", fmt.Errorf("archive entry %q: %w", name, err)
	}
	return p, nil
}

// entryOf makes a header into an entry; skip says the header lists nothing (a global
// header).
func entryOf(h *tar.Header, o SinkOptions) (e entry, skip bool, err error) {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return entry{}, true, nil
	}
	p, err := archiveName(h.Name)
	if err != nil {
		return entry{}, false, err
	}
	if h.Uid < 0 || h.Gid < 0 || h.Uid > 1<<32-1 || h.Gid > 1<<32-1 {
		return entry{}, false, fmt.Errorf("%w: archive entry %q has owner %d:%d", ErrHostile, h.Name, h.Uid, h.Gid)
	}
	e = entry{Path: p, Mode: uint32(h.Mode & 0o7777), UID: uint32(h.Uid), GID: uint32(h.Gid), MTime: h.ModTime.UnixNano()}
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			e.Xattrs = append(e.Xattrs, xattr{Name: name, Value: []byte(v)})
		}
	}
	slices.SortFunc(e.Xattrs, func(a, b xattr) int { return strings.Compare(a.Name, b.Name) })
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse: // tar.Reader reports an old archive's '\x00' as TypeReg
		e.Kind, e.Size = kindFile, h.Size
	case tar.TypeDir:
		e.Kind = kindDir
	case tar.TypeSymlink:
		e.Kind, e.Target = kindSymlink, h.Linkname
	case tar.TypeLink:
		e.Kind = kindHardlink
		if e.Target, err = archiveName(h.Linkname); err != nil || e.Target == "." {
			return entry{}, false, fmt.Errorf("%w: archive entry %q is a hardlink to %q, outside the archive's files", ErrHostile, h.Name, h.Linkname)
		}
	case tar.TypeFifo:
		e.Kind = kindFIFO
	case tar.TypeChar, tar.TypeBlock:
		e.Kind, e.Rdev = kindDevice, unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor))
		e.Mode |= unix.S_IFCHR
		if h.Typeflag == tar.TypeBlock {
			e.Mode = e.Mode&^unix.S_IFCHR | unix.S_IFBLK
		}
	default:
		return entry{}, false, fmt.Errorf("%w: archive entry %q is of tar type %q, which a volume can't hold", ErrHostile, h.Name, h.Typeflag)
	}
	// Names, modes, sizes and attributes; where the entry stands in the tree is checked
	// once the archive is read whole (addScanned, newSink).
	placed := func(p string) (kind, bool) {
		if e.Kind == kindHardlink && p == e.Target {
			return kindFile, true
		}
		return kindDir, true
	}
	if err := e.Validate(o.AllowPrivileged, placed); err != nil {
		return entry{}, false, fmt.Errorf("archive entry %q: %w", h.Name, err)
	}
	return e, false, nil
}

// addScanned adds entry s to the tree read so far, with the directories its path implies.
// It refuses a name listed twice (but for a directory, whose later header wins), an entry
// inside one that is not a directory (a symlink an archive writes through, say), and a
// hardlink to anything but a file listed before it.
func addScanned(byPath map[string]*scanned, listed map[string]bool, s scanned, now int64) error {
	name := s.Path
	if old, ok := byPath[name]; ok {
		if old.Kind != kindDir || s.Kind != kindDir {
			if listed[name] {
				return fmt.Errorf("%w: archive entry %q is listed twice", ErrHostile, name)
			}
			return fmt.Errorf("%w: archive entry %q is a %s, but entries before it are inside it", ErrHostile, name, s.Kind)
		}
		*old, listed[name] = s, true
		return nil
	}
	for d := path.Dir(name); ; d = path.Dir(d) {
		if p, ok := byPath[d]; ok {
			if p.Kind != kindDir {
				return fmt.Errorf("%w: archive entry %q is inside %q, a %s: unpacking it would write through it", ErrHostile, name, d, p.Kind)
			}
			break
		}
		byPath[d] = &scanned{entry: entry{Path: d, Kind: kindDir, Mode: 0o755, MTime: now}, header: -1}
	}
	if s.Kind == kindHardlink {
		t, ok := byPath[s.Target]
		if ok && t.Kind == kindHardlink {
			s.Target, t = t.Target, byPath[t.Target]
		}
		if !ok || t.Kind != kindFile {
			return fmt.Errorf("%w: archive entry %q is a hardlink to %q, which is not a file listed before it", ErrHostile, name, s.Target)
		}
	}
	byPath[name], listed[name] = &s, true
	return nil
}

// orderScanned puts the entries in the order a walk of the tree they make lists them
// (walk.go): the root, then depth first, each directory's names in byte order. So the
// root hash of the unpacked tree is the one its owner computes when it sends it. Of the
// names of a file with hardlinks, the first in that order holds the content and the
// others name it.
func orderScanned(byPath map[string]*scanned) archived {
	all := make([]*scanned, 0, len(byPath))
	for _, s := range byPath {
		all = append(all, s)
	}
	slices.SortFunc(all, func(a, b *scanned) int { return compareWalked(a.Path, b.Path) })
	a := archived{entries: make([]entry, len(all)), content: map[int]uint32{}}
	holder := map[string]string{} // file path in the archive -> the name that holds it here
	for i, s := range all {
		e := s.entry
		if e.Kind == kindFile || e.Kind == kindHardlink {
			file := e.Path
			if e.Kind == kindHardlink {
				file = e.Target
			}
			f := byPath[file]
			e = f.entry // a hardlink lists its file's owner, mode and times, as a walk does
			e.Path = s.Path
			if h, ok := holder[file]; ok {
				e.Kind, e.Target, e.Size, e.Xattrs = kindHardlink, h, 0, nil
			} else {
				holder[file] = e.Path
				a.content[f.header] = uint32(i)
			}
		}
		a.entries[i] = e
	}
	return a
}

// compareWalked orders paths as a walk lists them: "." first, then depth first with each
// directory's names in byte order ("a", "a/x", "a.b").
func compareWalked(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == ".":
		return -1
	case b == ".":
		return 1
	}
	for {
		ca, ra, moreA := strings.Cut(a, "/")
		cb, rb, moreB := strings.Cut(b, "/")
		if c := strings.Compare(ca, cb); c != 0 || !moreA || !moreB {
			if c != 0 {
				return c
			}
			return cmp.Compare(len(a), len(b)) // one is the other's parent
		}
		a, b = ra, rb
	}
}

// feed reads the archive again and sends the sink the content of the files it wants, as
// a sender's data stream would.
func (a archived) feed(ctx context.Context, open func() (io.ReadCloser, error), s *sink, wanted []uint32) error {
	if len(wanted) == 0 {
		return nil
	}
	r, err := open()
	if err != nil {
		return err
	}
	defer r.Close()
	return feedSink(s, func(fw *frameWriter) error { return a.send(ctx, tar.NewReader(r), fw, s.send) })
}

// feedSink has s receive the frames send writes, as from a sender's data stream, and
// returns the first error of either side.
func feedSink(s *sink, send func(*frameWriter) error) error {
	pr, pw := io.Pipe()
	received := make(chan error, 1)
	go func() {
		err := s.Receive(pr)
		pr.CloseWithError(cmp.Or(err, io.ErrClosedPipe)) // a write after the end fails
		received <- err
	}()
	err := send(newFrameWriter(pw))
	pw.CloseWithError(cmp.Or(err, io.EOF))
	if rerr := <-received; rerr != nil && (err == nil || errors.Is(err, io.ErrClosedPipe)) {
		err = rerr
	}
	return err
}

// send writes the wanted files' content as frames, each file hashed as it goes; chunks
// of zeros travel as holes (a sparse file in the archive stays sparse).
func (a archived) send(ctx context.Context, tr *tar.Reader, fw *frameWriter, want []bool) error {
	buf := make([]byte, chunkSize)
	h := blake3.New() // reset per file
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fw.Write(frameDone, nil)
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrArchive, err)
		}
		i, ok := a.content[n]
		if !ok || !want[i] {
			continue
		}
		if e := a.entries[i]; hdr.Size != e.Size {
			return fmt.Errorf("%w: entry %q changed between two readings", ErrArchive, e.Path)
		}
		if err := sendFile(ctx, tarContent{tr}, fw, i, hdr.Size, buf, h, nil); err != nil {
			return fmt.Errorf("archive entry %q: %w", hdr.Name, err)
		}
	}
}

// sendFile writes one file's content from r as frames: its header, data or holes, its
// hash. If want is set, content of another hash is refused with ErrCorrupt before its
// end is sent: the sink never completes the file.
func sendFile(ctx context.Context, r io.Reader, fw *frameWriter, index uint32, size int64, buf []byte, h *blake3.Hasher, want *[32]byte) error {
	h.Reset()
	if err := fw.File(index, size); err != nil {
		return err
	}
	for left := size; left > 0; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), left)])
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: the content ends %d bytes early", ErrArchive, left-int64(n))
		}
		if err != nil {
			return err
		}
		p := buf[:n]
		_, _ = h.Write(p)
		if n >= holeMin && allZero(p) {
			err = fw.Hole(int64(n))
		} else {
			err = fw.Write(frameData, p)
		}
		if err != nil {
			return err
		}
		left -= int64(n)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	if want != nil && sum != *want {
		return fmt.Errorf("%w: its content hash is %x, not %x", ErrCorrupt, sum[:8], want[:8])
	}
	return fw.Write(frameEnd, sum[:])
}

// tarContent reads an entry's content; a failure, a short entry included, is the
// archive's (ErrArchive).
type tarContent struct{ r io.Reader }

func (t tarContent) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: %w", ErrArchive, err)
	}
	return n, err
}

// holeMin is the shortest run of zeros an unpack leaves as a hole: one block.
const holeMin = 4096

// allZero reports whether p holds only zero bytes.
func allZero(p []byte) bool {
	for len(p) >= 8 {
		if p[0]|p[1]|p[2]|p[3]|p[4]|p[5]|p[6]|p[7] != 0 {
			return false
		}
		p = p[8:]
	}
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}
