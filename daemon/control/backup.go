package control

import (
	"context"
	"net/http"
	"net/url"

	"github.com/drayage/drayage/daemon/backup"
	"github.com/drayage/drayage/progress"
)

// Backups is what the control API serves about backups; the daemon implements it.
type Backups interface {
	BackupVolume(ctx context.Context, name string, r BackupRequest) (backup.Result, error)
	BackupProgress(ctx context.Context, name string) (*progress.Transfer, error)
	ListBackups(ctx context.Context, at string) ([]backup.Info, error)
}

// BackupRequest is the body of POST /v1/volumes/{name}/backup: back the volume up to
// To (s3://BUCKET/PREFIX/), then keep only the newest Keep snapshots there (0: all).
type BackupRequest struct {
	To   string `json:"to"`
	Keep int    `json:"keep,omitempty"`
}

// handleBackups serves the backup calls, if nodes can take them.
func handleBackups(mux *http.ServeMux, nodes Nodes) {
	b, ok := nodes.(Backups)
	if !ok {
		return
	}
	mux.HandleFunc("POST /v1/volumes/{name}/backup", func(w http.ResponseWriter, r *http.Request) {
		req, err := decode[BackupRequest](r, "backup")
		if err != nil {
			reply(w, nil, err)
			return
		}
		res, err := b.BackupVolume(r.Context(), r.PathValue("name"), req)
		reply(w, res, err)
	})
	mux.HandleFunc("GET /v1/volumes/{name}/backup", func(w http.ResponseWriter, r *http.Request) {
		p, err := b.BackupProgress(r.Context(), r.PathValue("name"))
		reply(w, p, err)
	})
	mux.HandleFunc("GET /v1/backups", func(w http.ResponseWriter, r *http.Request) {
		infos, err := b.ListBackups(r.Context(), r.URL.Query().Get("at"))
		reply(w, infos, err)
	})
}

// BackupVolume backs a volume up (on its owner) and returns what the backup did.
func (c *Client) BackupVolume(ctx context.Context, name string, r BackupRequest) (backup.Result, error) {
	return call[backup.Result](ctx, c, http.MethodPost, volumePath(name)+"/backup", r)
}

// BackupProgress is how far the running backup of a volume has come (nil: none runs).
func (c *Client) BackupProgress(ctx context.Context, name string) (*progress.Transfer, error) {
	return call[*progress.Transfer](ctx, c, http.MethodGet, volumePath(name)+"/backup", nil)
}

// ListBackups lists the snapshots at a backup location, oldest first.
func (c *Client) ListBackups(ctx context.Context, at string) ([]backup.Info, error) {
	return call[[]backup.Info](ctx, c, http.MethodGet, "/v1/backups?at="+url.QueryEscape(at), nil)
}
