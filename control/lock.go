package control

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrBusy is returned by Lock while another process of the pod holds it.
var ErrBusy = errors.New("another backup or a restore is running")

// LockName is the lock file beside the control socket, shared through the
// pod's /run/remora emptyDir by the agent, `remora backup` and `remora restore`.
const LockName = "remora.lock"

// Lock takes the pod-wide lock that keeps a backup and a restore (or two
// backups) from running at once, without waiting. The lock lives beside the
// socket; where that directory does not exist (outside a pod) there is nothing
// to share and Lock succeeds. The kernel drops the lock when the process
// dies, so a killed run never leaves it held.
func Lock(socket string) (release func(), err error) {
	dir := filepath.Dir(socket)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return func() {}, nil
	}
	path := filepath.Join(dir, LockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrBusy
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
