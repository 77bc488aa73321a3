package webhook

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"remora.dev/remora/sidecar"
	"remora.dev/remora/spec"
)

// Skip reasons: why a pod is let through unchanged.
const (
	SkipSystemNamespace = "system namespace"
	SkipOptOut          = "remora.dev/inject is false"
	SkipInjected        = "already injected"
	SkipNotDatabase     = "no database container recognised and no remora.dev annotations"
	// SkipRootFiles comes with an admission warning: the pod asked for a
	// backup it does not get.
	SkipRootFiles = "remora: not injected: the container runs as root and its files may be readable by root alone, " +
		"and the backup sidecar never runs as root; set runAsUser (and runAsGroup) to the user that owns the files, " +
		"or an fsGroup on the pod"
)

// systemNamespaces are never injected, nor is the webhook's own namespace.
var systemNamespaces = map[string]bool{"kube-system": true, "kube-public": true}

// target is a pod to inject: the container to back up (nil when the files
// driver backs up paths of the pod), its driver, the workload the backups
// are filed under and what the pod's annotations ask for.
type target struct {
	db       *corev1.Container
	driver   string
	workload string
	spec     spec.Spec
}

// detect decides whether pod, being created in namespace ns, is injected:
// it returns the target when it is, else the Result that lets the pod
// through (Skip) or refuses it (Denied).
func detect(pod *corev1.Pod, ns string, cfg Config) (*target, Result) {
	ann := pod.Annotations
	_, restore := ann[spec.AnnotationRestoreFrom]
	if reason := skipReason(pod, ns, cfg); reason != "" {
		if reason == SkipOptOut && restore {
			// Started without it, the database would come up empty.
			return nil, Result{Denied: restoreDenial(pod, spec.AnnotationInject+` is "false", and the restore is an init container Remora adds: drop one of the two annotations`, "shop/orders-db-0@latest")}
		}
		return nil, Result{Skip: reason}
	}
	_, scheduled := ann[spec.AnnotationSchedule]
	asked := ann[spec.AnnotationInject] == "true" || scheduled || restore
	workload := workloadName(pod)
	s, err := spec.Parse(ann, ns+"/"+workload)
	if err != nil {
		return nil, Result{Denied: "remora: " + strings.ReplaceAll(err.Error(), "\n", "; ")}
	}
	db, driver := findDatabase(pod, s.Container, s.Driver)
	if db == nil && s.Driver == "files" {
		driver = "files"
	}
	switch {
	case driver == "" && !asked:
		return nil, Result{Skip: SkipNotDatabase}
	case driver == "" && s.Container != "" && db == nil:
		return nil, Result{Denied: fmt.Sprintf("remora: annotation %s=%q names no container of this pod (example: %q)", spec.AnnotationContainer, s.Container, firstName(pod))}
	case driver == "":
		return nil, Result{Denied: fmt.Sprintf("remora: no database container recognised: set %s (postgres, mysql, redis or files) and %s (example: %s: \"db\")", spec.AnnotationDriver, spec.AnnotationContainer, spec.AnnotationContainer)}
	case !asked && !cfg.AutoDetect:
		return nil, Result{Skip: SkipNotDatabase}
	}
	if err := s.CheckMethod(driver); err != nil {
		return nil, Result{Denied: "remora: " + err.Error()}
	}
	if why := unreadableAsNonRoot(pod, db, driver); why != "" {
		return nil, Result{Skip: why, Warn: true}
	}
	return &target{db: db, driver: driver, workload: workload, spec: s}, Result{}
}

// skipReason is why pod is never injected, whatever its containers: it is
// in a system namespace, opts out, or already has the sidecar. "" when none
// applies.
func skipReason(pod *corev1.Pod, ns string, cfg Config) string {
	switch {
	case systemNamespaces[ns] || ns == cfg.OwnNamespace:
		return SkipSystemNamespace
	case pod.Annotations[spec.AnnotationInject] == "false":
		return SkipOptOut
	case pod.Annotations[spec.AnnotationStatus] == spec.StatusInjected || hasContainer(pod, sidecar.ContainerName):
		return SkipInjected
	}
	return ""
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if c.Name == name {
			return true
		}
	}
	return false
}

// firstName is a container name of pod for the example in a denial.
func firstName(pod *corev1.Pod) string {
	if len(pod.Spec.Containers) > 0 {
		return pod.Spec.Containers[0].Name
	}
	return "db"
}

// workloadName is the owning StatefulSet's pod name (db-0), or the
// Deployment's name from the ReplicaSet owner (web-5d9c8b7f4 -> web): a
// rescheduled pod keeps finding its backups.
func workloadName(pod *corev1.Pod) string {
	for _, o := range pod.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		switch o.Kind {
		case "StatefulSet":
			if pod.Name != "" {
				return pod.Name
			}
		case "ReplicaSet":
			if hash := pod.Labels["pod-template-hash"]; hash != "" {
				return strings.TrimSuffix(o.Name, "-"+hash)
			}
			if i := strings.LastIndexByte(o.Name, '-'); i > 0 {
				return o.Name[:i]
			}
			return o.Name
		default:
			return o.Name
		}
	}
	if pod.Name != "" {
		return pod.Name
	}
	return strings.TrimSuffix(pod.GenerateName, "-")
}

// imageDriver maps the last path element of an image's repository to the
// driver that backs it up.
var imageDriver = map[string]string{
	"postgres": "postgres", "postgresql": "postgres", "postgis": "postgres",
	"mysql": "mysql", "mariadb": "mysql", "percona-server": "mysql",
	"redis": "redis", "valkey": "redis", "redis-stack-server": "redis",
}

// driverForImage recognises a database image: postgres:16,
// docker.io/bitnami/postgresql:16@sha256:..., registry:5000/library/redis.
func driverForImage(image string) string {
	ref := stripDigest(image)
	last := ref[strings.LastIndexByte(ref, '/')+1:]
	if i := strings.IndexByte(last, ':'); i >= 0 {
		last = last[:i]
	}
	return imageDriver[last]
}

// stripDigest is image without its @sha256:... digest.
func stripDigest(image string) string {
	if i := strings.IndexByte(image, '@'); i >= 0 {
		return image[:i]
	}
	return image
}

// findDatabase returns the container to back up: the one named, else the
// first whose image is recognised; and its driver ("" if unknown).
func findDatabase(pod *corev1.Pod, name, driver string) (*corev1.Container, string) {
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		d := driverForImage(c.Image)
		if name != "" && c.Name != name {
			continue
		}
		if name == "" && d == "" {
			continue
		}
		if driver != "" {
			d = driver
		}
		return c, d
	}
	return nil, ""
}
