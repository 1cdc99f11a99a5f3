package volume

import "errors"

// Sentinel errors; callers tell them apart with errors.Is. The errors the manager returns
// wrap them in a message that names the volume, the node and what to do.
var (
	// ErrNotFound means no such volume exists.
	ErrNotFound = errors.New("no such volume")
	// ErrInvalidName means the volume name breaks the naming rules.
	ErrInvalidName = errors.New("invalid volume name")
	// ErrInvalidOption means an option is unknown or has a bad value.
	ErrInvalidOption = errors.New("invalid volume option")
	// ErrOptionsConflict means the volume exists with other options.
	ErrOptionsConflict = errors.New("volume exists with other options")
	// ErrInUse means the volume is mounted by containers.
	ErrInUse = errors.New("volume in use")
	// ErrElsewhere means the volume is held by another node.
	ErrElsewhere = errors.New("volume is held by another node")
	// ErrNotReady means the daemon is still starting.
	ErrNotReady = errors.New("drayage is starting")
)
