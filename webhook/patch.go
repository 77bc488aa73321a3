package webhook

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"remora.dev/remora/sidecar"
	"remora.dev/remora/spec"
)

// PatchOp is one JSON patch operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// patch adds the restore's init container if any (after the pod's own, so
// that they prepare the volume first, and before a native sidecar), the
// sidecar c (as an init container when native), its volumes and the status
// annotation with add operations only: no field of the pod is changed or
// removed.
func patch(pod *corev1.Pod, c corev1.Container, restore *corev1.Container, cfg Config) []PatchOp {
	var ops []PatchOp
	// add appends v to the list at path, which holds existing items: an
	// empty list is added whole, else v is added at its end.
	add := func(path string, existing int, v any) {
		if existing == 0 {
			ops = append(ops, PatchOp{Op: "add", Path: path, Value: []any{v}})
		} else {
			ops = append(ops, PatchOp{Op: "add", Path: path + "/-", Value: v})
		}
	}
	inits := len(pod.Spec.InitContainers)
	if restore != nil {
		add("/spec/initContainers", inits, *restore)
		inits++
	}
	if cfg.native() {
		add("/spec/initContainers", inits, c)
	} else {
		add("/spec/containers", len(pod.Spec.Containers), c)
	}
	n := len(pod.Spec.Volumes)
	for _, v := range volumes(cfg) {
		add("/spec/volumes", n, v)
		n++
	}
	if pod.Annotations == nil {
		ops = append(ops, PatchOp{Op: "add", Path: "/metadata/annotations", Value: map[string]string{spec.AnnotationStatus: spec.StatusInjected}})
	} else {
		ops = append(ops, PatchOp{Op: "add", Path: "/metadata/annotations/" + escape(spec.AnnotationStatus), Value: spec.StatusInjected})
	}
	return ops
}

// volumes are the ones the sidecar mounts: the pod's annotations and labels
// (downward API), a small memory-backed directory for the control socket and
// the lock, a scratch /tmp, and the chart's backup volume if it gives one.
func volumes(cfg Config) []corev1.Volume {
	vs := []corev1.Volume{
		{Name: sidecar.PodinfoVolume, VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			// The file name of sidecar.AnnotationsFile in sidecar.PodinfoDir.
			{Path: sidecar.AnnotationsName, FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
			{Path: sidecar.LabelsName, FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
		}}}},
		{Name: sidecar.RunVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: resourcePtr("1Mi")}}},
		{Name: sidecar.TmpVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	if cfg.BackupVolume != nil {
		vs = append(vs, corev1.Volume{Name: sidecar.BackupVolume, VolumeSource: *cfg.BackupVolume})
	}
	return vs
}

func resourcePtr(s string) *resource.Quantity {
	q := resource.MustParse(s)
	return &q
}

// escape makes a map key a JSON pointer element.
func escape(s string) string { return strings.NewReplacer("~", "~0", "/", "~1").Replace(s) }
