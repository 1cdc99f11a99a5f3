package peers

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"

	"github.com/drayage/drayage/cluster/identity"
	"github.com/drayage/drayage/daemon/internal/testpki"
)

// echo is a message in JSON; counter one that encodes itself in binary.
type echo struct {
	Text string `json:"text"`
}

type counter struct{ N uint64 }

func (c *counter) MarshalBinary() ([]byte, error) { return binary.AppendUvarint(nil, c.N), nil }

func (c *counter) UnmarshalBinary(b []byte) error {
	n, k := binary.Uvarint(b)
	if k <= 0 || k != len(b) {
		return errors.New("bad counter")
	}
	c.N = n
	return nil
}

// A server with a unary interceptor has it called with each method's typed request and
// reply, and the method's full name.
func TestAServicesMethodsGoThroughTheServersInterceptor(t *testing.T) {
	var seen []string
	intercept := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		res, err := next(ctx, req)
		seen = append(seen, fmt.Sprintf("%s %T %T", info.FullMethod, req, res))
		return res, err
	}
	g := grpc.NewServer(grpc.ForceServerCodec(Codec{}), grpc.UnaryInterceptor(intercept))
	g.RegisterService(Service("test.Echo", Unary("Echo", func(_ context.Context, r *echo) (*echo, error) { return r, nil })), nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = g.Serve(l) }()
	defer g.Stop()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(Codec{})))
	require.NoError(t, err)
	defer conn.Close()
	var e echo
	require.NoError(t, conn.Invoke(context.Background(), "/test.Echo/Echo", &echo{Text: "hi"}, &e))
	assert.Equal(t, "hi", e.Text)
	assert.Equal(t, []string{"/test.Echo/Echo *peers.echo *peers.echo"}, seen)
}

// serve runs node-a's control server with service on it and returns the identities
// and the server's address.
func serve(t *testing.T, service *grpc.ServiceDesc) (map[string]*identity.Identity, string) {
	t.Helper()
	ids, err := testpki.Identities(t.TempDir(), "node-a", "node-b")
	require.NoError(t, err)
	s := NewServer(ids["node-a"], nil, slog.New(slog.DiscardHandler))
	if service != nil {
		s.Register(service)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return ids, l.Addr().String()
}

// Nodes of every version call each other with the content-subtype "json", and nothing
// registers a codec with gRPC: the server and the client each name Codec.
func TestCallsUseTheJSONContentSubtypeWithNoCodecRegistered(t *testing.T) {
	require.Nil(t, encoding.GetCodec("json"), "no codec is registered by that name")
	contentTypes := make(chan []string, 2)
	contentType := func(ctx context.Context) {
		md, _ := metadata.FromIncomingContext(ctx)
		contentTypes <- md.Get("content-type")
	}
	service := Service("test.Echo",
		Unary("Echo", func(ctx context.Context, r *echo) (*echo, error) {
			contentType(ctx)
			return &echo{Text: r.Text + "!"}, nil
		}),
		Unary("Count", func(ctx context.Context, r *counter) (*counter, error) {
			contentType(ctx)
			return &counter{N: r.N + 1}, nil
		}),
	)
	ids, addr := serve(t, service)
	ctx := context.Background()
	var e echo
	require.NoError(t, Call(ctx, ids["node-b"], "node-a", addr, "test.Echo/Echo", &echo{Text: "hello"}, &e))
	assert.Equal(t, "hello!", e.Text)
	var c counter
	require.NoError(t, Call(ctx, ids["node-b"], "node-a", addr, "test.Echo/Count", &counter{N: 1 << 40}, &c))
	assert.Equal(t, uint64(1<<40+1), c.N, "a message with a binary encoding travels in it")
	for range 2 {
		assert.Equal(t, []string{"application/grpc+json"}, <-contentTypes)
	}
}

func TestHealthChecksCrossTheControlServer(t *testing.T) {
	ids, addr := serve(t, nil)
	require.NoError(t, Check(context.Background(), ids["node-b"], "node-a", addr))
}

func TestCodecEncodesJSONOrAMessagesOwnBinary(t *testing.T) {
	var c Codec
	assert.Equal(t, "json", c.Name(), "older nodes find their codec by this name")
	b, err := c.Marshal(&echo{Text: "x"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"text":"x"}`, string(b))
	b, err = c.Marshal(&counter{N: 300})
	require.NoError(t, err)
	assert.Equal(t, []byte{0xac, 0x02}, b)
	var got counter
	require.NoError(t, c.Unmarshal(b, &got))
	assert.Equal(t, uint64(300), got.N)
	assert.Error(t, c.Unmarshal([]byte{0x80}, &got), "a bad binary message is refused")
}
