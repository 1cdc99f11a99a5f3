package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"syscall"

	"github.com/drayage/drayage/daemon/volume"
)

// ErrDaemonUnreachable is returned when nothing answers on the control socket.
var ErrDaemonUnreachable = errors.New("cannot reach the drayage daemon")

// Client talks to the daemon whose state dir is root.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the daemon whose state dir is root.
func NewClient(root string) *Client {
	socket := filepath.Join(root, SocketName)
	return &Client{
		socket: socket,
		http: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
		}},
	}
}

// ListVolumes returns every volume.
func (c *Client) ListVolumes(ctx context.Context) ([]volume.Info, error) {
	return call[[]volume.Info](ctx, c, http.MethodGet, "/v1/volumes", nil)
}

// ListNodes returns the cluster's nodes, with whether their control port answers.
func (c *Client) ListNodes(ctx context.Context) ([]NodeInfo, error) {
	return call[[]NodeInfo](ctx, c, http.MethodGet, "/v1/nodes", nil)
}

// Roster returns the cluster's nodes without checking that they answer: quick.
func (c *Client) Roster(ctx context.Context) ([]NodeInfo, error) {
	return call[[]NodeInfo](ctx, c, http.MethodGet, "/v1/nodes?reach=false", nil)
}

// MoveVolume moves a volume to node (this node if empty) and waits until it is there.
func (c *Client) MoveVolume(ctx context.Context, name, to string) (volume.MoveResult, error) {
	return call[volume.MoveResult](ctx, c, http.MethodPost, volumePath(name)+"/move", MoveRequest{To: to})
}

// PromoteVolume makes the replica of a volume on node to (any, if empty) the volume, its
// owner being down; acceptLoss promotes it past the volume's max-lag.
func (c *Client) PromoteVolume(ctx context.Context, name, to string, acceptLoss bool) (volume.PromoteResult, error) {
	return call[volume.PromoteResult](ctx, c, http.MethodPost, volumePath(name)+"/promote", PromoteRequest{To: to, AcceptLoss: acceptLoss})
}

// RemoveVolume removes a volume and its data, wherever it is held, as o says. A volume
// that does not exist is ErrNotFound.
func (c *Client) RemoveVolume(ctx context.Context, name string, o volume.DeleteOptions) (volume.RemoveResult, error) {
	path := volumePath(name)
	if o.Force {
		path += "?force=true"
	}
	return call[volume.RemoveResult](ctx, c, http.MethodDelete, path, nil)
}

// CopyVolume copies a volume into a new volume newName on node to and waits until it is
// there.
func (c *Client) CopyVolume(ctx context.Context, name, newName, to string) (volume.CopyResult, error) {
	return call[volume.CopyResult](ctx, c, http.MethodPost, volumePath(name)+"/copy", CopyRequest{Name: newName, To: to})
}

// InspectVolume returns one volume with its size measured.
func (c *Client) InspectVolume(ctx context.Context, name string) (volume.Info, error) {
	return call[volume.Info](ctx, c, http.MethodGet, volumePath(name), nil)
}

// LookupVolume returns one volume without measuring its size: cheap enough to poll
// (for the progress of a move).
func (c *Client) LookupVolume(ctx context.Context, name string) (volume.Info, error) {
	return call[volume.Info](ctx, c, http.MethodGet, volumePath(name)+"?size=false", nil)
}

// volumePath is the path of the named volume in the API.
func volumePath(name string) string { return "/v1/volumes/" + url.PathEscape(name) }

// call sends one request to the daemon, with body as JSON unless it is nil, and decodes
// the answer into a T.
func call[T any](ctx context.Context, c *Client, method, path string, body any) (T, error) {
	var out T
	if err := c.do(ctx, method, path, body, &out); err != nil {
		var zero T
		return zero, err
	}
	return out, nil
}

// do sends one request, with body as JSON unless it is nil, and decodes a successful
// answer into out. Its errors say what to do: the daemon's own, with the sentinel error
// it wrapped, or why the daemon could not be asked.
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://drayage"+path, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w at %s: is it running? (docker plugin ls, or systemctl status drayage); if it uses another state dir, set --root or DRAYAGE_ROOT",
				ErrDaemonUnreachable, c.socket)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
			return fmt.Errorf("%w at %s: it stopped while working on the request (did it restart?); what it was doing is rolled back or resumes on the next try: check its log, then run the command again",
				ErrDaemonUnreachable, c.socket)
		}
		return fmt.Errorf("%w at %s: %w", ErrDaemonUnreachable, c.socket, err)
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read reply from the drayage daemon at %s: %w", c.socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e errorBody
		if json.Unmarshal(reply, &e) != nil || e.Error == "" {
			return fmt.Errorf("drayage daemon at %s answered %s", c.socket, resp.Status)
		}
		for _, code := range codes {
			if code.code == e.Code {
				return &remoteError{msg: e.Error, sentinel: code.err}
			}
		}
		return errors.New(e.Error)
	}
	if err := json.Unmarshal(reply, out); err != nil {
		return fmt.Errorf("decode reply from the drayage daemon at %s: %w", c.socket, err)
	}
	return nil
}

// remoteError carries the daemon's message and the sentinel it wrapped.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }
