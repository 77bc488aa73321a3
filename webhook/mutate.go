// Package webhook is the admission webhook that adds the remora sidecar to
// database pods. Mutate is pure logic (a pod in, a patch or a denial out);
// the HTTP server around it only decodes and encodes.
package webhook

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"remora.dev/remora/agent/config"
)

// Mounts and names the sidecar brings.
const (
	ContainerName   = "remora"
	PodinfoVolume   = "remora-podinfo"
	PodinfoPath     = "/etc/remora/podinfo"
	RunVolume       = "remora-run"
	RunPath         = "/run/remora"
	TmpVolume       = "remora-tmp"
	StatusInjected  = "injected"
	DefaultStorage  = "remora-storage"
	sidecarNative   = "native"
	sidecarClassic  = "classic"
	sidecarAuto     = "auto"
	defaultImage    = "remora:latest"
	defaultMetricsP = 9464
)

// Config is how the webhook injects, from the chart's values.
type Config struct {
	Image           string
	SidecarMode     string // auto, native or classic
	NativeSupported bool   // the API server knows native sidecars (1.29+)
	AutoDetect      bool   // inject recognised database images without annotations
	OwnNamespace    string
	Resources       corev1.ResourceRequirements
	// DefaultStorage is the storage URL sidecars use when their storage
	// Secret sets no REMORA_STORAGE (REMORA_DEFAULT_STORAGE).
	DefaultStorage string
}

// Skip reasons: why a pod is let through unchanged.
const (
	SkipSystemNamespace = "system namespace"
	SkipOptOut          = "remora.dev/inject is false"
	SkipInjected        = "already injected"
	SkipNotDatabase     = "no database container recognised and no remora.dev annotations"
)

// Result is what Mutate decided.
type Result struct {
	Patch  []PatchOp // nil: unchanged
	Denied string    // set: the pod is refused with this message
	Skip   string    // set: why the pod is unchanged
}

// PatchOp is one JSON patch operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Mutate decides what to do with a pod being created in namespace ns.
func Mutate(pod *corev1.Pod, ns string, cfg Config) Result {
	if ns == "kube-system" || ns == "kube-public" || ns == cfg.OwnNamespace {
		return Result{Skip: SkipSystemNamespace}
	}
	ann := pod.Annotations
	if ann[config.AnnotationInject] == "false" {
		return Result{Skip: SkipOptOut}
	}
	if ann[config.AnnotationStatus] == StatusInjected || hasContainer(pod, ContainerName) {
		return Result{Skip: SkipInjected}
	}
	asked := ann[config.AnnotationInject] == "true"
	for k := range ann {
		asked = asked || k == config.AnnotationSchedule
	}
	workload := workloadName(pod)
	spec, err := config.Parse(ann, ns+"/"+workload)
	if err != nil {
		return Result{Denied: "remora: " + strings.ReplaceAll(err.Error(), "\n", "; ")}
	}
	db, driver := findDatabase(pod, spec.Container, spec.Driver)
	if db == nil && spec.Driver == "files" {
		driver = "files"
	}
	switch {
	case driver == "" && !asked:
		return Result{Skip: SkipNotDatabase}
	case driver == "" && spec.Container != "" && db == nil:
		return Result{Denied: fmt.Sprintf("remora: annotation %s=%q names no container of this pod (example: %q)", config.AnnotationContainer, spec.Container, firstName(pod))}
	case driver == "":
		return Result{Denied: fmt.Sprintf("remora: no database container recognised: set %s (postgres, mysql, redis or files) and %s (example: %s: \"db\")", config.AnnotationDriver, config.AnnotationContainer, config.AnnotationContainer)}
	case !asked && !cfg.AutoDetect:
		return Result{Skip: SkipNotDatabase}
	}
	return Result{Patch: patch(pod, sidecar(pod, db, driver, workload, spec, cfg), cfg)}
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if c.Name == name {
			return true
		}
	}
	return false
}

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

// credentialEnv are the variables whose value (or Secret reference) the
// sidecar copies from the database container, by driver, in order of
// preference: the first one present is the password.
var credentialEnv = map[string][]string{
	"postgres": {"POSTGRESQL_POSTGRES_PASSWORD", "POSTGRES_PASSWORD", "POSTGRESQL_PASSWORD"},
	"mysql":    {"MARIADB_ROOT_PASSWORD", "MYSQL_ROOT_PASSWORD"},
	"redis":    {"REDIS_PASSWORD", "VALKEY_PASSWORD"},
}

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

