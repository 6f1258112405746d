// Package notification is the guide's second service: task-api posts to it, otelhttp extracts the
// caller's traceparent, and its spans join the caller's trace.
package notification

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// ServiceName is the service's default service.name.
const ServiceName = "notification-service"

// TracerName identifies the service's own spans.
const TracerName = "ariadne/demo/notification"

// Request is the body of POST /api/notify.
type Request struct {
	TaskID   string `json:"task_id"`
	Priority string `json:"priority"`
	Title    string `json:"title"`
	Assignee string `json:"assignee_id,omitempty"`
}

type service struct{ tracer trace.Tracer }

// NewHandler returns the service's HTTP handler. A nil provider means the global one.
func NewHandler(tp trace.TracerProvider) http.Handler {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	s := &service{tracer: tp.Tracer(TracerName)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("POST /api/notify", s.notify)
	return otelhttp.NewHandler(mux, ServiceName,
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithFilter(func(r *http.Request) bool { return r.URL.Path != "/health" }))
}

func (s *service) notify(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req Request
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "bad body: "+err.Error(), http.StatusBadRequest)
		return
	}
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("task.id", req.TaskID), attribute.String("task.priority", req.Priority))
	channels, err := s.route(ctx, req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, ch := range channels {
		if err := s.deliver(ctx, req, ch); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	json.NewEncoder(w).Encode(map[string]any{"task_id": req.TaskID, "channels": channels})
}

// route picks the channels by priority: the more urgent, the more intrusive.
func (s *service) route(ctx context.Context, req Request) ([]string, error) {
	_, span := s.tracer.Start(ctx, "route_notification", trace.WithAttributes(attribute.String("task.priority", req.Priority)))
	defer span.End()
	var channels []string
	switch req.Priority {
	case "critical":
		channels = []string{"email", "chat", "pager"}
	case "high":
		channels = []string{"email", "chat"}
	case "medium", "low":
		channels = []string{"email"}
	default:
		err := fmt.Errorf("unknown priority %q", req.Priority)
		span.RecordError(err)
		span.SetStatus(codes.Error, "Invalid notification")
		span.SetAttributes(attribute.String("error.type", "validation"))
		return nil, err
	}
	if req.TaskID == "" {
		err := fmt.Errorf("task_id is required")
		span.RecordError(err)
		span.SetStatus(codes.Error, "Invalid notification")
		span.SetAttributes(attribute.String("error.type", "validation"))
		return nil, err
	}
	span.SetAttributes(attribute.StringSlice("notification.channels", channels))
	span.SetStatus(codes.Ok, "")
	return channels, nil
}

// deliver stands for talking to a mail server, chat or pager API; the sleep is its latency.
func (s *service) deliver(ctx context.Context, req Request, channel string) error {
	_, span := s.tracer.Start(ctx, "deliver_notification", trace.WithAttributes(
		attribute.String("notification.channel", channel), attribute.String("task.id", req.TaskID)))
	defer span.End()
	select {
	case <-time.After(time.Duration(5+rand.IntN(20)) * time.Millisecond):
	case <-ctx.Done():
		span.SetStatus(codes.Error, "cancelled")
		return fmt.Errorf("deliver over %s: %w", channel, ctx.Err())
	}
	span.AddEvent("notification_sent")
	span.SetStatus(codes.Ok, "")
	return nil
}
