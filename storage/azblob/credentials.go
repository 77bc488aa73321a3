package azblob

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	sdk "github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"remora.dev/remora/internal/redact"
)

// The variables credentials come from by default.
const (
	envKey = "AZURE_STORAGE_KEY"       // the storage account's shared key
	envSAS = "AZURE_STORAGE_SAS_TOKEN" // a SAS token, with or without its leading "?"
	// envTokenFile is set in a pod by AKS workload identity's webhook, with
	// AZURE_CLIENT_ID and AZURE_TENANT_ID: the pod's own identity.
	envTokenFile = "AZURE_FEDERATED_TOKEN_FILE"
)

// Where a storage's credentials come from.
const (
	fromKey      = "key"
	fromSAS      = "sas"
	fromIdentity = "workload-identity"
)

// creds are the credentials a storage uses: exactly one of its fields.
type creds struct {
	from  string
	envs  string // the variable(s) they come from, for errors
	key   *sdk.SharedKeyCredential
	sas   string // the token's query, without "?"
	token azcore.TokenCredential
}

// credentials picks the credentials: the account key from key_env= (default
// AZURE_STORAGE_KEY), else a SAS token from sas_env= (default
// AZURE_STORAGE_SAS_TOKEN); with neither set, the pod's AKS workload identity
// if it has one. A variable that is set but empty, both defaults set at once,
// or nothing at all fail with an error naming the variables, never their
// values. The node's managed identity is never used: it may reach every
// tenant's backups. Every secret read is registered with redact, so it is
// masked wherever Remora prints.
func (c *config) credentials() (*creds, error) {
	switch {
	case c.keyEnv != "":
		return keyFrom(c.s.account, c.keyEnv)
	case c.sasEnv != "":
		return sasFrom(c.sasEnv)
	}
	_, keySet := os.LookupEnv(envKey)
	_, sasSet := os.LookupEnv(envSAS)
	switch {
	case keySet && sasSet:
		return nil, fmt.Errorf("both %s and %s are set: keep one (in a pod, in the storage Secret)", envKey, envSAS)
	case keySet:
		return keyFrom(c.s.account, envKey)
	case sasSet:
		return sasFrom(envSAS)
	}
	return workloadIdentity()
}

func keyFrom(account, env string) (*creds, error) {
	v, err := secretEnv(env)
	if err != nil {
		return nil, err
	}
	key, err := sdk.NewSharedKeyCredential(account, v)
	if err != nil {
		return nil, fmt.Errorf("%s does not hold a storage account key (base64, as the portal shows it)", env)
	}
	return &creds{from: fromKey, envs: env, key: key}, nil
}

func sasFrom(env string) (*creds, error) {
	v, err := secretEnv(env)
	if err != nil {
		return nil, err
	}
	v = strings.TrimPrefix(strings.TrimSpace(v), "?")
	if !strings.Contains(v, "sig=") {
		return nil, fmt.Errorf("%s does not hold a SAS token (a query string with sv=, sig=, ...)", env)
	}
	return &creds{from: fromSAS, envs: env, sas: v}, nil
}

// secretEnv reads a variable holding a secret, which must be set and not
// empty, and masks its value in everything Remora prints.
func secretEnv(env string) (string, error) {
	v, ok := os.LookupEnv(env)
	switch {
	case !ok:
		return "", fmt.Errorf("%s is not set: the storage URL names it for the storage credentials", env)
	case strings.TrimSpace(v) == "":
		return "", fmt.Errorf("%s is empty: set it to the storage credentials (in a pod, in the storage Secret)", env)
	}
	redact.Add(v)
	return v, nil
}

// errNoCredentials is the error when no credentials are set anywhere.
var errNoCredentials = errors.New("no storage credentials: set " + envKey + " (the account key) or " + envSAS +
	" (in a pod, in the storage Secret named by remora.dev/storage, default remora-storage), or give the pod an AKS workload identity")

// workloadIdentity is the pod's AKS workload identity, from the variables
// its webhook sets.
func workloadIdentity() (*creds, error) {
	if os.Getenv(envTokenFile) == "" {
		return nil, errNoCredentials
	}
	cred, err := azidentity.NewWorkloadIdentityCredential(nil)
	if err != nil {
		return nil, fmt.Errorf("neither %s nor %s is set, and the pod's workload identity is unusable: %v", envKey, envSAS, err)
	}
	return &creds{from: fromIdentity, envs: "the pod's workload identity (" + envTokenFile + ", AZURE_CLIENT_ID, AZURE_TENANT_ID)", token: cred}, nil
}
