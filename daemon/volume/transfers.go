package volume

import (
	"slices"
	"strings"
)

// Transfer is a transfer of a volume to this node that is running now: a move (a Mount
// or 'drayage volume move') or a copy. Volume is the volume sent; a copy's new volume is
// Progress.Copy.
type Transfer struct {
	Volume string `json:"volume"`
	Progress
}

// Receiving lists the transfers of volumes to this node that are running now, with
// their progress, sorted by volume.
func (m *Manager) Receiving() []Transfer {
	var out []Transfer
	m.receiving.Range(func(k, v any) bool {
		out = append(out, Transfer{Volume: v.(string), Progress: k.(*tracker).get()})
		return true
	})
	slices.SortFunc(out, func(a, b Transfer) int { return strings.Compare(a.Volume, b.Volume) })
	return out
}
