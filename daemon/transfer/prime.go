package transfer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Prime brings a staging tree close to basis, a complete tree on the same node, before a
// pull into staging: every file basis holds that staging lacks, or holds with another
// size or modification time, is copied from basis (content, holes and time; the pull
// sets the rest), with the directories to hold it. A pull into staging then sends only
// what differs from basis. A replica syncs this way: its last synced tree is the basis,
// and staging is the tree it replaced, one sync behind, so most files are already there.
// A large file (deltaMin) is not copied whole: if the pull that made basis changed it in
// place, the parts it wrote are copied (the record of basis lists them); if staging
// holds another copy of it, that stays, for the pull to send the chunks that differ.
//
// Basis is the node's own tree, already received verified; its stored hashes go with
// the files copied, so the pull does not read them again. With trust, both trees are
// read from their records where they have them (treerecord.go), and staging gets a new
// one: a sync of a few changed files then costs a few reads, not two walks. Prime
// reports how many files and bytes it copied.
func Prime(ctx context.Context, basis, staging string, trust bool) (files int, bytes int64, err error) {
	var b tree
	var deltas map[string]fileDelta
	if r, ok := loadTree(basis); ok && trust && r.log == "" {
		b, deltas = r.tree, r.deltas
	} else if b, err = walk(ctx, basis); err != nil {
		return 0, 0, fmt.Errorf("read %s: %w", basis, err)
	}
	have, err := readStaging(ctx, staging, trust)
	if err != nil {
		return 0, 0, err
	}
	if err := DropTree(staging); err != nil { // staging changes from here on
		return 0, 0, err
	}
	var touched []string
	defer func() {
		if err != nil || len(have.tree.entries) == 0 {
			return
		}
		if t, err := rescan(ctx, staging, have.tree, touched); err == nil {
			_ = saveTree(staging, treeRecord{tree: t})
		}
	}()
	present := make(map[string]entry, len(have.tree.entries))
	for _, e := range have.tree.entries {
		present[e.Path] = e
	}
	if err := os.MkdirAll(staging, 0o700); err != nil {
		return 0, 0, err
	}
	from, err := os.OpenRoot(basis)
	if err != nil {
		return 0, 0, err
	}
	defer from.Close()
	to, err := os.OpenRoot(staging)
	if err != nil {
		return 0, 0, err
	}
	defer to.Close()
	known := loadIndex(IndexPath(basis))
	index := have.known
	defer func() { _ = index.save(IndexPath(staging), false) }()
	// clear removes what staging holds at p, and forgets what was in it.
	clear := func(p string) error {
		touched = append(touched, p)
		if err := to.RemoveAll(p); err != nil {
			return err
		}
		for q := range present {
			if q == p || strings.HasPrefix(q, p+"/") {
				delete(present, q)
			}
		}
		return nil
	}
	for i, e := range b.entries {
		if err := ctx.Err(); err != nil {
			return files, bytes, err
		}
		h, ok := present[e.Path]
		switch {
		case e.Path == ".":
		case e.Kind == kindDir:
			if ok && h.Kind == kindDir {
				continue
			}
			if ok {
				if err := clear(e.Path); err != nil {
					return files, bytes, err
				}
			}
			touched = append(touched, e.Path)
			if err := to.Mkdir(e.Path, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return files, bytes, err
			}
			present[e.Path] = entry{Path: e.Path, Kind: kindDir}
		case e.Kind == kindFile:
			if ok && sameContent(e, h) {
				continue
			}
			if d, changed := deltas[e.Path]; ok && changed && h.Kind == kindFile && h.Size == d.baseSize && h.MTime == d.baseMTime {
				// Staging holds the file as it was before the pull that made basis: copy
				// the parts that pull wrote, not the whole file.
				touched = append(touched, e.Path)
				if stamp, n, err := patchFile(from, to, e, d); err == nil {
					if stored, ok := known.get(e.Path, b.stamp(i)); ok {
						stored.fileStamp = stamp
						index[e.Path] = stored
					}
					files++
					bytes += n
					continue
				}
			}
			if ok && h.Kind == kindFile && e.Size >= deltaMin && h.Size >= deltaChunk {
				// An older copy of a large file: copying it whole would write it all here,
				// and the pull reads it anyway to offer its chunks (delta.go), then is sent
				// only the chunks that differ. Left as it is.
				continue
			}
			if ok {
				if err := clear(e.Path); err != nil {
					return files, bytes, err
				}
			}
			touched = append(touched, e.Path)
			stamp, err := copyFile(from, to, e)
			if err != nil {
				return files, bytes, fmt.Errorf("copy %s from %s: %w", e.Path, basis, err)
			}
			if stored, ok := known.get(e.Path, b.stamp(i)); ok {
				stored.fileStamp = stamp
				index[e.Path] = stored
			}
			files++
			bytes += e.Size
		}
	}
	return files, bytes, nil
}

