package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"remora.dev/remora/repo"
)

type keygenCommand struct {
	env *environment
	out string
}

func (k *keygenCommand) Run(ctx context.Context, args []string) error {
	fs := k.env.newFlagSet("keygen", "keygen --out FILE")
	choiceString(fs, &k.out, "out", "write the private key to FILE (mode 0600) and the public key to FILE.pub; neither may exist")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 || k.out == "" {
		return usagef("keygen takes --out FILE and no arguments")
	}
	private, public, id, err := repo.GenerateKey()
	if err != nil {
		return err
	}
	// The public key first: a failure then leaves no private key behind
	// that nobody knows about.
	if err := writeNew(k.out+".pub", public, 0o644); err != nil {
		return err
	}
	if err := writeNew(k.out, private, 0o600); err != nil {
		os.Remove(k.out + ".pub")
		return err
	}
	fmt.Fprintf(k.env.stdout, `key %s
  signing key (keep it out of the storage): %s
  verify key (give it to whoever checks backups): %s.pub
In Kubernetes, add it to the storage Secret:
  kubectl create secret generic remora-storage --from-file=%s=%s ...
`, id, k.out, k.out, envSigningKey, k.out)
	return nil
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return usagef("%s exists: keygen never overwrites a key", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
