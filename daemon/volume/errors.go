package volume

import "errors"

// Sentinel errors; callers tell them apart with errors.Is. The errors the manager returns
// wrap them in a message that names the volume, the node and what to do.
var (
	// ErrNotFound: no such volume exists.
	ErrNotFound = errors.New("no such volume")
	// ErrInvalidName: the volume name breaks the naming rules.
	ErrInvalidName = errors.New("invalid volume name")
	// ErrInvalidOption: an option is unknown or has a bad value.
	ErrInvalidOption = errors.New("invalid volume option")
	// ErrOptionsConflict: the volume exists with other options.
	ErrOptionsConflict = errors.New("volume exists with other options")
	// ErrInUse: the volume is mounted by containers.
	ErrInUse = errors.New("volume in use")
	// ErrNotReady: the daemon is still starting.
	ErrNotReady = errors.New("drayage is starting")
)