// sidecar builds the remora container.
func sidecar(pod *corev1.Pod, db *corev1.Container, driver, workload string, spec config.Spec, cfg Config) corev1.Container {
	image := cfg.Image
	if image == "" {
		image = defaultImage
	}
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	env := []corev1.EnvVar{
		fieldEnv("REMORA_POD_NAME", "metadata.name"),
		fieldEnv("REMORA_NAMESPACE", "metadata.namespace"),
		{Name: "REMORA_WORKLOAD", Value: workload},
		{Name: "REMORA_DRIVER", Value: driver},
		{Name: "REMORA_ANNOTATIONS", Value: PodinfoPath + "/annotations"},
		{Name: "REMORA_SOCKET", Value: RunPath + "/agent.sock"},
		{Name: "TMPDIR", Value: "/tmp"},
	}
	if db != nil {
		env = append(env, corev1.EnvVar{Name: "REMORA_CONTAINER", Value: db.Name})
	}
	var password *corev1.EnvVar
	for _, n := range credentialEnv[driver] {
		if v := envVar(db, n); v != nil {
			password = v
			break
		}
	}
	if password != nil {
		env = append(env, copyEnv(password, "REMORA_DB_PASSWORD"))
	}
	// The password reaches the agent as REMORA_DB_PASSWORD (and the user as
	// REMORA_DB_USER), never inside the URL, so no character needs escaping.
	switch driver {
	case "postgres":
		user := "postgres@"
		if v := envVar(db, "POSTGRES_USER"); v != nil && password != nil && password.Name == "POSTGRES_PASSWORD" {
			env = append(env, copyEnv(v, "REMORA_DB_USER"))
			user = ""
		}
		env = append(env, corev1.EnvVar{Name: "REMORA_DSN", Value: fmt.Sprintf("postgres://%s127.0.0.1:%d/postgres", user, containerPort(db, 5432))})
	case "mysql":
		env = append(env, corev1.EnvVar{Name: "REMORA_DSN", Value: fmt.Sprintf("mysql://root@127.0.0.1:%d/", containerPort(db, 3306))})
	case "redis":
		env = append(env, corev1.EnvVar{Name: "REMORA_DSN", Value: fmt.Sprintf("redis://127.0.0.1:%d", containerPort(db, 6379))})
	}
	if len(spec.Paths) > 0 {
		env = append(env, corev1.EnvVar{Name: "REMORA_PATHS", Value: strings.Join(spec.Paths, ",")})
	}
	if cfg.DefaultStorage != "" {
		// Not REMORA_STORAGE: an env entry would override the Secret's.
		env = append(env, corev1.EnvVar{Name: "REMORA_DEFAULT_STORAGE", Value: cfg.DefaultStorage})
	}

	var envFrom []corev1.EnvFromSource
	optional := true
	for _, name := range spec.Storage {
		// Optional: a missing Secret must never stop the database pod;
		// the agent reports it instead.
		envFrom = append(envFrom, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Optional: &optional}})
	}
	if spec.Credentials != "" {
		envFrom = append(envFrom, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: spec.Credentials}, Optional: &optional}})
	}

	mounts := []corev1.VolumeMount{
		{Name: PodinfoVolume, MountPath: PodinfoPath, ReadOnly: true},
		{Name: RunVolume, MountPath: RunPath},
		{Name: TmpVolume, MountPath: "/tmp"},
	}
	if db != nil {
		for _, m := range db.VolumeMounts {
			// The sidecar's own /tmp, socket and podinfo win over a
			// database mount at the same path (bitnami mounts /tmp).
			if slices.ContainsFunc(mounts[:3], func(o corev1.VolumeMount) bool { return path.Clean(o.MountPath) == path.Clean(m.MountPath) }) {
				continue
			}
			m.ReadOnly = m.ReadOnly || driver != "files"
			mounts = append(mounts, m)
		}
	}

	no, yes := false, true
	c := corev1.Container{
		Name: ContainerName, Image: image, Command: []string{"remora", "agent"},
		Env: env, EnvFrom: envFrom, VolumeMounts: mounts, Resources: cfg.Resources,
		Ports: []corev1.ContainerPort{{Name: "remora-metrics", ContainerPort: defaultMetricsP, Protocol: corev1.ProtocolTCP}},
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot: &yes, ReadOnlyRootFilesystem: &yes, AllowPrivilegeEscalation: &no,
			Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	// Run as the database's user and group, so its files on the shared
	// volumes are readable.
	if db != nil && db.SecurityContext != nil {
		c.SecurityContext.RunAsUser = db.SecurityContext.RunAsUser
		c.SecurityContext.RunAsGroup = db.SecurityContext.RunAsGroup
	}
	if c.SecurityContext.RunAsUser == nil && pod.Spec.SecurityContext != nil && pod.Spec.SecurityContext.RunAsUser != nil {
		c.SecurityContext.RunAsUser = pod.Spec.SecurityContext.RunAsUser
	}
	if c.SecurityContext.RunAsUser == nil && db != nil {
		if uid, ok := imageUser(db.Image); ok {
			c.SecurityContext.RunAsUser, c.SecurityContext.RunAsGroup = &uid, &uid
		}
	}
	if c.SecurityContext.RunAsUser == nil {
		uid := int64(65532)
		c.SecurityContext.RunAsUser = &uid
	}
	if c.Resources.Requests == nil && c.Resources.Limits == nil {
		c.Resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		}
	}
	if native(cfg) {
		always := corev1.ContainerRestartPolicyAlways
		c.RestartPolicy = &always
	}
	return c
}

