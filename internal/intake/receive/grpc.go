package receive

import (
	"context"
	"errors"
	"fmt"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/gzip" // clients may gzip requests; registering the decompressor is enough
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// GRPCConfig configures the gRPC receiver.
type GRPCConfig struct {
	// MaxRecvMsgBytes bounds a request message after decompression.
	// Zero means DefaultMaxRequestBytes.
	MaxRecvMsgBytes int
}

const (
	traceServiceName = "opentelemetry.proto.collector.trace.v1.TraceService"
	exportMethod     = "/" + traceServiceName + "/Export"
)

// NewGRPCServer returns a gRPC server with the OTLP trace service
// registered on it. extra options are applied after the receiver's own, so
// callers can add credentials, interceptors or keepalive settings; other
// services may be registered on the server too.
func NewGRPCServer(c Consumer, cfg GRPCConfig, extra ...grpc.ServerOption) *grpc.Server {
	s := grpc.NewServer(append(GRPCServerOptions(cfg), extra...)...)
	RegisterGRPC(s, c)
	return s
}

// GRPCServerOptions are the server options RegisterGRPC depends on: the raw
// codec, which lets the service see request bytes undecoded, and the
// message size limit.
func GRPCServerOptions(cfg GRPCConfig) []grpc.ServerOption {
	limit := cfg.MaxRecvMsgBytes
	if limit <= 0 {
		limit = DefaultMaxRequestBytes
	}
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(rawCodec{}),
		grpc.MaxRecvMsgSize(limit),
	}
}

// RegisterGRPC registers the OTLP trace service on s. s must have been
// created with GRPCServerOptions (NewGRPCServer does that); with the stock
// codec every Export call fails with Internal, because the request type is
// deliberately not a proto message.
func RegisterGRPC(s grpc.ServiceRegistrar, c Consumer) {
	s.RegisterService(&traceServiceDesc, &grpcTraceService{consumer: c})
}

// rawRequest holds an Export request's bytes as they came off the wire.
type rawRequest struct {
	buf mem.Buffer
}

func (r *rawRequest) bytes() []byte {
	if r.buf == nil {
		return nil
	}
	return r.buf.ReadOnlyData()
}

func (r *rawRequest) free() {
	if r.buf != nil {
		r.buf.Free()
		r.buf = nil
	}
}

// rawCodec is the server codec. It keeps the bytes of requests aimed at a
// rawRequest and behaves like the standard proto codec for everything else,
// including all responses.
type rawCodec struct{}

var protoCodec = encoding.GetCodecV2(proto.Name)

func (rawCodec) Name() string { return proto.Name }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return protoCodec.Marshal(v)
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*rawRequest); ok {
		// A message that arrived in one piece is only reference-counted,
		// not copied; grpc frees its own reference once we return.
		r.buf = data.MaterializeToBuffer(mem.DefaultBufferPool())
		return nil
	}
	return protoCodec.Unmarshal(data, v)
}

// traceExporter exists for the ServiceDesc's HandlerType check.
type traceExporter interface {
	export(ctx context.Context, req *rawRequest) (*coltracepb.ExportTraceServiceResponse, error)
}

var traceServiceDesc = grpc.ServiceDesc{
	ServiceName: traceServiceName,
	HandlerType: (*traceExporter)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Export",
		Handler:    exportHandler,
	}},
	Metadata: "opentelemetry/proto/collector/trace/v1/trace_service.proto",
}

func exportHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	req := &rawRequest{}
	if err := dec(req); err != nil {
		return nil, err
	}
	defer req.free()
	svc := srv.(traceExporter)
	if interceptor == nil {
		return svc.export(ctx, req)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: exportMethod}
	return interceptor(ctx, req, info, func(ctx context.Context, r any) (any, error) {
		return svc.export(ctx, r.(*rawRequest))
	})
}

type grpcTraceService struct {
	consumer Consumer
}

func (s *grpcTraceService) export(ctx context.Context, req *rawRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	body := req.bytes()
	if len(body) == 0 {
		// The empty message is a valid request with nothing in it.
		return &coltracepb.ExportTraceServiceResponse{}, nil
	}
	res, err := s.consumer.ConsumeTraces(withTenant(ctx, grpcTenant(ctx)), body)
	if err != nil {
		return nil, grpcError(err)
	}
	return exportResponse(res), nil
}

func exportResponse(res Result) *coltracepb.ExportTraceServiceResponse {
	resp := &coltracepb.ExportTraceServiceResponse{}
	if res.RejectedSpans > 0 || res.Message != "" {
		resp.PartialSuccess = &coltracepb.ExportTracePartialSuccess{
			RejectedSpans: res.RejectedSpans,
			ErrorMessage:  res.Message,
		}
	}
	return resp
}

// grpcError maps a Consumer error onto the status codes OTLP/gRPC clients
// use to decide whether, and when, to retry.
func grpcError(err error) error {
	kind, delay := classify(err)
	switch kind {
	case failMalformed:
		return status.Error(codes.InvalidArgument, fmt.Sprintf("request does not decode: %v", err))
	case failRateLimited:
		return retryStatus(codes.ResourceExhausted, err, delay)
	case failUnavailable:
		return retryStatus(codes.Unavailable, err, delay)
	case failCanceled:
		if errors.Is(err, context.DeadlineExceeded) {
			return status.Error(codes.DeadlineExceeded, err.Error())
		}
		return status.Error(codes.Canceled, err.Error())
	default:
		return status.Error(codes.Internal, err.Error())
	}
}

func retryStatus(code codes.Code, err error, delay time.Duration) error {
	st := status.New(code, err.Error())
	if delay < 0 {
		delay = 0
	}
	withInfo, derr := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
	if derr != nil {
		// Details only fail to attach if they cannot be marshaled; the
		// code alone still tells the client to retry.
		return st.Err()
	}
	return withInfo.Err()
}
