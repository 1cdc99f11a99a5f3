package peers

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/drayage/drayage/protocol"
)

// Every call between nodes carries the caller's protocol range (package protocol) in
// its metadata, and the server refuses a call from a node it shares no version with,
// with an error that names both nodes, both ranges and the node to upgrade. A call
// without one comes from a node of the first release, which spoke version 1.

// protocolKey is the metadata key of the caller's range.
const protocolKey = "drayage-protocol"

// withProtocol adds this build's range to a call's metadata.
func withProtocol(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, protocolKey, protocol.Own().String())
}

func protocolUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(withProtocol(ctx), method, req, reply, cc, opts...)
}

func protocolStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(withProtocol(ctx), desc, cc, method, opts...)
}

// checkProtocol refuses a call from a node that speaks no version this one speaks.
func checkProtocol(ctx context.Context, self string) error {
	var said string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(protocolKey); len(v) > 0 {
			said = v[0]
		}
	}
	caller, _ := Caller(ctx)
	theirs, err := protocol.Parse(said)
	if err == nil {
		_, err = protocol.Own().Common(self, caller, theirs)
	}
	if err != nil {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	return nil
}

// protocolChecks are the server's interceptors that run checkProtocol.
func protocolChecks(self string) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if err := checkProtocol(ctx, self); err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if err := checkProtocol(ss.Context(), self); err != nil {
				return err
			}
			return handler(srv, ss)
		}),
	}
}
