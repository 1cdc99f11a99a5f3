package peers

import (
	"context"
	"errors"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/drayage/drayage/cluster/identity"
)

// Caller is the node name in the certificate of the peer of a gRPC call served on the
// control port: who asks, as the handshake verified it (never what a request says).
func Caller(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", errors.New("no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", errors.New("not a TLS peer")
	}
	return identity.PeerName(info.State), nil
}
