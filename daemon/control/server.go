package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/drayage/drayage/daemon/backup"
	"github.com/drayage/drayage/daemon/volume"
)

// SocketName is the control socket's file name in the state dir.
const SocketName = "control.sock"

// Volumes is what the control API serves; *volume.Manager implements it.
type Volumes interface {
	Get(ctx context.Context, name string) (volume.Info, error)
	Lookup(ctx context.Context, name string) (volume.Info, error)
	Delete(ctx context.Context, name string, o volume.DeleteOptions) (volume.RemoveResult, error)
	List(ctx context.Context) ([]volume.Info, error)
}

// Nodes is what the control API serves about the cluster: its nodes, moves, and the
// node's status.
type Nodes interface {
	Nodes(ctx context.Context, o NodesOptions) ([]NodeInfo, error)
	Status(ctx context.Context) (Status, error)
	MoveVolume(ctx context.Context, name, to string) (volume.MoveResult, error)
	CopyVolume(ctx context.Context, name, newName, to string) (volume.CopyResult, error)
	PromoteVolume(ctx context.Context, name, to string, acceptLoss bool) (volume.PromoteResult, error)
	StoreMembers(ctx context.Context) ([]StoreMember, error)
	RemoveStoreMember(ctx context.Context, name string, force bool) (StoreMember, error)
	StoreSnapshot(ctx context.Context) (SnapshotResult, error)
}

// NodesOptions says what GET /v1/nodes finds out about each node.
type NodesOptions struct {
	// Reach checks whether each live node's control port answers over mutual TLS
	// (NodeInfo.Reach); without it the roster comes at once (for shell completion).
	Reach bool
}

// MoveRequest is the body of POST /v1/volumes/{name}/move.
type MoveRequest struct {
	To string `json:"to"`
}

// CopyRequest is the body of POST /v1/volumes/{name}/copy: copy the volume into a new
// volume Name on node To.
type CopyRequest struct {
	Name string `json:"name"`
	To   string `json:"to"`
}

// PromoteRequest is the body of POST /v1/volumes/{name}/promote: make the replica on
// node To (any, if empty) the volume, its owner being down; AcceptLoss past max-lag.
type PromoteRequest struct {
	To         string `json:"to,omitempty"`
	AcceptLoss bool   `json:"accept_loss,omitempty"`
}

// NodeInfo is a node as 'drayage node ls' shows it.
type NodeInfo struct {
	Name string `json:"name"`
	// Address is the node's gossip address; Control and Data its other listeners.
	Address string `json:"address,omitempty"`
	Control string `json:"control,omitempty"`
	Data    string `json:"data,omitempty"`
	State   string `json:"state"`
	Version string `json:"version,omitempty"`
	// Protocol is the protocol range the node speaks ("1", "1-2"), as gossip says it.
	Protocol string    `json:"protocol,omitempty"`
	LastSeen time.Time `json:"last_seen"`
	Self     bool      `json:"self,omitempty"`
	// Reach is "ok" if the node's control port answered over mutual TLS, or why not.
	Reach string `json:"reach,omitempty"`
}

// Server serves the control API.
type Server struct {
	srv *http.Server
}

// NewServer returns a Server over vols.
func NewServer(vols Volumes, nodes Nodes, log *slog.Logger) *Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/volumes", func(w http.ResponseWriter, r *http.Request) {
		infos, err := vols.List(r.Context())
		reply(w, infos, err)
	})
	mux.HandleFunc("GET /v1/volumes/{name}", func(w http.ResponseWriter, r *http.Request) {
		get := vols.Get
		if r.URL.Query().Get("size") == "false" {
			get = vols.Lookup
		}
		info, err := get(r.Context(), r.PathValue("name"))
		reply(w, info, err)
	})
	mux.HandleFunc("DELETE /v1/volumes/{name}", func(w http.ResponseWriter, r *http.Request) {
		res, err := vols.Delete(r.Context(), r.PathValue("name"), volume.DeleteOptions{Force: r.URL.Query().Get("force") == "true"})
		reply(w, res, err)
	})
	mux.HandleFunc("POST /v1/volumes/{name}/move", func(w http.ResponseWriter, r *http.Request) {
		req, err := decode[MoveRequest](r, "move")
		if err != nil {
			reply(w, nil, err)
			return
		}
		res, err := nodes.MoveVolume(r.Context(), r.PathValue("name"), req.To)
		reply(w, res, err)
	})
	mux.HandleFunc("POST /v1/volumes/{name}/copy", func(w http.ResponseWriter, r *http.Request) {
		req, err := decode[CopyRequest](r, "copy")
		if err != nil {
			reply(w, nil, err)
			return
		}
		res, err := nodes.CopyVolume(r.Context(), r.PathValue("name"), req.Name, req.To)
		reply(w, res, err)
	})
	mux.HandleFunc("POST /v1/volumes/{name}/promote", func(w http.ResponseWriter, r *http.Request) {
		req, err := decode[PromoteRequest](r, "promote")
		if err != nil {
			reply(w, nil, err)
			return
		}
		res, err := nodes.PromoteVolume(r.Context(), r.PathValue("name"), req.To, req.AcceptLoss)
		reply(w, res, err)
	})
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, r *http.Request) {
		infos, err := nodes.Nodes(r.Context(), NodesOptions{Reach: r.URL.Query().Get("reach") != "false"})
		reply(w, infos, err)
	})
	mux.HandleFunc("GET /v1/status", handleStatus(nodes))
	mux.HandleFunc("GET /v1/store/members", handleStoreMembers(nodes))
	mux.HandleFunc("DELETE /v1/store/members/{name}", handleRemoveStoreMember(nodes))
	mux.HandleFunc("POST /v1/store/snapshot", handleStoreSnapshot(nodes))
	handleBackups(mux, nodes)
	return &Server{srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
}

// Serve answers requests on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	if err := s.srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops the server, letting requests in flight finish until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

// codes maps sentinel errors to the wire; the client maps them back.
var codes = []struct {
	err    error
	code   string
	status int
}{
	{volume.ErrNotFound, "not_found", http.StatusNotFound},
	{volume.ErrInvalidName, "invalid_name", http.StatusBadRequest},
	{volume.ErrInvalidOption, "invalid_option", http.StatusBadRequest},
	{volume.ErrOptionsConflict, "options_conflict", http.StatusConflict},
	{volume.ErrInUse, "in_use", http.StatusConflict},
	{volume.ErrExists, "exists", http.StatusConflict},
	{volume.ErrNotReady, "not_ready", http.StatusServiceUnavailable},
	{volume.ErrPulling, "pulling", http.StatusServiceUnavailable},
	{volume.ErrOwnerDown, "owner_down", http.StatusServiceUnavailable},
	{volume.ErrReplicaBehind, "replica_behind", http.StatusConflict},
	{backup.ErrBadLocation, "bad_location", http.StatusBadRequest},
	{backup.ErrNotFound, "backup_not_found", http.StatusNotFound},
}

// decode reads the JSON body of a request, a what request, into a T.
func decode[T any](r *http.Request, what string) (T, error) {
	var req T
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		return req, fmt.Errorf("bad %s request: %w", what, err)
	}
	return req, nil
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		body, status := errorBody{Error: err.Error()}, http.StatusInternalServerError
		for _, c := range codes {
			if errors.Is(err, c.err) {
				body.Code, status = c.code, c.status
				break
			}
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}
