package webhook

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"remora.dev/remora/sidecar"
	"remora.dev/remora/spec"
)

// container builds the remora sidecar for target t of pod.
func container(pod *corev1.Pod, t *target, cfg Config) corev1.Container {
	c := corev1.Container{
		Name:            sidecar.ContainerName,
		Image:           cmp.Or(cfg.Image, DefaultImage),
		Command:         []string{"remora", "agent"},
		Env:             withSecretEnv(sidecarEnv(t, cfg), t.spec),
		VolumeMounts:    mounts(t, cfg),
		Resources:       resources(cfg),
		Ports:           []corev1.ContainerPort{{Name: sidecar.MetricsPortName, ContainerPort: sidecar.MetricsPort, Protocol: corev1.ProtocolTCP}},
		SecurityContext: securityContext(pod, t.db),
	}
	if cfg.native() {
		always := corev1.ContainerRestartPolicyAlways
		c.RestartPolicy = &always
	}
	return c
}

// sidecarEnv is the sidecar's environment: who and what it backs up, where its
// files are, how to reach the database, and the storage default.
func sidecarEnv(t *target, cfg Config) []corev1.EnvVar {
	env := []corev1.EnvVar{
		fieldEnv(sidecar.EnvPodName, "metadata.name"),
		fieldEnv(sidecar.EnvNamespace, "metadata.namespace"),
		fieldEnv(sidecar.EnvPodUID, "metadata.uid"),
		{Name: sidecar.EnvWorkload, Value: t.workload},
		{Name: sidecar.EnvDriver, Value: t.driver},
		{Name: sidecar.EnvAnnotations, Value: sidecar.AnnotationsFile},
		{Name: sidecar.EnvSocket, Value: sidecar.SocketPath},
		{Name: "TMPDIR", Value: sidecar.TmpDir},
	}
	if t.db != nil {
		env = append(env, corev1.EnvVar{Name: sidecar.EnvContainer, Value: t.db.Name})
	}
	env = append(env, databaseEnv(t.db, t.driver)...)
	if len(t.spec.Paths) > 0 {
		env = append(env, corev1.EnvVar{Name: sidecar.EnvPaths, Value: strings.Join(t.spec.Paths, ",")})
	}
	return append(env, defaultStorageEnv(cfg)...)
}

// defaultStorageEnv is the chart's storage URL, for a container whose
// storage Secret sets no REMORA_STORAGE.
func defaultStorageEnv(cfg Config) []corev1.EnvVar {
	if cfg.DefaultStorage == "" {
		return nil
	}
	// Not REMORA_STORAGE: an env entry would override the Secret's.
	return []corev1.EnvVar{{Name: sidecar.EnvDefaultStorage, Value: cfg.DefaultStorage}}
}

// fieldEnv is a variable set from a field of the pod (downward API).
func fieldEnv(name, fieldPath string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: fieldPath}}}
}

// credentialEnv are the variables whose value (or Secret reference) the
// sidecar copies from the database container, by driver, in order of
// preference: the first one present is the password.
var credentialEnv = map[string][]string{
	"postgres": {"POSTGRESQL_POSTGRES_PASSWORD", "POSTGRES_PASSWORD", "POSTGRESQL_PASSWORD"},
	"mysql":    {"MARIADB_ROOT_PASSWORD", "MYSQL_ROOT_PASSWORD"},
	"redis":    {"REDIS_PASSWORD", "VALKEY_PASSWORD"},
}

