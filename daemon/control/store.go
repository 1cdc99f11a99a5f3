package control

import (
	"context"
	"net/http"
)

// StoreMember is one member of the embedded store cluster, as 'drayage store ls' shows it.
type StoreMember struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	// Role is "voter" or "learner".
	Role   string `json:"role"`
	Leader bool   `json:"leader,omitempty"`
	// Started is false for a member added that has not come up yet.
	Started    bool     `json:"started"`
	PeerURLs   []string `json:"peer_urls"`
	ClientURLs []string `json:"client_urls"`
	// Reachable: its client port answered the asking node over mutual TLS just now.
	Reachable bool `json:"reachable"`
	// Self marks the asking node's own member.
	Self bool `json:"self,omitempty"`
}

// StoreMembers lists the members of the embedded store cluster (an error names the store
// in use if it is not the embedded one).
func (c *Client) StoreMembers(ctx context.Context) ([]StoreMember, error) {
	return call[[]StoreMember](ctx, c, http.MethodGet, "/v1/store/members", nil)
}

func handleStoreMembers(nodes Nodes) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ms, err := nodes.StoreMembers(r.Context())
		reply(w, ms, err)
	}
}
