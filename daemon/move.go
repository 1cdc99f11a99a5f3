package daemon

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/drayage/drayage/daemon/volume"
)

// moveRequest asks a node to bring a volume to itself.
type moveRequest struct {
	Volume string `json:"volume"`
}

// controlService is the node-to-node control service (besides the transfer engine's):
// MoveHere asks the node to pull a volume to itself. Messages are JSON (the codec the
// transfer package registers).
func (d *Daemon) controlService() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: "drayage.Control",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "MoveHere",
			Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				var req moveRequest
				if err := dec(&req); err != nil {
					return nil, err
				}
				res, err := d.vols.Move(ctx, req.Volume, nil)
				return &res, err
			},
		}},
	}
}

// MoveVolume moves a volume to node: here directly, or by asking node over the cluster
// network.
func (d *Daemon) MoveVolume(ctx context.Context, name, to string) (volume.MoveResult, error) {
	if to == "" || to == d.cfg.Name {
		return d.vols.Move(ctx, name, nil)
	}
	n := d.net.Load()
	if n == nil {
		return volume.MoveResult{}, fmt.Errorf("cannot move volume %q to node %q: node %q runs alone (no certificate in its TLS dir); run the move on node %q", name, to, d.cfg.Name, to)
	}
	m, ok := n.gossip.Member(to)
	if !ok || m.Meta.Control == "" {
		return volume.MoveResult{}, fmt.Errorf("cannot move volume %q to node %q: node %q is not a member of this cluster; see 'drayage node ls'", name, to, to)
	}
	if m.State != "alive" {
		return volume.MoveResult{}, fmt.Errorf("cannot move volume %q to node %q: the node is %s (last seen %s); start drayage there, then retry", name, to, m.State, m.LastSeen.Format("15:04:05"))
	}
	conn, err := grpc.NewClient(m.Meta.Control, grpc.WithTransportCredentials(credentials.NewTLS(n.id.ClientConfig(to))),
		grpc.WithDefaultCallOptions(grpc.CallContentSubtype("json")))
	if err != nil {
		return volume.MoveResult{}, err
	}
	defer conn.Close()
	var res volume.MoveResult
	if err := conn.Invoke(ctx, "/drayage.Control/MoveHere", &moveRequest{Volume: name}, &res); err != nil {
		// The target's own error, as it wrote it (it names the volume and what to do).
		return res, errors.New(status.Convert(err).Message())
	}
	return res, nil
}
