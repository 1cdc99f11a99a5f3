package peers

import (
	"context"

	"google.golang.org/grpc"
)

// A service between nodes is a set of unary methods, each decoding a request message and
// answering with a reply, both in Codec: no generated code. Service describes one for
// Server.Register, from its methods made with Unary.

// Method is one unary method of a service.
type Method struct {
	name string
	// handler answers the method of the service named service.
	handler func(service string) grpc.MethodHandler
}

// Unary is the method name, answered by call with the request decoded into a new Req.
// A unary interceptor the server has (the control server has none) sees the *Req and
// the reply.
func Unary[Req, Res any](name string, call func(context.Context, *Req) (*Res, error)) Method {
	return Method{name: name, handler: func(service string) grpc.MethodHandler {
		return func(srv any, ctx context.Context, dec func(any) error, intercept grpc.UnaryServerInterceptor) (any, error) {
			req := new(Req)
			if err := dec(req); err != nil {
				return nil, err
			}
			if intercept == nil {
				return call(ctx, req)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + service + "/" + name}
			return intercept(ctx, req, info, func(ctx context.Context, req any) (any, error) { return call(ctx, req.(*Req)) })
		}
	}}
}

// Service describes the service name, made of methods, for Server.Register. Its methods
// are called as "/name/method" (Call's "name/method").
func Service(name string, methods ...Method) *grpc.ServiceDesc {
	desc := &grpc.ServiceDesc{ServiceName: name, HandlerType: (*any)(nil)}
	for _, m := range methods {
		desc.Methods = append(desc.Methods, grpc.MethodDesc{MethodName: m.name, Handler: m.handler(name)})
	}
	return desc
}
