// Package sidecar is the contract between the webhook that injects the
// remora container and the agent that runs in it: the container's name, the
// paths of its volumes, its port, its default resources and the environment
// variables the webhook sets and `remora agent` reads. Each is written here
// once; the webhook builds the container from it and the CLI takes its
// defaults from it.
package sidecar

// ContainerName is the injected container's name (`kubectl exec -c remora`).
const ContainerName = "remora"

// RestoreContainerName is the init container the webhook adds to a pod
// annotated remora.dev/restore-from: it recovers the empty data directory
// before the database starts (`kubectl logs -c remora-restore`).
const RestoreContainerName = "remora-restore"

// Volumes the sidecar brings, and where they are mounted in it.
const (
	PodinfoVolume = "remora-podinfo"
	PodinfoDir    = "/etc/remora/podinfo" // the downward API: the pod's annotations and labels
	RunVolume     = "remora-run"
	RunDir        = "/run/remora" // the control socket and the pod lock
	TmpVolume     = "remora-tmp"
	TmpDir        = "/tmp"
	// BackupVolume is the volume the chart may give every sidecar for
	// file:// backups (an NFS export, a PVC), mounted at BackupDir.
	BackupVolume = "remora-backups"
	BackupDir    = "/var/lib/remora/backups"
)

// Files in those volumes: the downward API's, by their names in the volume,
// and the control socket.
const (
	AnnotationsName = "annotations"
	LabelsName      = "labels"
	AnnotationsFile = PodinfoDir + "/" + AnnotationsName
	SocketPath      = RunDir + "/agent.sock"
)

// MetricsPort serves /metrics, /healthz and /readyz.
const MetricsPort = 9464

// MetricsPortName names it in the container spec.
const MetricsPortName = "remora-metrics"

// DefaultUser runs the sidecar when neither the pod nor a well-known image
// says which user the database runs as (the image's own non-root user).
const DefaultUser = 65532

// Default resources of the sidecar, when the webhook is given none.
const (
	CPURequest    = "10m"
	MemoryRequest = "32Mi"
	MemoryLimit   = "256Mi"
)

// Environment the webhook sets and the agent reads. Every flag of remora has
// such a twin: --name is REMORA_NAME with dashes as underscores.
const (
	EnvPodName     = "REMORA_POD_NAME"
	EnvPodUID      = "REMORA_POD_UID" // names the pod in the Events the agent reports
	EnvNamespace   = "REMORA_NAMESPACE"
	EnvWorkload    = "REMORA_WORKLOAD"
	EnvDriver      = "REMORA_DRIVER"
	EnvContainer   = "REMORA_CONTAINER"
	EnvDSN         = "REMORA_DSN"
	EnvPaths       = "REMORA_PATHS"
	EnvAnnotations = "REMORA_ANNOTATIONS"
	EnvSocket      = "REMORA_SOCKET"
	EnvStorage     = "REMORA_STORAGE"
	// EnvDefaultStorage is the chart's storage URL, used when the storage
	// Secret sets no REMORA_STORAGE (an env entry would override the
	// Secret's, so the default has a name of its own).
	EnvDefaultStorage = "REMORA_DEFAULT_STORAGE"
	// EnvDBUser and EnvDBPassword carry the database container's
	// credentials (the same value or Secret reference), never spliced into
	// the DSN, so any character is safe in them.
	EnvDBUser     = "REMORA_DB_USER"
	EnvDBPassword = "REMORA_DB_PASSWORD"
)

// StorageSecretKeys are the keys of a storage Secret (remora.dev/storage)
// that become the sidecar's environment; the Secret's other keys are
// ignored, so that no Secret can set LD_PRELOAD, PATH or REMORA_PG_BIN in
// the agent. Where the storage is, its keys, encryption, signing, the
// retention floor, and notifications.
func StorageSecretKeys() []string {
	return []string{
		EnvStorage,
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
		"REMORA_WEBDAV_USER", "REMORA_WEBDAV_PASSWORD",
		"REMORA_SMB_PASSWORD",
		"REMORA_FTP_PASSWORD",
		"REMORA_SFTP_PASSWORD", "REMORA_SFTP_KEY", "REMORA_SFTP_KEY_FILE", "REMORA_SFTP_KNOWN_HOSTS", "REMORA_SFTP_KNOWN_HOSTS_FILE",
		"AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN",
		"REMORA_GCS_CREDENTIALS", // a GCS service account key (JSON), for gs:// URLs
		"AGE_RECIPIENTS", "REMORA_ENCRYPT_TO",
		"REMORA_SIGNING_KEY", "REMORA_VERIFY_KEY", "REMORA_RETENTION_MIN",
		"REMORA_SMTP_HOST", "REMORA_SMTP_PORT", "REMORA_SMTP_USERNAME", "REMORA_SMTP_PASSWORD",
		"REMORA_SMTP_FROM", "REMORA_SMTP_TO", "REMORA_SMTP_CA_FILE",
		"REMORA_NOTIFY_WEBHOOK_URL", "REMORA_NOTIFY_ON_SUCCESS",
	}
}

// CredentialsSecretKeys are the keys of the credentials Secret
// (remora.dev/credentials) that become the sidecar's environment; the
// Secret's other keys are ignored.
func CredentialsSecretKeys() []string {
	return []string{EnvDSN, EnvDBUser, EnvDBPassword}
}
