package control

import (
	"context"
	"net/http"
	"net/url"

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

// SnapshotResult is where the daemon wrote a snapshot of the store: a file in its state
// dir, which the CLI moves where the user asked.
type SnapshotResult struct {
	Path  string `json:"path"`
	Bytes int64  `json:"bytes"`
}

// RemoveStoreMember removes the member named name from the embedded store cluster.
func (c *Client) RemoveStoreMember(ctx context.Context, name string, force bool) (StoreMember, error) {
	q := ""
	if force {
		q = "?force=true"
	}
	return call[StoreMember](ctx, c, http.MethodDelete, "/v1/store/members/"+url.PathEscape(name)+q, nil)
}

// StoreSnapshot has the daemon write a snapshot of the embedded store into its state dir.
func (c *Client) StoreSnapshot(ctx context.Context) (SnapshotResult, error) {
	return call[SnapshotResult](ctx, c, http.MethodPost, "/v1/store/snapshot", nil)
}

func handleRemoveStoreMember(nodes Nodes) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m, err := nodes.RemoveStoreMember(r.Context(), r.PathValue("name"), r.URL.Query().Get("force") == "true")
		reply(w, m, err)
	}
}

func handleStoreSnapshot(nodes Nodes) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		res, err := nodes.StoreSnapshot(r.Context())
		reply(w, res, err)
	}
}

func handleStoreMembers(nodes Nodes) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ms, err := nodes.StoreMembers(r.Context())
		reply(w, ms, err)
	}
}
