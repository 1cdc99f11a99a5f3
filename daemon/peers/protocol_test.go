package peers

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/drayage/drayage/protocol"
)

// A call says the caller's protocol range; a caller that shares no version with the
// server is refused, naming both nodes and both ranges; one that says none speaks 1.
func TestACallFromANodeOfAnotherProtocolIsRefused(t *testing.T) {
	service := Service("test.Echo", Unary("Echo", func(ctx context.Context, r *echo) (*echo, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		return &echo{Text: strings.Join(md.Get(protocolKey), ",")}, nil
	}))
	ids, addr := serve(t, service)
	ctx := context.Background()
	var e echo
	require.NoError(t, Call(ctx, ids["node-b"], "node-a", addr, "test.Echo/Echo", &echo{}, &e))
	assert.Equal(t, protocol.Own().String(), e.Text, "the caller said its range")

	// A node that speaks only a later version: its call is refused.
	raw, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(ids["node-b"].ClientConfig("node-a"))),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(Codec{})))
	require.NoError(t, err)
	defer raw.Close()
	future := metadata.AppendToOutgoingContext(ctx, protocolKey, "99")
	err = raw.Invoke(future, "/test.Echo/Echo", &echo{}, &e)
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
	assert.Contains(t, status.Convert(err).Message(), `node "node-a" speaks protocol 1 and node "node-b" speaks 99; upgrade node "node-a"`)

	// A node of the first release says nothing: version 1.
	require.NoError(t, raw.Invoke(ctx, "/test.Echo/Echo", &echo{}, &e))
}
