package webhook

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
)

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
	ref := image
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	last := ref[strings.LastIndexByte(ref, '/')+1:]
	if i := strings.IndexByte(last, ':'); i >= 0 {
		last = last[:i]
	}
	return imageDriver[last]
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

// imageUser is the user a well-known database image runs its server as when
// the pod does not say: the sidecar runs as the same user, so it can read
// what the database writes on the shared volumes.
func imageUser(image string) (int64, bool) {
	ref := image
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if strings.Contains(ref, "bitnami/") {
		return 1001, true
	}
	switch d := driverForImage(image); {
	case d == "":
		return 0, false
	case strings.Contains(ref, "percona"):
		return 1001, true
	default: // the official postgres, postgis, mysql, mariadb, redis and valkey images
		return 999, true
	}
}
