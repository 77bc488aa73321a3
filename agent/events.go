package agent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"remora.dev/remora/internal/kube"
	"remora.dev/remora/internal/redact"
	"remora.dev/remora/sidecar"
)

// Reasons of the Kubernetes Events the agent reports on its pod.
const (
	ReasonBackupFailed       = "BackupFailed"
	ReasonDrillFailed        = "DrillFailed"
	ReasonInvalidAnnotations = "InvalidAnnotations"
)

// eventTimeout bounds one Event's creation.
const eventTimeout = 10 * time.Second

// Events reports Warning Events on the agent's pod, where `kubectl describe
// pod` and event exporters see them. Each is sent in the background: a slow
// or refusing API server never delays a backup. When the API server refuses
// (the service account may not create events: 403) or cannot be reached,
// that is logged once, and again only after an Event got through.
type Events struct {
	client         *kube.Client
	namespace, pod string
	uid            string
	log            *slog.Logger
	wg             sync.WaitGroup
	mu             sync.Mutex
	failing        bool // the last Event was not created; already logged
}

// NewEvents reports Events on pod (whose UID is uid: without it, `kubectl
// describe pod` does not show them) in namespace through client.
func NewEvents(client *kube.Client, namespace, pod, uid string, log *slog.Logger) *Events {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Events{client: client, namespace: namespace, pod: pod, uid: uid, log: log}
}

// Warning reports reason and message on the pod, in the background. A nil
// Events reports nothing.
func (e *Events) Warning(reason, message string) {
	if e == nil {
		return
	}
	now := time.Now().UTC().Truncate(time.Second)
	ev := kube.Event{
		Metadata: kube.EventMeta{GenerateName: e.pod + ".", Namespace: e.namespace},
		InvolvedObject: kube.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: e.namespace, Name: e.pod, UID: e.uid,
			FieldPath: "spec.containers{" + sidecar.ContainerName + "}"},
		Reason: reason, Message: redact.String(message), Type: "Warning",
		Source:         kube.EventSource{Component: "remora"},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
	e.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), eventTimeout)
		defer cancel()
		err := e.client.CreateEvent(ctx, ev)
		e.mu.Lock()
		defer e.mu.Unlock()
		switch {
		case err == nil:
			e.failing = false
		case e.failing:
		case kube.IsForbidden(err):
			e.failing = true
			e.log.Warn("Kubernetes Events cannot be created on this pod: its service account may not create events in its namespace (see README: Kubernetes Events); the agent carries on without them",
				"reason", reason, "error", err)
		default:
			e.failing = true
			e.log.Warn("a Kubernetes Event could not be created; the agent carries on without it", "reason", reason, "error", err)
		}
	})
}

// Wait waits for the Events being sent.
func (e *Events) Wait() {
	if e != nil {
		e.wg.Wait()
	}
}
