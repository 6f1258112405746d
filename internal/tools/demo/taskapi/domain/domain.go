// Package domain holds the task aggregate of the guide's task service, its domain events and the
// errors the application layer turns into span statuses and HTTP codes.
package domain

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Priority of a task.
type Priority string

// Priorities, lowest first.
const (
	PriorityLow      Priority = "low"
	PriorityMedium   Priority = "medium"
	PriorityHigh     Priority = "high"
	PriorityCritical Priority = "critical"
)

// ParsePriority accepts the lower-case names only, so a typo is a validation error rather than a
// silently defaulted field.
func ParsePriority(s string) (Priority, error) {
	switch p := Priority(s); p {
	case PriorityLow, PriorityMedium, PriorityHigh, PriorityCritical:
		return p, nil
	}
	return "", &ValidationError{Field: "priority", Reason: fmt.Sprintf("unknown priority %q", s)}
}

// Status of a task.
type Status string

// Statuses in their usual order.
const (
	StatusPending    Status = "pending"
	StatusInProgress Status = "in_progress"
	StatusCompleted  Status = "completed"
)

// ParseStatus accepts the lower-case names only.
func ParseStatus(s string) (Status, error) {
	switch st := Status(s); st {
	case StatusPending, StatusInProgress, StatusCompleted:
		return st, nil
	}
	return "", &ValidationError{Field: "status", Reason: fmt.Sprintf("unknown status %q", s)}
}

// Task is the aggregate root. Changes made through its methods queue domain events that the
// repository publishes once the change is stored.
type Task struct {
	ID          string    `json:"id"`
	Title       string    `json:"title"`
	Description string    `json:"description,omitempty"`
	Priority    Priority  `json:"priority"`
	Status      Status    `json:"status"`
	AssigneeID  string    `json:"assignee_id,omitempty"`
	Department  string    `json:"department,omitempty"`
	CreatedBy   string    `json:"created_by"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`

	events []Event
}

// NewTask builds a pending-or-given-status task and queues TaskCreated.
func NewTask(title, description string, priority Priority, status Status, assignee, department, createdBy string, now time.Time) (*Task, error) {
	if strings.TrimSpace(title) == "" {
		return nil, &ValidationError{Field: "title", Reason: "must not be empty"}
	}
	if status == "" {
		status = StatusPending
	}
	t := &Task{
		ID: NewID(), Title: title, Description: description, Priority: priority, Status: status,
		AssigneeID: assignee, Department: department, CreatedBy: createdBy,
		CreatedAt: now.UTC(), UpdatedAt: now.UTC(),
	}
	t.events = append(t.events, TaskCreated{TaskID: t.ID, Priority: priority, By: createdBy})
	return t, nil
}

// Set changes one field by name, as the guide's apply_updates loop does, and queues TaskUpdated.
func (t *Task) Set(field, value string, now time.Time) error {
	switch field {
	case "title":
		if strings.TrimSpace(value) == "" {
			return &ValidationError{Field: field, Reason: "must not be empty"}
		}
		t.Title = value
	case "description":
		t.Description = value
	case "priority":
		p, err := ParsePriority(value)
		if err != nil {
			return err
		}
		t.Priority = p
	case "status":
		s, err := ParseStatus(value)
		if err != nil {
			return err
		}
		t.Status = s
	case "assignee_id":
		t.AssigneeID = value
	case "department":
		t.Department = value
	default:
		return &ValidationError{Field: field, Reason: "not updatable"}
	}
	t.UpdatedAt = now.UTC()
	t.events = append(t.events, TaskUpdated{TaskID: t.ID, Field: field})
	return nil
}

// Clone returns a copy with no queued events, to try changes on without touching t.
func (t *Task) Clone() *Task {
	c := *t
	c.events = nil
	return &c
}

// MarkDeleted queues TaskDeleted; the repository removes the row.
func (t *Task) MarkDeleted(by string) {
	t.events = append(t.events, TaskDeleted{TaskID: t.ID, By: by})
}

// PullEvents returns the queued events and forgets them, so a retried save cannot publish twice.
func (t *Task) PullEvents() []Event {
	ev := t.events
	t.events = nil
	return ev
}

// Event is a domain event.
type Event interface {
	EventName() string
	AggregateID() string
}

// TaskCreated is queued by NewTask.
type TaskCreated struct {
	TaskID   string
	Priority Priority
	By       string
}

// TaskUpdated is queued per changed field.
type TaskUpdated struct {
	TaskID string
	Field  string
}

// TaskDeleted is queued by MarkDeleted.
type TaskDeleted struct {
	TaskID string
	By     string
}

func (e TaskCreated) EventName() string   { return "task.created" }
func (e TaskCreated) AggregateID() string { return e.TaskID }
func (e TaskUpdated) EventName() string   { return "task.updated" }
func (e TaskUpdated) AggregateID() string { return e.TaskID }
func (e TaskDeleted) EventName() string   { return "task.deleted" }
func (e TaskDeleted) AggregateID() string { return e.TaskID }

// User is the caller as the HTTP layer authenticated it.
type User struct {
	ID    string
	Roles []string
}

// HasRole reports whether the user holds role.
func (u User) HasRole(role string) bool {
	for _, r := range u.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// ValidationError is bad input.
type ValidationError struct {
	Field, Reason string
}

func (e *ValidationError) Error() string { return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason) }

// NotFoundError is a missing task.
type NotFoundError struct{ TaskID string }

func (e *NotFoundError) Error() string { return fmt.Sprintf("task %s not found", e.TaskID) }

// PermissionError is the guide's PermissionError: the caller may not do this.
type PermissionError struct {
	UserID, Action, TaskID, Reason string
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("user %s may not %s task %s: %s", e.UserID, e.Action, e.TaskID, e.Reason)
}

// IsValidation, IsNotFound and IsPermission classify an error chain.
func IsValidation(err error) bool { var e *ValidationError; return errors.As(err, &e) }
func IsNotFound(err error) bool   { var e *NotFoundError; return errors.As(err, &e) }
func IsPermission(err error) bool { var e *PermissionError; return errors.As(err, &e) }

// NewID returns a random UUIDv4 string; tasks are identified like the guide's aggregates.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
