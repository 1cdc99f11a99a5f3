package volume

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/docker/go-units"

	"github.com/drayage/drayage/cluster"
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
	// ErrInUse means the volume is mounted by containers, or claimed for a transfer: the
	// cluster's sentinel, so one errors.Is test holds for the errors of both packages.
	ErrInUse = cluster.ErrInUse
	// ErrElsewhere means the volume is held by another node.
	ErrElsewhere = errors.New("volume is held by another node")
	// ErrOwnerDown means the node holding the volume is down.
	ErrOwnerDown = errors.New("the node holding the volume is down")
	// ErrReplicaBehind means the volume's owner is down and its freshest replica is
	// further behind than the volume's max-lag: promoting it needs --accept-loss.
	ErrReplicaBehind = errors.New("the volume's freshest replica is behind more than max-lag")
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

// storeErr wraps a cluster store failure in a message that says what to do.
func (m *Manager) storeErr(what string, err error) error {
	return fmt.Errorf("node %q: %s: cluster store: %w; check that the store (DRAYAGE_STORE) is reachable", m.cfg.Node, what, err)
}

func (m *Manager) notFound(name string) error {
	return fmt.Errorf("volume %q on node %q: %w; create it with 'docker volume create --driver drayage %s'",
		name, m.cfg.Node, ErrNotFound, name)
}

// lapsed turns a refusal for a volume mounted on a node whose lease lapsed into the
// user's error: what happened, and what to do. what is the operation refused; orForce
// ends the sentence with its %q for the node, or is empty.
func (m *Manager) lapsed(err error, what, orForce string) error {
	var le *cluster.LapsedError
	if !errors.As(err, &le) {
		return fmt.Errorf("%w: %w", ErrInUse, err)
	}
	mk := le.Mark
	since := "its lease lapsed"
	if p := m.currentPuller(); p != nil {
		if ok, seen := p.Peer(mk.Node); !ok && !seen.IsZero() {
			since += ", and it was last seen " + units.HumanDuration(time.Since(seen)) + " ago"
		}
	}
	msg := fmt.Sprintf("cannot %s volume %q: it is mounted on node %q by %s, and node %q has stopped renewing its lease in the cluster store (%s): it is down, paused or cut off from the store, and its containers may still be writing to the volume. Start drayage on node %q again (its mounts are then known)",
		what, mk.Volume, mk.Node, containers(mk.Mounts), mk.Node, since, mk.Node)
	if orForce != "" {
		msg += ", " + fmt.Sprintf(orForce, mk.Node)
	} else {
		msg += "; the volume can move once that node is back: its data is there"
	}
	return tell(ErrInUse, "%s", msg)
}

func containers(n int) string {
	if n == 1 {
		return "1 container"
	}
	return fmt.Sprintf("%d containers", n)
}

// held says who holds a volume now and what to do; mountedHint ends the sentence for a
// volume that containers mount.
func held(name string, c *cluster.Claim, mountedHint string) error {
	switch c.Kind {
	case cluster.ClaimMigrate:
		return tell(ErrInUse, "volume %q is moving to node %q right now; retry when it is done", name, c.Node)
	case cluster.ClaimCopy:
		return tell(ErrInUse, "volume %q is being copied to node %q right now; retry when it is done", name, c.Node)
	case cluster.ClaimSeed:
		return tell(ErrInUse, "volume %q is being filled from %s on node %q right now; see how far with 'drayage volume inspect %s', retry when it is done, or remove it on node %q to give it up",
			name, c.From, c.Node, name, c.Node)
	}
	return tell(ErrInUse, "volume %q is mounted on node %q by %s; %s", name, c.Node, containers(c.Mounts), mountedHint)
}

// refused turns a claim the registry refused (cluster.ErrInUse, ErrMigrating) into the
// user's error, naming who holds the volume now. what is the operation, for other errors.
func (m *Manager) refused(ctx context.Context, name, what, mountedHint string, err error) error {
	if errors.Is(err, cluster.ErrMountLapsed) {
		return m.lapsed(err, what, "")
	}
	if !errors.Is(err, cluster.ErrInUse) && !errors.Is(err, cluster.ErrMigrating) {
		return m.storeErr(what+" volume "+name, err)
	}
	if e, gerr := m.reg.Get(ctx, name); gerr == nil && e.Claim != nil {
		return held(name, e.Claim, mountedHint)
	}
	return fmt.Errorf("%w: %w; retry when it is free", ErrInUse, err)
}