// patchFile brings e's file in the tree to, which is as it was before the change d
// describes, to its state in from, by copying the parts d lists. It returns the file's
// stamp and the bytes copied. A file that is not what d starts from is left for a whole
// copy (an error).
func patchFile(from, to *os.Root, e entry, d fileDelta) (fileStamp, int64, error) {
	src, err := from.OpenFile(e.Path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fileStamp{}, 0, err
	}
	defer src.Close()
	dst, err := to.OpenFile(e.Path, os.O_RDWR|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return fileStamp{}, 0, err
	}
	defer dst.Close()
	in, out := int(src.Fd()), int(dst.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(out, &st); err != nil {
		return fileStamp{}, 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 || st.Size != d.baseSize || st.Mtim.Nano() != d.baseMTime {
		return fileStamp{}, 0, fmt.Errorf("%s is not the file its delta starts from", e.Path)
	}
	var copied int64
	for _, part := range d.parts {
		for o, end := part[0], min(part[0]+part[1], e.Size); o < end; {
			ro, wo := o, o
			n, err := unix.CopyFileRange(in, &ro, out, &wo, int(min(end-o, 1<<30)), 0)
			if err != nil {
				return fileStamp{}, copied, err
			}
			if n == 0 {
				return fileStamp{}, copied, fmt.Errorf("%s shrank while it was copied", e.Path)
			}
			o += int64(n)
			copied += int64(n)
		}
	}
	if err := unix.Ftruncate(out, e.Size); err != nil {
		return fileStamp{}, copied, err
	}
	if err := futimens(out, e.MTime); err != nil {
		return fileStamp{}, copied, err
	}
	if err := unix.Fstat(out, &st); err != nil {
		return fileStamp{}, copied, err
	}
	return stampOf(&st), copied, nil
}

// copyFile copies file e from one tree to the other, holes as holes, and gives the copy
// e's modification time. It returns the copy's stamp.
func copyFile(from, to *os.Root, e entry) (fileStamp, error) {
	src, err := from.OpenFile(e.Path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fileStamp{}, err
	}
	defer src.Close()
	if dir := path.Dir(e.Path); dir != "." {
		if err := to.MkdirAll(dir, 0o700); err != nil {
			return fileStamp{}, err
		}
	}
	dst, err := to.OpenFile(e.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fileStamp{}, err
	}
	defer dst.Close()
	in, out := int(src.Fd()), int(dst.Fd())
	for off := int64(0); off < e.Size; {
		data, err := unix.Seek(in, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		} else if err != nil {
			data = off
		}
		end, err := unix.Seek(in, data, unix.SEEK_HOLE)
		if err != nil || end > e.Size {
			end = e.Size
		}
		for o := data; o < end; {
			ro, wo := o, o
			n, err := unix.CopyFileRange(in, &ro, out, &wo, int(min(end-o, 1<<30)), 0)
			if err != nil {
				return fileStamp{}, err
			}
			if n == 0 {
				return fileStamp{}, fmt.Errorf("%s shrank while it was copied", e.Path)
			}
			o += int64(n)
		}
		off = end
	}
	if err := unix.Ftruncate(out, e.Size); err != nil {
		return fileStamp{}, err
	}
	if err := futimens(out, e.MTime); err != nil {
		return fileStamp{}, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(out, &st); err != nil {
		return fileStamp{}, err
	}
	return stampOf(&st), nil
}
