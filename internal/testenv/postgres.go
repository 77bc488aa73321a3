package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// Postgres is a running PostgreSQL server. It listens on 127.0.0.1:Port, where
// the superuser "postgres" logs in with the password Canary, and on a unix
// socket in SocketDir, where it is trusted.
type Postgres struct {
	Port      int
	SocketDir string
	User      string
	Password  string
	Bin       string // the server's bin directory (initdb, postgres, psql, pgbench, ...)
	Data      string // the data directory
	settings  []string
	p         *proc
}

// PostgresBin finds the newest PostgreSQL server's bin directory: REMORA_PG_BIN,
// else /usr/lib/postgresql/<major>/bin.
func PostgresBin() string {
	if d := os.Getenv("REMORA_PG_BIN"); d != "" {
		return d
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		a, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		b, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return a < b
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if isExec(filepath.Join(dirs[i], "postgres")) {
			return dirs[i]
		}
	}
	return ""
}

// pgCred is the postgres system user that initdb and postgres run as when
// the tests run as root (they refuse to run as root).
func pgCred(t testing.TB) (*syscall.SysProcAttr, int, int) {
	if os.Geteuid() != 0 {
		return &syscall.SysProcAttr{}, -1, -1
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("running as root needs the postgres system user (from the postgresql package): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}, uid, gid
}

// templates are the data directories made once per test binary, removed by Main.
var (
	templatesMu sync.Mutex
	templates   []string
)

func keepTemplate(dir string) {
	templatesMu.Lock()
	defer templatesMu.Unlock()
	templates = append(templates, dir)
}

var (
	templateOnce sync.Once
	templateDir  string
	templateErr  error
)

// template runs initdb once per test binary into a directory that every
// server of the run copies.
func template(t testing.TB, bin string) (string, error) {
	templateOnce.Do(func() {
		attr, uid, gid := pgCred(t)
		dir, err := os.MkdirTemp("", "rpgtmpl")
		if err != nil {
			templateErr = err
			return
		}
		if uid >= 0 {
			os.Chown(dir, uid, gid)
		}
		pw := filepath.Join(dir, "pw")
		os.WriteFile(pw, []byte(Canary+"\n"), 0o600)
		if uid >= 0 {
			os.Chown(pw, uid, gid)
		}
		cmd := exec.Command(filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", "postgres",
			"--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile="+pw,
			"--no-sync", "--encoding=UTF8", "--locale=C", "--no-instructions")
		cmd.SysProcAttr = attr
		if out, err := cmd.CombinedOutput(); err != nil {
			templateErr = fmt.Errorf("initdb: %v\n%s", err, out)
			return
		}
		os.Remove(pw)
		templateDir = filepath.Join(dir, "data")
		keepTemplate(dir)
	})
	return templateDir, templateErr
}

// StartPostgres starts a PostgreSQL server with a fresh data directory.
// It allows replication connections (initdb's pg_hba.conf has them, as the
// stock images do) with wal_level replica, PostgreSQL's default.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	return StartPostgresWith(t)
}

// StartPostgresWith starts a PostgreSQL server with a fresh data directory
// and extra settings ("wal_level=minimal", ...).
func StartPostgresWith(t testing.TB, settings ...string) *Postgres {
	t.Helper()
	bin := postgresBin(t)
	tmpl, err := template(t, bin)
	if err != nil {
		t.Fatal(err)
	}
	base := pgBase(t)
	data := filepath.Join(base, "data")
	if out, err := exec.Command("cp", "-a", tmpl, data).CombinedOutput(); err != nil {
		t.Fatalf("copy data dir: %v\n%s", err, out)
	}
	return startPostgres(t, bin, base, data, settings, 0)
}

// StartPostgresOn starts a PostgreSQL server on an existing data directory
// (one a restore filled), made the server user's when the tests run as
// root. The server recovers what the directory needs before it is ready.
func StartPostgresOn(t testing.TB, data string) *Postgres {
	t.Helper()
	bin := postgresBin(t)
	if _, uid, gid := pgCred(t); uid >= 0 {
		if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", uid, gid), data).CombinedOutput(); err != nil {
			t.Fatalf("chown %s: %v\n%s", data, err, out)
		}
	}
	return startPostgres(t, bin, pgBase(t), data, nil, 0)
}

func postgresBin(t testing.TB) string {
	t.Helper()
	bin := PostgresBin()
	if bin == "" {
		Missing(t, "PostgreSQL server", "apt-get install postgresql, or set REMORA_PG_BIN to its bin directory")
	}
	return bin
}

