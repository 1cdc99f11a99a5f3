package daemon

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/drayage/drayage/cluster/gossip"
	"github.com/drayage/drayage/daemon/metrics"
	"github.com/drayage/drayage/daemon/peers"
	"github.com/drayage/drayage/daemon/transfer"
	"github.com/drayage/drayage/daemon/volume"
)

// The hinge of the Mount path: the volume manager (package volume) pulls a volume held
// by another node through its Puller interface; netPuller implements it over the
// cluster network. It finds the sending node's control address in gossip, takes a
// transfer slot (DRAYAGE_MAX_TRANSFERS), and runs transfer.Pull, which asks the sender's
// transfer service over mutual TLS and receives the tree on the data port into staging.
// On the sending node, the transfer service asks the volume manager (SendDir) whether
// and from where to send. Holds and RemovalAsked ask another node's control service
// (move.go) before this node drops a copy or deletes a volume.

// netPuller moves volumes to this node over the cluster network: gossip says who is
// alive and where their control port is; the transfer engine pulls.
type netPuller struct {
	n       *network
	log     *slog.Logger
	metrics *metrics.Metrics
	idle    time.Duration // a data stream's idle timeout
	// slots holds a token for each pull running; a pull beyond the limit waits for one.
	slots chan struct{}
}

var _ volume.Puller = netPuller{}

// Peer tells whether gossip sees node alive, and when it was last seen.
func (p netPuller) Peer(node string) (bool, time.Time) {
	m, ok := p.n.gossip.Member(node)
	return ok && m.State == gossip.StateAlive, m.LastSeen
}

// Holds asks node, over mutual TLS, what it holds of a volume.
func (p netPuller) Holds(ctx context.Context, node, name string) (volume.Holding, error) {
	var h volume.Holding
	return h, p.ask(ctx, node, "Holds", &holdsRequest{Volume: name}, &h)
}

// RemovalAsked asks node, over mutual TLS, whether it asked for the removal of a volume.
func (p netPuller) RemovalAsked(ctx context.Context, node, name string, epoch uint64) (bool, error) {
	var r removalReply
	return r.Asked, p.ask(ctx, node, "RemovalAsked", &removalRequest{Volume: name, Epoch: epoch}, &r)
}

// Answers calls node's control service directly, whatever gossip says of its state, and
// reports whether it answered within ctx (a node too old to know the call answers too).
func (p netPuller) Answers(ctx context.Context, node string) bool {
	m, ok := p.n.gossip.Member(node)
	if !ok || m.Meta.Control == "" {
		return false
	}
	var r pingReply
	err := peers.Call(ctx, p.n.id, node, m.Meta.Control, controlServiceName+"/Ping", &pingRequest{}, &r)
	return err == nil || status.Code(err) == codes.Unimplemented
}

// ask calls method of node's control service, if gossip sees the node alive.
func (p netPuller) ask(ctx context.Context, node, method string, req, res any) error {
	m, ok := p.n.gossip.Member(node)
	if !ok || m.Meta.Control == "" || m.State != gossip.StateAlive {
		return fmt.Errorf("node %q is not alive in this node's gossip roster", node)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := peers.Call(ctx, p.n.id, node, m.Meta.Control, controlServiceName+"/"+method, req, res); err != nil {
		return fmt.Errorf("node %q: %w", node, err)
	}
	return nil
}

func (p netPuller) Pull(ctx context.Context, r volume.PullRequest) (volume.Pulled, error) {
	m, ok := p.n.gossip.Member(r.From)
	if !ok || m.Meta.Control == "" {
		return volume.Pulled{}, fmt.Errorf("node %q is not in this node's gossip roster; check that both nodes joined the same cluster", r.From)
	}
	o := transfer.PullOptions{Identity: p.n.id, From: r.From, Control: m.Meta.Control, Volume: r.Volume, Epoch: r.Epoch, Staging: r.Staging,
		Sink: transfer.SinkOptions{MaxBytes: r.MaxBytes, AllowPrivileged: r.AllowPrivileged}, IdleTimeout: p.idle, Metrics: p.metrics,
		Progress: r.Progress, Live: r.Live, Walk: r.Walk, Verify: r.Verify}
	select {
	case p.slots <- struct{}{}:
		defer func() { <-p.slots }()
	default:
		p.log.Info("waiting for a transfer to end before pulling a volume (DRAYAGE_MAX_TRANSFERS)", "volume", r.Volume, "peer", r.From, "limit", cap(p.slots))
		select {
		case p.slots <- struct{}{}:
			defer func() { <-p.slots }()
		case <-ctx.Done():
			return volume.Pulled{}, fmt.Errorf("node %q receives %d volumes already, its limit (DRAYAGE_MAX_TRANSFERS): %w", p.n.id.Name(), cap(p.slots), ctx.Err())
		}
	}
	start := time.Now()
	res, err := transfer.Pull(ctx, o)
	if err != nil {
		p.log.Warn("receiving volume failed", "volume", r.Volume, "peer", r.From, "transfer", res.Transfer, "epoch", r.Epoch, "err", err)
		return volume.Pulled{}, err
	}
	if s := res.Stripped; s.Count > 0 {
		p.log.Warn("stripped privileged content from a volume created without allow-privileged: setuid/setgid bits, file capabilities and trusted.* attributes do not travel; create the volume with -o allow-privileged=true to keep them",
			"volume", r.Volume, "peer", r.From, "files", s.Count, "e.g.", strings.Join(s.Paths, ","))
	}
	p.log.Info("received volume", "volume", r.Volume, "peer", r.From, "transfer", res.Transfer, "epoch", r.Epoch,
		"files", res.Files, "bytes", res.Bytes, "total", res.Total, "took", time.Since(start).Round(time.Millisecond))
	return volume.Pulled{Size: res.Total, Root: hex.EncodeToString(res.RootHash[:]), Sent: res.Bytes}, nil
}
