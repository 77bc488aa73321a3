package webhook

import (
	"cmp"
	"fmt"
	"path"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"remora.dev/remora/sidecar"
	"remora.dev/remora/spec"
)

// defaultPGDATA is where an image keeps its data directory when the
// database container sets no PGDATA: the official image's, or bitnami's.
func defaultPGDATA(db *corev1.Container) (string, string) {
	if strings.Contains(stripDigest(db.Image), "bitnami/") {
		return "POSTGRESQL_DATA_DIR", "/bitnami/postgresql/data"
	}
	return "PGDATA", "/var/lib/postgresql/data"
}

// restoreContainer is the init container that recovers the pod's data
// directory from the backups remora.dev/restore-from names, before the
// database starts: `remora restore --if-empty`, so that a data directory
// already there (the pod's second start, or any existing one) is never
// touched. nil when the pod asks for no restore; denied says why a pod
// asking for one is refused.
func restoreContainer(pod *corev1.Pod, ns string, t *target, cfg Config) (c *corev1.Container, denied string) {
	rf := t.spec.RestoreFrom
	if rf == nil {
		return nil, ""
	}
	if err := t.spec.CheckRestoreFrom(t.driver); err != nil {
		return nil, "remora: " + err.Error()
	}
	if t.db == nil {
		return nil, restoreDenial(pod, "no database container to restore into", rf.String())
	}
	if rf.Namespace != ns && !cfg.RestoreAcrossNamespaces {
		own := spec.RestoreFrom{Namespace: ns, Workload: rf.Workload, Time: rf.Time, Latest: rf.Latest}
		return nil, restoreDenial(pod, fmt.Sprintf("a pod in namespace %s restores from its own namespace's backups (the webhook's --restore-across-namespaces is off)", ns), own.String())
	}
	dataDir, data, why := dataMount(t.db)
	if why != "" {
		return nil, restoreDenial(pod, why, rf.String())
	}
	mounts := []corev1.VolumeMount{data}
	for _, m := range storageMounts(cfg) {
		if path.Clean(m.MountPath) != path.Clean(data.MountPath) {
			mounts = append(mounts, m)
		}
	}
	s := t.spec
	s.Credentials = "" // the restore reaches the storage, never the server
	return &corev1.Container{
		Name:            sidecar.RestoreContainerName,
		Image:           cmp.Or(cfg.Image, DefaultImage),
		Command:         restoreCommand(rf, dataDir),
		Env:             withSecretEnv(restoreEnv(rf, cfg), s),
		VolumeMounts:    mounts,
		Resources:       resources(cfg),
		SecurityContext: securityContext(pod, t.db),
	}, ""
}

// restoreCommand recovers dataDir to rf's point, unless it holds a data
// directory already.
func restoreCommand(rf *spec.RestoreFrom, dataDir string) []string {
	cmd := []string{"remora", "restore", "--data-dir", dataDir, "--if-empty"}
	if rf.Latest {
		return append(cmd, "--to-latest")
	}
	return append(cmd, "--to-time", rf.Time.Format(time.RFC3339Nano))
}

// restoreEnv names the backups the restore reads: the source's namespace
// and workload, PostgreSQL's, and the storage default.
func restoreEnv(rf *spec.RestoreFrom, cfg Config) []corev1.EnvVar {
	env := []corev1.EnvVar{
		{Name: sidecar.EnvNamespace, Value: rf.Namespace},
		{Name: sidecar.EnvWorkload, Value: rf.Workload},
		{Name: sidecar.EnvDriver, Value: "postgres"},
		{Name: "TMPDIR", Value: sidecar.TmpDir},
	}
	return append(env, defaultStorageEnv(cfg)...)
}

// dataMount finds where the database container keeps its data directory
// (PGDATA, else the image's default) and the mount of db that holds it,
// writable, for the restore to fill; why says what is wrong when there is
// none.
func dataMount(db *corev1.Container) (dataDir string, m corev1.VolumeMount, why string) {
	name, dataDir := defaultPGDATA(db)
	if v := envVar(db, name); v != nil {
		if v.ValueFrom != nil {
			return "", m, fmt.Sprintf("container %s takes %s from a reference; the webhook needs its value to know where to restore: set it as a value", db.Name, name)
		}
		dataDir = v.Value
	}
	if !path.IsAbs(dataDir) {
		return "", m, fmt.Sprintf("container %s's %s %q is not an absolute path", db.Name, name, dataDir)
	}
	dataDir = path.Clean(dataDir)
	found := -1
	for i, vm := range db.VolumeMounts {
		mp := path.Clean(vm.MountPath)
		if (dataDir == mp || strings.HasPrefix(dataDir, strings.TrimSuffix(mp, "/")+"/")) &&
			(found < 0 || len(mp) > len(path.Clean(db.VolumeMounts[found].MountPath))) {
			found = i
		}
	}
	if found < 0 {
		return "", m, fmt.Sprintf("the data directory %s (%s of container %s) is on no volume of the container: mount the volume to restore into there (volumeMounts)", dataDir, name, db.Name)
	}
	m = db.VolumeMounts[found]
	if m.ReadOnly {
		return "", m, fmt.Sprintf("the data directory %s is on volume %q, which container %s mounts read-only", dataDir, m.Name, db.Name)
	}
	m.MountPropagation = nil
	return dataDir, m, ""
}

// restoreDenial refuses a pod whose remora.dev/restore-from cannot be
// carried out, naming the annotation, its value, why and an example.
func restoreDenial(pod *corev1.Pod, why, example string) string {
	v := strings.TrimSpace(pod.Annotations[spec.AnnotationRestoreFrom])
	return fmt.Sprintf("remora: annotation %s=%q: %s (example: %q)", spec.AnnotationRestoreFrom, v, why, example)
}
