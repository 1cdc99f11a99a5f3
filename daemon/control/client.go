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
	var infos []volume.Info
	return infos, c.get(ctx, "/v1/volumes", &infos)
}

// ListNodes returns the cluster's nodes.
func (c *Client) ListNodes(ctx context.Context) ([]NodeInfo, error) {
	var infos []NodeInfo
	return infos, c.get(ctx, "/v1/nodes", &infos)
}

// MoveVolume moves a volume to node (this node if empty) and waits until it is there.
func (c *Client) MoveVolume(ctx context.Context, name, to string) (volume.MoveResult, error) {
	var res volume.MoveResult
	body, _ := json.Marshal(MoveRequest{To: to})
	return res, c.do(ctx, http.MethodPost, "/v1/volumes/"+url.PathEscape(name)+"/move", body, &res)
}

// InspectVolume returns one volume with its size measured.
func (c *Client) InspectVolume(ctx context.Context, name string) (volume.Info, error) {
	var info volume.Info
	return info, c.get(ctx, "/v1/volumes/"+url.PathEscape(name), &info)
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, out)
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://drayage"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w at %s: is it running? (docker plugin ls, or systemctl status drayage); if it uses another state dir, set --root or DRAYAGE_ROOT",
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
