package control

import (
	"context"
	"net/http"

	"github.com/drayage/drayage/cluster/embedded"
)

// StoreMember is one member of the embedded store cluster, as 'drayage store ls' shows it.
type StoreMember struct {
	embedded.Member
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
