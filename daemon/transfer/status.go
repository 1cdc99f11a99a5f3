package transfer

import (
	"slices"
	"strings"
	"time"
)

// Sending is a transfer this node is sending now.
type Sending struct {
	// ID is the transfer's ID, as the log lines about it say it ("transfer").
	ID     string
	Volume string
	// Peer is the receiving node.
	Peer string
	// Bytes counts the content bytes sent so far.
	Bytes   int64
	Started time.Time
}

// Sending lists the transfers this node is sending now, sorted by volume. It is safe to
// call from any goroutine.
func (s *Server) Sending() []Sending {
	s.mu.Lock()
	out := make([]Sending, 0, len(s.transfers))
	for id, t := range s.transfers {
		out = append(out, Sending{ID: id, Volume: t.volume, Peer: t.receiver, Bytes: t.source.Bytes(), Started: t.started})
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Sending) int {
		if c := strings.Compare(a.Volume, b.Volume); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}