// databaseEnv is how the sidecar reaches the database in container db: the
// password (and, for postgres, the user) copied from db, and the DSN on
// loopback at db's port. The password reaches the agent as
// REMORA_DB_PASSWORD (and the user as REMORA_DB_USER), never inside the
// URL, so no character needs escaping.
func databaseEnv(db *corev1.Container, driver string) []corev1.EnvVar {
	var env []corev1.EnvVar
	var password *corev1.EnvVar
	for _, n := range credentialEnv[driver] {
		if password = envVar(db, n); password != nil {
			env = append(env, copyEnv(password, sidecar.EnvDBPassword))
			break
		}
	}
	dsn := func(format string, args ...any) corev1.EnvVar {
		return corev1.EnvVar{Name: sidecar.EnvDSN, Value: fmt.Sprintf(format, args...)}
	}
	switch driver {
	case "postgres":
		user := "postgres@"
		if v := envVar(db, "POSTGRES_USER"); v != nil && password != nil && password.Name == "POSTGRES_PASSWORD" {
			env = append(env, copyEnv(v, sidecar.EnvDBUser))
			user = ""
		}
		env = append(env, dsn("postgres://%s127.0.0.1:%d/postgres", user, containerPort(db, 5432)))
	case "mysql":
		env = append(env, dsn("mysql://root@127.0.0.1:%d/", containerPort(db, 3306)))
	case "redis":
		env = append(env, dsn("redis://127.0.0.1:%d", containerPort(db, 6379)))
	}
	return env
}

// envVar is container c's variable name, nil when c or the variable is
// missing.
func envVar(c *corev1.Container, name string) *corev1.EnvVar {
	if c == nil {
		return nil
	}
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// copyEnv gives the sidecar the database container's variable as name: the
// same value or the same Secret/ConfigMap reference, never the secret itself.
func copyEnv(from *corev1.EnvVar, name string) corev1.EnvVar {
	e := corev1.EnvVar{Name: name, Value: from.Value}
	if from.ValueFrom != nil {
		e.ValueFrom = from.ValueFrom.DeepCopy()
		e.Value = ""
	}
	return e
}

// containerPort is c's first TCP port, def when it declares none.
func containerPort(c *corev1.Container, def int32) int32 {
	if c != nil {
		for _, p := range c.Ports {
			if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
				return p.ContainerPort
			}
		}
	}
	return def
}

// withSecretEnv appends to env the allowlisted keys of the storage Secrets
// the annotations name, then of the credentials Secret: one optional
// secretKeyRef per key, never a whole Secret (envFrom), so no Secret can set
// LD_PRELOAD or REMORA_PG_BIN in the agent. A missing Secret or key sets
// nothing: it never stops the database pod (the agent reports what is
// missing), and without REMORA_STORAGE the agent falls back to
// REMORA_DEFAULT_STORAGE. As with envFrom before, a later Secret holding a
// key wins over an earlier one (the kubelet lets a later env entry win and
// skips an optional one that is missing), and what the webhook sets itself
// wins over every Secret: such names are not taken from them.
func withSecretEnv(env []corev1.EnvVar, s spec.Spec) []corev1.EnvVar {
	own := map[string]bool{}
	for _, e := range env {
		own[e.Name] = true
	}
	add := func(secret string, keys []string) {
		optional := true
		for _, k := range keys {
			if !own[k] {
				env = append(env, corev1.EnvVar{Name: k, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: k, Optional: &optional}}})
			}
		}
	}
	for _, name := range s.Storage {
		add(name, sidecar.StorageSecretKeys())
	}
	if s.Credentials != "" {
		add(s.Credentials, sidecar.CredentialsSecretKeys())
	}
	return env
}

// mounts are the sidecar's own volumes, then the database container's
// mounts: read-only, except for the files driver, which can restore files
// into them.
func mounts(t *target, cfg Config) []corev1.VolumeMount {
	own := append([]corev1.VolumeMount{
		{Name: sidecar.PodinfoVolume, MountPath: sidecar.PodinfoDir, ReadOnly: true},
		{Name: sidecar.RunVolume, MountPath: sidecar.RunDir},
	}, storageMounts(cfg)...)
	out := slices.Clone(own)
	if t.db == nil {
		return out
	}
	for _, m := range t.db.VolumeMounts {
		// The sidecar's own /tmp, socket and podinfo win over a database
		// mount at the same path (bitnami mounts /tmp).
		if slices.ContainsFunc(own, func(o corev1.VolumeMount) bool { return path.Clean(o.MountPath) == path.Clean(m.MountPath) }) {
			continue
		}
		m.ReadOnly = m.ReadOnly || t.driver != "files"
		out = append(out, m)
	}
	return out
}

