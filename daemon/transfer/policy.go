package transfer

import (
	"slices"
	"strings"
)

// Privileged content is what grants more than the files' owners have: setuid and setgid
// files, file capabilities (security.capability), trusted.* attributes (readable only
// with CAP_SYS_ADMIN, used by overlay file systems among others) and device nodes. A
// volume holds it only if it was created with allow-privileged=true; otherwise a receiver
// strips the bits and attributes on arrival (device nodes, which can't be stripped, are
// refused), so that a container on the sending node can't plant privileges on the
// receiving one. A setgid directory (its files' group inherited) is kept: it grants
// nothing.
const capabilityXattr = "security.capability"

// privilegedXattr reports whether an extended attribute is privileged content.
func privilegedXattr(name string) bool {
	return name == capabilityXattr || strings.HasPrefix(name, "trusted.")
}

// unprivileged returns e without privileged bits and attributes, and whether it had any.
func (e entry) unprivileged() (entry, bool) {
	changed := false
	if e.Kind == kindFile && e.Mode&0o6000 != 0 {
		e.Mode &^= 0o6000
		changed = true
	}
	if slices.ContainsFunc(e.Xattrs, func(x xattr) bool { return privilegedXattr(x.Name) }) {
		e.Xattrs = slices.DeleteFunc(slices.Clone(e.Xattrs), func(x xattr) bool { return privilegedXattr(x.Name) })
		changed = true
	}
	return e, changed
}

// Stripped is what a sink took off the privileged content of a volume that does not
// allow it: how many entries, and the first few of their paths.
type Stripped struct {
	Count int
	Paths []string
}

// maxStrippedPaths bounds the paths Stripped names.
const maxStrippedPaths = 10

func (s *Stripped) add(p string) {
	s.Count++
	if len(s.Paths) < maxStrippedPaths {
		s.Paths = append(s.Paths, p)
	}
}
