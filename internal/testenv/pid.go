package testenv

// The servers' process ids, for benchmarks that account the CPU a server
// uses or place it in a cgroup. PostgreSQL's is the postmaster's: the
// backends it forks are its children.

// PID is the versitygw process's id.
func (s *S3) PID() int { return s.p.cmd.Process.Pid }

// PID is the postmaster's process id.
func (pg *Postgres) PID() int { return pg.p.cmd.Process.Pid }

// PID is the mariadbd process's id.
func (m *MariaDB) PID() int { return m.p.cmd.Process.Pid }
