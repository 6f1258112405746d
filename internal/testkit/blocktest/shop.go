package blocktest

import (
	"context"
	"math/rand/v2"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	"github.com/ariadne-tracing/ariadne/internal/storage/block"
	"github.com/ariadne-tracing/ariadne/internal/storage/head"
	"github.com/ariadne-tracing/ariadne/internal/storage/objstore"
	"github.com/ariadne-tracing/ariadne/internal/wire/otlpwire"
)

// The benchmarks of the read side (search, compare) store the same shape of data: an online
// shop's eight services, 10-span traces with random IDs, blocks of 200k spans as the flush loop
// leaves them. What each span holds is the benchmark's own.

// Services are the shop's services, the first one the root of every trace.
var Services = []string{"frontend", "cart", "checkout", "payment", "shipping", "email", "currency", "ad"}

// StrKV is a string attribute.
func StrKV(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// IntKV is an int attribute.
func IntKV(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

// ShopGroups returns one resource and scope group per service: service.name, host.name and
// whatever extra adds for service i.
func ShopGroups(extra func(i int) []*commonpb.KeyValue) []*otlpwire.Group {
	groups := make([]*otlpwire.Group, len(Services))
	for i, s := range Services {
		attrs := []*commonpb.KeyValue{StrKV("service.name", s), StrKV("host.name", s+"-7d9f8")}
		if extra != nil {
			attrs = append(attrs, extra(i)...)
		}
		res, _ := proto.Marshal(&resourcepb.Resource{Attributes: attrs})
		scope, _ := proto.Marshal(&commonpb.InstrumentationScope{Name: "otel-go", Version: "1.30.0"})
		groups[i] = &otlpwire.Group{Resource: res, Scope: scope, ServiceName: []byte(s)}
	}
	return groups
}

// Source is a search source over a head and blocks that the test holds.
type Source struct {
	H      *head.Head
	Blocks []*block.Reader
}

// Head returns the source's head.
func (s *Source) Head() *head.Head { return s.H }

// AcquireBlocks returns the source's blocks; they stay open until the test ends.
func (s *Source) AcquireBlocks() ([]*block.Reader, func()) { return s.Blocks, func() {} }

// PerBlock is how many spans each block of ShopBlocks holds.
const PerBlock = 200_000

// ShopBlocks writes spans (rounded up to whole blocks) through the real block writer, 10-span
// traces with IDs drawn from r, and returns them open behind an empty head. fill adds a trace's
// spans for block blk, drawing from r too, so a benchmark's data is the same from run to run.
func ShopBlocks(tb testing.TB, spans int, r *rand.Rand, fill func(blk int, t *block.Trace)) *Source {
	tb.Helper()
	ctx := context.Background()
	store, err := objstore.NewLocal(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	src := &Source{H: head.New()}
	for blk := 0; blk*PerBlock < spans; blk++ {
		var traces []block.Trace
		for range PerBlock / SpansPerTrace {
			var t block.Trace
			for i := range t.ID {
				t.ID[i] = byte(r.Uint32())
			}
			fill(blk, &t)
			traces = append(traces, t)
		}
		meta, err := block.Write(ctx, store, traces, block.WriteOptions{})
		if err != nil {
			tb.Fatal(err)
		}
		rd, err := block.Open(ctx, store, meta.ID)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { rd.Close() })
		src.Blocks = append(src.Blocks, rd)
	}
	return src
}