// storageMounts are what a container that reads or writes backups needs
// besides the storage Secret's environment: a scratch /tmp, and the chart's
// backup volume if it gives one (file:// backups).
func storageMounts(cfg Config) []corev1.VolumeMount {
	out := []corev1.VolumeMount{{Name: sidecar.TmpVolume, MountPath: sidecar.TmpDir}}
	if cfg.BackupVolume != nil {
		out = append(out, corev1.VolumeMount{Name: sidecar.BackupVolume, MountPath: sidecar.BackupDir})
	}
	return out
}

// resources are the sidecar's (and the restore's) requests and limits:
// the webhook's, else the defaults.
func resources(cfg Config) corev1.ResourceRequirements {
	if cfg.Resources.Requests == nil && cfg.Resources.Limits == nil {
		return defaultResources()
	}
	return cfg.Resources
}

// securityContext locks the sidecar down (non-root, read-only root file
// system, no privilege escalation, no capabilities, the runtime's seccomp
// profile) and runs it as runAs says.
func securityContext(pod *corev1.Pod, db *corev1.Container) *corev1.SecurityContext {
	no, yes := false, true
	sc := &corev1.SecurityContext{
		RunAsNonRoot: &yes, ReadOnlyRootFilesystem: &yes, AllowPrivilegeEscalation: &no,
		Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	sc.RunAsUser, sc.RunAsGroup = runAs(pod, db)
	return sc
}

// runAs is the user and group the sidecar runs as, so that the database's
// files on the shared volumes are readable: the database container's user
// and group; else the pod's user; else the user a well-known database image
// runs as (the official images start as root and step down to it); else
// sidecar.DefaultUser. Root (0) is never taken: the sidecar runs with
// runAsNonRoot. A nil group leaves the image's own.
func runAs(pod *corev1.Pod, db *corev1.Container) (user, group *int64) {
	if db != nil && db.SecurityContext != nil {
		user, group = nonRoot(db.SecurityContext.RunAsUser), nonRoot(db.SecurityContext.RunAsGroup)
	}
	if user == nil && pod.Spec.SecurityContext != nil {
		user = nonRoot(pod.Spec.SecurityContext.RunAsUser)
	}
	if user == nil && db != nil {
		if uid, ok := imageUser(db.Image); ok {
			user, group = &uid, &uid
		}
	}
	if user == nil {
		uid := int64(sidecar.DefaultUser)
		user = &uid
	}
	return user, group
}

func nonRoot(id *int64) *int64 {
	if id == nil || *id == 0 {
		return nil
	}
	return id
}

// unreadableAsNonRoot is why a files backup of pod could not read what it
// must: the database container runs as root, its image is not one whose
// user is known, and no fsGroup gives the sidecar the volumes' group. ""
// when the sidecar can run.
func unreadableAsNonRoot(pod *corev1.Pod, db *corev1.Container, driver string) string {
	if driver != "files" {
		return "" // database drivers reach their server over the network or its socket
	}
	psc := pod.Spec.SecurityContext
	var user *int64
	if psc != nil {
		user = psc.RunAsUser
	}
	if db != nil && db.SecurityContext != nil && db.SecurityContext.RunAsUser != nil {
		user = db.SecurityContext.RunAsUser
	}
	if user == nil || *user != 0 || psc != nil && psc.FSGroup != nil {
		return ""
	}
	if db != nil {
		if _, ok := imageUser(db.Image); ok {
			return ""
		}
	}
	return SkipRootFiles
}

// imageUser is the user a well-known database image runs its server as when
// the pod does not say: the sidecar runs as the same user, so it can read
// what the database writes on the shared volumes.
func imageUser(image string) (int64, bool) {
	ref := stripDigest(image)
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

// defaultResources are the sidecar's resources when the webhook is given
// none.
func defaultResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(sidecar.CPURequest), corev1.ResourceMemory: resource.MustParse(sidecar.MemoryRequest)},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(sidecar.MemoryLimit)},
	}
}