// pgBase makes the directory of a server's socket and log (short: the
// socket path is limited to 107 bytes), removed after the test.
func pgBase(t testing.TB) string {
	t.Helper()
	_, uid, gid := pgCred(t)
	base, err := os.MkdirTemp("", "rpg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if uid >= 0 {
		os.Chown(base, uid, gid)
	}
	return base
}

// startPostgres starts a server on data, its socket and log in base, on
// port (a free one when 0).
func startPostgres(t testing.TB, bin, base, data string, settings []string, port int) *Postgres {
	t.Helper()
	attr, _, _ := pgCred(t)
	var lastErr error
	for try := 0; try < 3; try++ {
		pg := &Postgres{Port: port, SocketDir: base, User: "postgres", Password: Canary, Bin: bin, Data: data, settings: settings}
		if port == 0 {
			pg.Port = FreePort(t)
		}
		args := []string{"-D", data, "-p", itoa(pg.Port), "-k", base,
			"-c", "listen_addresses=127.0.0.1", "-F", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
			"-c", "max_connections=50", "-c", "shared_buffers=32MB"}
		for _, s := range settings {
			args = append(args, "-c", s)
		}
		cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
		cmd.SysProcAttr = attr
		pg.p = start(t, cmd, filepath.Join(base, fmt.Sprintf("postgres-%d-%d.log", pg.Port, try)))
		lastErr = pg.p.waitReady(func() error {
			return exec.Command(filepath.Join(bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", itoa(pg.Port)).Run()
		})
		if lastErr == nil {
			t.Cleanup(func() { pg.p.stop(syscall.SIGINT) })
			return pg
		}
		pg.p.stop(syscall.SIGKILL)
	}
	t.Fatalf("postgres: %v", lastErr)
	return nil
}

// Restart stops the server (a fast shutdown, or a crash with SIGKILL when
// crash is true) and starts it again on the same data directory and port.
func (pg *Postgres) Restart(t testing.TB, crash bool) {
	t.Helper()
	sig := syscall.SIGINT
	if crash {
		sig = syscall.SIGKILL
	}
	pg.p.stop(sig)
	*pg = *startPostgres(t, pg.Bin, pg.SocketDir, pg.Data, pg.settings, pg.Port)
}

// DSN is the URL for database db over TCP, with the password.
func (pg *Postgres) DSN(db string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s", pg.User, pg.Password, pg.Port, db)
}

// DSNNoPassword is the URL for database db over TCP, without the password
// (give it through PGPASSWORD).
func (pg *Postgres) DSNNoPassword(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s", pg.User, pg.Port, db)
}

// Psql runs SQL in database db over the trusted unix socket and returns the
// unaligned, tuples-only output. It stops on the first error.
func (pg *Postgres) Psql(t testing.TB, db, sql string) string {
	t.Helper()
	out, err := pg.PsqlErr(db, sql)
	if err != nil {
		t.Fatalf("psql %s: %v", db, err)
	}
	return out
}

// PsqlErr is Psql returning the error.
func (pg *Postgres) PsqlErr(db, sql string) (string, error) {
	cmd := exec.Command(filepath.Join(pg.Bin, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
		"-h", pg.SocketDir, "-p", itoa(pg.Port), "-U", pg.User, "-d", db)
	return runSQL(cmd, sql)
}

// Command prepares one of the server's client programs (pgbench, pg_restore,
// ...) connected over the socket as the superuser.
func (pg *Postgres) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(pg.Bin, name), args...)
	cmd.Env = append(os.Environ(), "PGHOST="+pg.SocketDir, "PGPORT="+itoa(pg.Port), "PGUSER="+pg.User)
	return cmd
}

// Kill stops the server at once (SIGKILL), as a crash would.
func (pg *Postgres) Kill() { pg.p.stop(syscall.SIGKILL) }

// Main runs a package's tests and then removes what testenv kept for the
// whole run. Use it as TestMain: func TestMain(m *testing.M) { testenv.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	for _, dir := range templates {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// ServerDir makes an empty directory the server may write to (for a
// tablespace), removed after the test.
func (pg *Postgres) ServerDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if _, uid, gid := pgCred(t); uid >= 0 {
		// t.TempDir's parent is the test's own directory: let the server in.
		for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
			os.Chmod(d, 0o755)
			if d == dir {
				os.Chown(d, uid, gid)
			}
		}
	}
	os.Chmod(dir, 0o700)
	return dir
}
