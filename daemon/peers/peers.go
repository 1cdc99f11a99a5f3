// Package peers is how nodes talk to each other: gRPC on the control port over mutual
// TLS 1.3 (package identity). Every handshake another node fails is logged with its
// address and the reason. A peer is always known by the name in its certificate. A call
// from a node that speaks no protocol version this one does is refused (protocol.go).
package peers

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/drayage/drayage/cluster/identity"
)

// HandshakeTimeout bounds a TLS handshake with another node.
const HandshakeTimeout = 10 * time.Second

// Message limits. The messages that grow with a volume are the transfer engine's: the
// wanted list a receiver sends (at most 5 bytes a file: 50 MB for 10 million files) and
// the manifest a sender answers with (some 60 bytes a file, most of it the path: 600 MB
// for 10 million files). gRPC's default of 4 MiB would stop a volume of a million files.
const (
	// MaxRecvMessage bounds what the server accepts in one message.
	MaxRecvMessage = 256 << 20
	// MaxClientRecvMessage bounds what a client accepts: gRPC's largest.
	MaxClientRecvMessage = math.MaxInt32
)

// Keepalive: a peer that stops answering (cut off, paused, its host gone without a
// reset) is found within keepaliveTime+keepaliveTimeout on a connection with a call in
// flight, instead of after TCP's retransmission timeout of some fifteen minutes.
const (
	keepaliveTime    = 20 * time.Second
	keepaliveTimeout = 10 * time.Second
)

// Server serves other nodes on the control port.
type Server struct {
	grpc   *grpc.Server
	health *health.Server
}

// NewServer makes the control server. known says whether a node is a member. Every
// service on it, health checks included, exchanges messages in Codec.
func NewServer(id *identity.Identity, known func(string) bool, log *slog.Logger) *Server {
	creds := &loggingCreds{TransportCredentials: credentials.NewTLS(id.ServerConfig(known)), log: log}
	opts := append([]grpc.ServerOption{grpc.Creds(creds), grpc.ForceServerCodec(Codec{}), grpc.ConnectionTimeout(HandshakeTimeout),
		grpc.MaxRecvMsgSize(MaxRecvMessage),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveTime / 2})},
		protocolChecks(id.Name())...)
	s := &Server{grpc: grpc.NewServer(opts...), health: health.NewServer()}
	healthpb.RegisterHealthServer(s.grpc, s.health)
	return s
}

// Register adds a service made with Service (the transfer engine's, for one).
func (s *Server) Register(desc *grpc.ServiceDesc) { s.grpc.RegisterService(desc, nil) }

// Serve answers on l until Stop.
func (s *Server) Serve(l net.Listener) error { return s.grpc.Serve(l) }

// Stop stops the server, letting calls in flight finish for a moment.
func (s *Server) Stop() {
	s.health.Shutdown()
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.grpc.Stop()
	}
}

// loggingCreds is TLS that logs why a node's handshake failed.
type loggingCreds struct {
	credentials.TransportCredentials
	log *slog.Logger
}

func (c *loggingCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		c.log.Warn("rejected connection from another node", "remote", raw.RemoteAddr().String(), "reason", identity.Explain(err))
	}
	return conn, info, err
}

func (c *loggingCreds) Clone() credentials.TransportCredentials {
	return &loggingCreds{TransportCredentials: c.TransportCredentials.Clone(), log: c.log}
}

// Dial connects to node's control address. The connection is verified to reach that
// node, by the name in its certificate; calls encode their messages with Codec, and a
// peer that stops answering fails the calls in flight within half a minute.
func Dial(id *identity.Identity, node, addr string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(id.ClientConfig(node))),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.WithChainUnaryInterceptor(protocolUnary), grpc.WithChainStreamInterceptor(protocolStream),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(Codec{}), grpc.MaxCallRecvMsgSize(MaxClientRecvMessage),
			grpc.MaxCallSendMsgSize(MaxRecvMessage)))
	if err != nil {
		return nil, fmt.Errorf("node %q at %s: %w", node, addr, err)
	}
	return conn, nil
}

// Call calls method (service/method, e.g. "drayage.Control/Holds") of node at addr
// with req, decoding its reply into res, over one connection made for the call.
func Call(ctx context.Context, id *identity.Identity, node, addr, method string, req, res any) error {
	conn, err := Dial(id, node, addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Invoke(ctx, "/"+method, req, res)
}

// Check asks node whether it is serving, within ctx.
func Check(ctx context.Context, id *identity.Identity, node, addr string) error {
	conn, err := Dial(id, node, addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if s, ok := status.FromError(err); ok && s.Code() == codes.FailedPrecondition {
		return fmt.Errorf("node %q at %s refused: %s", node, addr, s.Message()) // a protocol mismatch, said plainly
	}
	if err != nil {
		return fmt.Errorf("node %q at %s: %w", node, addr, err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("node %q at %s: %s", node, addr, resp.GetStatus())
	}
	return nil
}
