package kube

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ObjectReference names the object an Event is about.
type ObjectReference struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	// UID: `kubectl describe` shows only the Events bearing the object's.
	UID       string `json:"uid,omitempty"`
	FieldPath string `json:"fieldPath,omitempty"` // e.g. spec.containers{remora}
}

// Event is a core/v1 Event, as `kubectl describe` and `kubectl get events`
// show it: the fields the legacy API needs, no more.
type Event struct {
	APIVersion     string          `json:"apiVersion"`
	Kind           string          `json:"kind"`
	Metadata       EventMeta       `json:"metadata"`
	InvolvedObject ObjectReference `json:"involvedObject"`
	Reason         string          `json:"reason"`
	Message        string          `json:"message"`
	Type           string          `json:"type"` // Normal or Warning
	Source         EventSource     `json:"source"`
	FirstTimestamp time.Time       `json:"firstTimestamp"`
	LastTimestamp  time.Time       `json:"lastTimestamp"`
	Count          int32           `json:"count"`
}

// EventMeta is an Event's metadata.
type EventMeta struct {
	Name         string `json:"name,omitempty"`
	GenerateName string `json:"generateName,omitempty"`
	Namespace    string `json:"namespace"`
}

// EventSource is the component that reports an Event.
type EventSource struct {
	Component string `json:"component"`
	Host      string `json:"host,omitempty"`
}

// MaxEventMessage is the longest message the API server accepts.
const MaxEventMessage = 1024

// CreateEvent creates e in its namespace (POST .../events).
func (c *Client) CreateEvent(ctx context.Context, e Event) error {
	e.APIVersion, e.Kind = "v1", "Event"
	if len(e.Message) > MaxEventMessage {
		e.Message = strings.ToValidUTF8(e.Message[:MaxEventMessage-3], "") + "..."
	}
	return c.Do(ctx, http.MethodPost, "/api/v1/namespaces/"+url.PathEscape(e.Metadata.Namespace)+"/events", e, nil)
}

// IsForbidden classifies an error from the client: RBAC said no.
func IsForbidden(err error) bool { return code(err) == http.StatusForbidden }
