// Package webhook is the admission webhook that adds the remora sidecar to
// database pods. Mutate is pure logic (a pod in, a patch or a denial out):
// detect.go decides which pods are injected, container.go builds the
// sidecar and patch.go the JSON patch that adds it. The HTTP handler around
// it (handler.go) only decodes and encodes. Its TLS certificate comes from
// certs.go (kept in a Secret) or reload.go (read from files), and recycle.go
// retires connections opened with an older one.
package webhook

import (
	corev1 "k8s.io/api/core/v1"
)

// Sidecar modes: how the sidecar is added to the pod.
const (
	SidecarAuto    = "auto"    // native when the API server supports it
	SidecarNative  = "native"  // an init container with restartPolicy Always
	SidecarClassic = "classic" // one more container
)

// DefaultImage is the sidecar's image when Config.Image is empty.
const DefaultImage = "remora:latest"

// Config is how the webhook injects, from the chart's values.
type Config struct {
	Image           string
	SidecarMode     string // SidecarAuto, SidecarNative or SidecarClassic
	NativeSupported bool   // the API server knows native sidecars (1.29+)
	AutoDetect      bool   // inject recognised database images without annotations
	OwnNamespace    string
	Resources       corev1.ResourceRequirements
	// DefaultStorage is the storage URL sidecars use when their storage
	// Secret sets no REMORA_STORAGE (REMORA_DEFAULT_STORAGE).
	DefaultStorage string
	// BackupVolume, if set, is added to every injected pod and mounted in
	// the sidecar at sidecar.BackupDir, for file:// backups on an NFS
	// export or a volume claim.
	BackupVolume *corev1.VolumeSource `json:",omitempty"`
	// RestoreAcrossNamespaces lets a pod's remora.dev/restore-from name
	// another namespace's backups (read with the pod's own storage keys).
	RestoreAcrossNamespaces bool
}

// native reports whether the sidecar is added as a native sidecar: as the
// mode says, or for SidecarAuto as the API server supports.
func (cfg Config) native() bool {
	switch cfg.SidecarMode {
	case SidecarNative:
		return true
	case SidecarClassic:
		return false
	}
	return cfg.NativeSupported
}

// Result is what Mutate decided.
type Result struct {
	Patch  []PatchOp // nil: unchanged
	Denied string    // set: the pod is refused with this message
	Skip   string    // set: why the pod is unchanged
	Warn   bool      // Skip is also an admission warning: the pod asked for a backup it does not get
	// Undecodable: the request's object could not be read as a pod; it is
	// admitted unchanged with Skip as a warning.
	Undecodable bool
}

// Mutate decides what to do with a pod being created in namespace ns: let it
// through unchanged, refuse it, or add the sidecar (and, for
// remora.dev/restore-from, the init container that restores its data).
func Mutate(pod *corev1.Pod, ns string, cfg Config) Result {
	t, res := detect(pod, ns, cfg)
	if t == nil {
		return res
	}
	restore, denied := restoreContainer(pod, ns, t, cfg)
	if denied != "" {
		return Result{Denied: denied}
	}
	return Result{Patch: patch(pod, container(pod, t, cfg), restore, cfg)}
}