func native(cfg Config) bool {
	switch cfg.SidecarMode {
	case sidecarNative:
		return true
	case sidecarClassic:
		return false
	}
	return cfg.NativeSupported
}

// patch adds the sidecar, its volumes and the status annotation with add
// operations only: no field of the pod is changed or removed.
func patch(pod *corev1.Pod, c corev1.Container, cfg Config) []PatchOp {
	var ops []PatchOp
	add := func(path string, existing int, v any) {
		if existing == 0 {
			ops = append(ops, PatchOp{Op: "add", Path: path, Value: []any{v}})
		} else {
			ops = append(ops, PatchOp{Op: "add", Path: path + "/-", Value: v})
		}
	}
	if native(cfg) {
		add("/spec/initContainers", len(pod.Spec.InitContainers), c)
	} else {
		add("/spec/containers", len(pod.Spec.Containers), c)
	}
	vols := []corev1.Volume{
		{Name: PodinfoVolume, VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
		}}}},
		{Name: RunVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: resourcePtr("1Mi")}}},
		{Name: TmpVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	n := len(pod.Spec.Volumes)
	for _, v := range vols {
		add("/spec/volumes", n, v)
		n++
	}
	if pod.Annotations == nil {
		ops = append(ops, PatchOp{Op: "add", Path: "/metadata/annotations", Value: map[string]string{config.AnnotationStatus: StatusInjected}})
	} else {
		ops = append(ops, PatchOp{Op: "add", Path: "/metadata/annotations/" + escape(config.AnnotationStatus), Value: StatusInjected})
	}
	return ops
}

func resourcePtr(s string) *resource.Quantity {
	q := resource.MustParse(s)
	return &q
}

// escape makes a map key a JSON pointer element.
func escape(s string) string { return strings.NewReplacer("~", "~0", "/", "~1").Replace(s) }

// Review answers an AdmissionReview request.
func Review(req *admissionv1.AdmissionRequest, cfg Config) (*admissionv1.AdmissionResponse, Result) {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		resp.Allowed = false
		resp.Result = &metav1.Status{Code: 400, Message: "remora: the request holds no pod: " + err.Error()}
		return resp, Result{Denied: resp.Result.Message}
	}
	ns := req.Namespace
	if ns == "" {
		ns = pod.Namespace
	}
	res := Mutate(&pod, ns, cfg)
	switch {
	case res.Denied != "":
		resp.Allowed = false
		resp.Result = &metav1.Status{Code: 400, Reason: metav1.StatusReasonInvalid, Message: res.Denied}
	case res.Patch != nil:
		b, _ := json.Marshal(res.Patch)
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = b, &pt
	}
	return resp, res
}
