package volume

import (
	"errors"
	"fmt"
)

// Sentinel errors; callers tell them apart with errors.Is. The errors the manager returns
// wrap them in a message that names the volume, the node and what to do.
var (
	// ErrNotFound means no such volume exists.
	ErrNotFound = errors.New("no such volume")
	// ErrInvalidName means the volume name breaks the naming rules.
	ErrInvalidName = errors.New("invalid volume name")
	// ErrInvalidOption means an option is unknown or has a bad value.
	ErrInvalidOption = errors.New("invalid volume option")
	// ErrExists means a volume of that name exists already (where a new one is wanted).
	ErrExists = errors.New("volume exists")
	// ErrOptionsConflict means the volume exists with other options.
	ErrOptionsConflict = errors.New("volume exists with other options")
	// ErrInUse means the volume is mounted by containers.
	ErrInUse = errors.New("volume in use")
	// ErrElsewhere means the volume is held by another node.
	ErrElsewhere = errors.New("volume is held by another node")
	// ErrOwnerDown means the node holding the volume is down.
	ErrOwnerDown = errors.New("the node holding the volume is down")
	// ErrTooLarge means the volume is above the size a Mount moves.
	ErrTooLarge = errors.New("volume too large to move on mount")
	// ErrNotReady means the daemon is still starting.
	ErrNotReady = errors.New("drayage is starting")
	// ErrPulling means the volume is on its way to this node, in the background; the
	// call can be made again in a moment.
	ErrPulling = errors.New("volume is still being pulled")
	// ErrConflict means the cluster record and this node's copy of the volume disagree
	// (the record is older than the copy, names another copy at its epoch, or a move is
	// not settled yet): the copy is kept, and not used until that is settled.
	ErrConflict = errors.New("the cluster record and this node's copy disagree")
)

// userError is a message written for people that still unwraps to a sentinel error.
type userError struct {
	msg      string
	sentinel error
}

func (e *userError) Error() string { return e.msg }
func (e *userError) Unwrap() error { return e.sentinel }

// tell formats a message for the user that errors.Is matches against sentinel.
func tell(sentinel error, format string, args ...any) error {
	return &userError{msg: fmt.Sprintf(format, args...), sentinel: sentinel}
}
