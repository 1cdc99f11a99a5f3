package volume

import (
	"context"
	"fmt"
	"time"
)

// MoveResult describes a finished move.
type MoveResult struct {
	Volume string        `json:"volume"`
	From   string        `json:"from"`
	To     string        `json:"to"`
	Bytes  int64         `json:"bytes"`
	Took   time.Duration `json:"took"`
}

// Move brings a volume of any size to this node, unmounted ('drayage volume move'). A
// volume already here is left as it is. A pull of the volume already running here (for a
// Mount) is joined, not repeated. If ctx ends first, the move goes on in the background
// and Move returns ErrPulling.
func (m *Manager) Move(ctx context.Context, name string) (MoveResult, error) {
	unlock, err := m.begin(ctx, name)
	if err != nil {
		return MoveResult{}, err
	}
	e, err := m.settledEntry(ctx, name, "move")
	if err != nil {
		unlock()
		return MoveResult{}, err
	}
	res := MoveResult{Volume: name, From: e.Volume.Owner, To: m.cfg.Node}
	if e.Volume.Owner == m.cfg.Node {
		unlock()
		return res, nil
	}
	start := time.Now()
	j, err := m.joinPull(ctx, e, pullOptions{})
	unlock()
	if err != nil {
		return res, err
	}
	if err := m.await(ctx, j, fmt.Sprintf(moveHint, name)); err != nil {
		return res, err
	}
	unlock, err = m.begin(ctx, name)
	if err != nil {
		return res, err
	}
	defer unlock()
	m.releaseIdle(ctx, name)
	res.Bytes, res.Took = j.size, time.Since(start)
	return res, nil
}
