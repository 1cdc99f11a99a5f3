package volume

import (
	"fmt"
	"regexp"
)

// MaxNameLen is the longest volume name accepted.
const MaxNameLen = 128

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// ValidateName checks a volume name before it touches a disk or a store: 1 to 128
// characters of letters, digits, '_', '.' and '-', starting with a letter or digit. This
// rules out '..', '/', NUL and every other way a name could escape the state dir.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: the name is empty; give the volume a name of letters, digits, '_', '.' or '-'", ErrInvalidName)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: the name is %d characters long; use at most %d", ErrInvalidName, len(name), MaxNameLen)
	}
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%w %q: use letters, digits, '_', '.' or '-', starting with a letter or digit", ErrInvalidName, name)
	}
	return nil
}
