package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// MariaDB is a running MariaDB server. It listens on 127.0.0.1:Port and on
// the unix socket Socket; root logs in without a password, and the user
// "remora" with the password Canary and all privileges.
type MariaDB struct {
	Port   int
	Socket string
	Dir    string
	p      *proc
	opts   MariaDBOptions
	starts int // how many times the server was launched, to name its logs
}

var mariadbFast = []string{"--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
	"--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", "--skip-log-bin"}

var (
	mariadbOnce sync.Once
	mariadbTmpl string
	mariadbErr  error
)

func mariadbTemplate() (string, error) {
	mariadbOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rmdbtmpl")
		if err != nil {
			mariadbErr = err
			return
		}
		args := append([]string{"--no-defaults", "--datadir=" + filepath.Join(dir, "data"), "--user=" + currentUser(),
			"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"}, mariadbFast...)
		if out, err := exec.Command("mariadb-install-db", args...).CombinedOutput(); err != nil {
			mariadbErr = fmt.Errorf("mariadb-install-db: %v\n%s", err, out)
			return
		}
		mariadbTmpl = filepath.Join(dir, "data")
		keepTemplate(dir)
	})
	return mariadbTmpl, mariadbErr
}

func currentUser() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "nobody"
}

// MariaDBOptions changes how StartMariaDBWith starts the server.
type MariaDBOptions struct {
	// LogBin turns the binary log on: files <Dir>/mysql-bin.NNNNNN, row
	// format, server id 1, CRC32 checksums (the server's default).
	LogBin bool
	// Args are extra mariadbd options, after the others.
	Args []string
}

// StartMariaDB starts a MariaDB server with a fresh data directory and no
// binary log.
func StartMariaDB(t testing.TB) *MariaDB {
	t.Helper()
	return StartMariaDBWith(t, MariaDBOptions{})
}

// StartMariaDBWith starts a MariaDB server with a fresh data directory.
func StartMariaDBWith(t testing.TB, opts MariaDBOptions) *MariaDB {
	t.Helper()
	if _, err := exec.LookPath("mariadb-install-db"); err != nil || !isExec("/usr/sbin/mariadbd") {
		Missing(t, "MariaDB server", "apt-get install mariadb-server mariadb-client")
	}
	tmpl, err := mariadbTemplate()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "rmdb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if out, err := exec.Command("cp", "-a", tmpl, filepath.Join(dir, "data")).CombinedOutput(); err != nil {
		t.Fatalf("copy data dir: %v\n%s", err, out)
	}
	var lastErr error
	for try := 0; try < 3; try++ {
		m := &MariaDB{Port: FreePort(t), Socket: filepath.Join(dir, "mysqld.sock"), Dir: dir, opts: opts}
		if lastErr = m.launch(t); lastErr == nil {
			t.Cleanup(func() { m.p.stop(syscall.SIGTERM) })
			m.SQL(t, "CREATE USER 'remora'@'%' IDENTIFIED BY '"+Canary+"'; GRANT ALL ON *.* TO 'remora'@'%' WITH GRANT OPTION")
			return m
		}
	}
	t.Fatalf("mariadb: %v", lastErr)
	return nil
}

// args are the server's options: the fast ones, the binary log's, then the
// caller's.
func (m *MariaDB) args(errLog string) []string {
	args := []string{"--no-defaults", "--user=" + currentUser(), "--datadir=" + filepath.Join(m.Dir, "data"),
		"--socket=" + m.Socket, "--port=" + itoa(m.Port), "--bind-address=127.0.0.1",
		"--pid-file=" + filepath.Join(m.Dir, "mysqld.pid"), "--log-error=" + errLog, "--tmpdir=" + m.Dir,
		"--skip-name-resolve", "--skip-performance-schema"}
	for _, a := range mariadbFast {
		if a != "--skip-log-bin" || !m.opts.LogBin {
			args = append(args, a)
		}
	}
	if m.opts.LogBin {
		args = append(args, "--log-bin="+filepath.Join(m.Dir, "mysql-bin"), "--binlog-format=ROW", "--server-id=1")
	}
	return append(args, m.opts.Args...)
}

// launch starts the server on m's data directory and ports and waits until
// it answers; on failure the process is gone.
func (m *MariaDB) launch(t testing.TB) error {
	t.Helper()
	m.starts++
	errLog := filepath.Join(m.Dir, fmt.Sprintf("error-%d.log", m.starts))
	m.p = start(t, exec.Command("/usr/sbin/mariadbd", m.args(errLog)...), filepath.Join(m.Dir, fmt.Sprintf("mariadbd-%d.log", m.starts)))
	m.p.log = errLog
	err := m.p.waitReady(func() error {
		return exec.Command("mariadb-admin", "--no-defaults", "--socket="+m.Socket, "-uroot", "ping").Run()
	})
	if err != nil {
		m.p.stop(syscall.SIGKILL)
	}
	return err
}

// Restart shuts the server down cleanly (unless Kill already stopped it) and
// starts it again on the same data directory, socket and port.
func (m *MariaDB) Restart(t testing.TB) {
	t.Helper()
	m.p.stop(syscall.SIGTERM)
	if err := m.launch(t); err != nil {
		t.Fatalf("mariadb restart: %v", err)
	}
}

// DSN is the URL Remora takes, over TCP as the remora user.
func (m *MariaDB) DSN() string {
	return fmt.Sprintf("mysql://remora:%s@127.0.0.1:%d/", Canary, m.Port)
}

// SQL runs statements as root over the socket and returns the tab-separated
// output without column names.
func (m *MariaDB) SQL(t testing.TB, sql string) string {
	t.Helper()
	out, err := m.SQLErr(sql)
	if err != nil {
		t.Fatalf("mariadb: %v", err)
	}
	return out
}

// SQLErr is SQL returning the error.
func (m *MariaDB) SQLErr(sql string) (string, error) {
	cmd := exec.Command("mariadb", "--no-defaults", "--socket="+m.Socket, "-uroot", "--default-character-set=utf8mb4", "--batch", "--skip-column-names")
	return runSQL(cmd, sql)
}

// Command prepares a client program (mariadb, mariadb-dump) connected as root
// over the socket.
func (m *MariaDB) Command(name string, args ...string) *exec.Cmd {
	return exec.Command(name, append([]string{"--no-defaults", "--socket=" + m.Socket, "-uroot"}, args...)...)
}

// Kill stops the server at once (SIGKILL), as a crash would; Restart starts
// it again.
func (m *MariaDB) Kill() { m.p.stop(syscall.SIGKILL) }
