package headsampling

import (
	"context"

	api_v2 "github.com/jaegertracing/jaeger-idl/proto-gen/api_v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// WarningHeader is the gRPC response header that says why a default strategy was served (no
// service named). The answer itself stays a strategy, as Jaeger's collector answers it, so an
// SDK that sent nothing useful still samples by the default rather than keep its own.
const WarningHeader = "ariadne-warning"

// SamplingManager serves the Jaeger api_v2 SamplingManager gRPC service (the one Jaeger's
// collector serves beside its span intake, and the OpenTelemetry Java SDK's jaeger_remote sampler
// asks by default): the same strategies as the HTTP endpoints, as protobuf.
type SamplingManager struct {
	// Lookup gives the strategies that answer the call: the caller's tenant's.
	Lookup func(ctx context.Context) *Strategies
}

// Register adds the service to s.
func (m *SamplingManager) Register(s *grpc.Server) {
	api_v2.RegisterSamplingManagerServer(s, m)
}

// GetSamplingStrategy answers the strategy of the named service; an empty name gets the default
// strategy and a WarningHeader saying so.
func (m *SamplingManager) GetSamplingStrategy(ctx context.Context, p *api_v2.SamplingStrategyParameters) (*api_v2.SamplingStrategyResponse, error) {
	service := p.GetServiceName()
	if service == "" {
		// Best effort: a header that cannot be sent leaves the answer as it is.
		_ = grpc.SetHeader(ctx, metadata.Pairs(WarningHeader, "serviceName is empty: the default strategy is served; set the SDK's service name"))
	}
	return m.Lookup(ctx).For(service).Proto(), nil
}

// Proto is r as the api_v2 message, field for field with the JSON document.
func (r Response) Proto() *api_v2.SamplingStrategyResponse {
	out := &api_v2.SamplingStrategyResponse{StrategyType: api_v2.SamplingStrategyType_PROBABILISTIC}
	if r.StrategyType == "RATE_LIMITING" {
		out.StrategyType = api_v2.SamplingStrategyType_RATE_LIMITING
	}
	if r.ProbabilisticSampling != nil {
		out.ProbabilisticSampling = &api_v2.ProbabilisticSamplingStrategy{SamplingRate: r.ProbabilisticSampling.SamplingRate}
	}
	if os := r.OperationSampling; os != nil {
		po := &api_v2.PerOperationSamplingStrategies{DefaultSamplingProbability: os.DefaultSamplingProbability,
			DefaultLowerBoundTracesPerSecond: os.DefaultLowerBoundTracesPerSecond,
			PerOperationStrategies:           make([]*api_v2.OperationSamplingStrategy, 0, len(os.PerOperationStrategies))}
		for _, o := range os.PerOperationStrategies {
			po.PerOperationStrategies = append(po.PerOperationStrategies, &api_v2.OperationSamplingStrategy{Operation: o.Operation,
				ProbabilisticSampling: &api_v2.ProbabilisticSamplingStrategy{SamplingRate: o.ProbabilisticSampling.SamplingRate}})
		}
		out.OperationSampling = po
	}
	return out
}
