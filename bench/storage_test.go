package bench

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"remora.dev/remora/internal/testenv"
)

// storageMiB is the size of the file the storage benchmark backs up; a
// quarter of it shows how memory grows with size.
func storageMiB() int { return envInt("REMORA_BENCH_STORAGE_MIB", 1024) }

// destination is one storage server made ready for a race: where Remora
// stores, with which credentials, and the standard client of the protocol
// uploading the same file.
type destination struct {
	url    func(dir string) string // Remora's storage URL of a directory the server has made ready
	mkdir  func(dir string)        // makes that directory on the server
	env    []string                // Remora's credentials
	client string                  // the row's name
	need   string                  // the client's program
	upload func(file string) func(round int) *exec.Cmd
	also   func(file string) []contender // more rows, between the client's and Remora's
}

// storageBackends are the storage servers, each started on a random loopback
// port by internal/testenv, in the order the table shows them.
var storageBackends = []struct {
	name  string
	start func(b *testing.B, tmp string) destination
}{
	{"file", startFileDest},
	{"s3", startS3Dest},
	{"sftp", startSFTPDest},
	{"webdav", startWebDAVDest},
	{"ftp", startFTPDest},
	{"smb", startSMBDest},
	{"azblob", startAzblobDest},
	{"gs", startGCSDest},
}

// storageRow is what the summary table shows for one backend.
type storageRow struct {
	backend, client           string
	clientWall, remoraWall    time.Duration
	clientKB, remoraKB, small int64
}

// BenchmarkStorage: for each storage backend, `remora backup` of a directory
// holding one file of random bytes (files driver, --compression none: what
// is measured is the storage path, with the SHA-256, the checksum and the
// manifest) beside the protocol's standard client uploading the same file,
// alternating run by run; then Remora alone on a file a quarter of the size,
// for its memory against size.
func BenchmarkStorage(b *testing.B) {
	mib, n := storageMiB(), rounds()
	load0 := loadavg()
	data := b.TempDir()
	big := writeRandomFile(b, filepath.Join(data, "big"), mib)
	small := writeRandomFile(b, filepath.Join(data, "small"), mib/4)
	remora := remoraBinary(b)
	var rows []storageRow
	for _, be := range storageBackends {
		b.Run(be.name, func(b *testing.B) {
			d := be.start(b, b.TempDir())
			rows = append(rows, raceStorage(b, be.name, d, remora, big, small, n))
		})
	}
	printStorageSummary(mib, n, rows, load0)
}

// raceStorage races the standard client against `remora backup` on one
// backend, then runs Remora once on the small file.
func raceStorage(b *testing.B, name string, d destination, remora, big, small string, n int) storageRow {
	for _, dir := range []string{"remora", "small", "client"} {
		d.mkdir(dir)
	}
	backup := func(file, dir string) func(int) *exec.Cmd {
		return func(int) *exec.Cmd {
			c := exec.Command(remora, "backup", "--storage", d.url(dir), "--compression", "none")
			c.Env = append(append(baseEnv(), d.env...), "REMORA_DRIVER=files", "REMORA_PATHS="+filepath.Dir(file),
				"REMORA_NAMESPACE=bench", "REMORA_WORKLOAD=files-0", "REMORA_LOG_LEVEL=warn")
			return c
		}
	}
	row := "`remora backup` (files, no compression) → " + name
	cs := []contender{{name: d.client + " (standard client)", need: d.need, cmd: d.upload(big), before: settle}}
	if d.also != nil {
		cs = append(cs, d.also(big)...)
	}
	rs := race(b, fmt.Sprintf("Storage %s, a file of %s", name, mibString(big)), n, nil, "",
		append(cs, contender{name: row, cmd: backup(big, "remora"), before: settle}))
	sm := race(b, fmt.Sprintf("Storage %s, a file of %s", name, mibString(small)), 1, nil, "", []contender{
		{name: row, cmd: backup(small, "small"), before: settle},
	})
	return storageRow{backend: name, client: d.client, clientWall: median(rs[0].walls), remoraWall: median(rs[len(rs)-1].walls),
		clientKB: rs[0].treeKB, remoraKB: rs[len(rs)-1].ownKB, small: sm[0].ownKB}
}

// settle writes the previous run's dirty pages out before the next run, so
// that no run pays for another's writeback.
func settle(int) { syscall.Sync() }

func printStorageSummary(mib, n int, rows []storageRow, load0 string) {
	fmt.Printf("\nStorage backends: a file of %d MiB of random bytes, %d rounds, medians; "+
		"Remora: `remora backup --driver files --compression none` (tar, SHA-256, checksum, manifest); "+
		"load average at the start %s, at the end %s\n", mib, n, load0, loadavg())
	fmt.Printf("| backend | standard client | client wall | remora wall | ratio | client peak RSS (with children) "+
		"| remora peak RSS, %d MiB | remora peak RSS, %d MiB |\n|---|---|---:|---:|---:|---:|---:|---:|\n", mib/4, mib)
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s | %s | %.2f× | %.1f MiB | %.1f MiB | %.1f MiB |\n", r.backend, r.client,
			r.clientWall.Round(10*time.Millisecond), r.remoraWall.Round(10*time.Millisecond),
			float64(r.remoraWall)/float64(r.clientWall), float64(r.clientKB)/1024, float64(r.small)/1024, float64(r.remoraKB)/1024)
	}
}

// writeRandomFile writes mib MiB of random (incompressible) bytes to
// dir/data.bin and returns the file's path. Deterministic.
func writeRandomFile(b *testing.B, dir string, mib int) string {
	b.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	p := filepath.Join(dir, "data.bin")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	r := newRand()
	var buf [8]byte
	for i := 0; i < mib<<17; i++ {
		binary.LittleEndian.PutUint64(buf[:], r.Uint64())
		w.Write(buf[:])
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return p
}

func mibString(file string) string {
	st, err := os.Stat(file)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%d MiB", st.Size()>>20)
}

// writeFile writes a file only we may read (a client's credentials).
func writeFile(b *testing.B, p, content string) string {
	b.Helper()
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		b.Fatal(err)
	}
	return p
}

func mkdirAll(b *testing.B, p string) {
	b.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		b.Fatal(err)
	}
}

// chownTo makes a directory on the server's disk, owned by the server's user.
func chownTo(b *testing.B, user, p string) {
	b.Helper()
	mkdirAll(b, p)
	if out, err := exec.Command("chown", user+":", p).CombinedOutput(); err != nil {
		b.Fatalf("chown: %v\n%s", err, out)
	}
}

func startFileDest(b *testing.B, tmp string) destination {
	return destination{
		url:    func(dir string) string { return "file://" + filepath.Join(tmp, dir) },
		mkdir:  func(dir string) { mkdirAll(b, filepath.Join(tmp, dir)) },
		client: "`cp` + `sync FILE`",
		upload: func(file string) func(int) *exec.Cmd {
			return shell(baseEnv(), "cp {file} {tmp}/client/{round} && sync {tmp}/client/{round}", map[string]string{"file": file, "tmp": tmp})
		},
		// Remora's fsync writes the object to the disk before it counts as
		// stored; cp alone leaves it in the page cache.
		also: func(file string) []contender {
			return []contender{{name: "`cp` (to the page cache, no fsync)",
				cmd: shell(baseEnv(), "cp {file} {tmp}/client/cp{round}", map[string]string{"file": file, "tmp": tmp}), before: settle}}
		},
	}
}

func startS3Dest(b *testing.B, _ string) destination {
	s3 := testenv.StartS3(b)
	s3.MakeBucket(b, "bench")
	return destination{
		url:    func(dir string) string { return s3.URL("bench", dir) },
		mkdir:  func(string) {},
		env:    s3.Env(),
		client: "`rclone copyto`",
		need:   "rclone",
		upload: func(file string) func(int) *exec.Cmd {
			return shell(append(baseEnv(), rcloneEnv(s3)...), "rclone copyto {file} s3:bench/client/{round}", map[string]string{"file": file})
		},
	}
}

func startSFTPDest(b *testing.B, _ string) destination {
	s := testenv.StartSFTP(b)
	_, port, _ := strings.Cut(s.Addr, ":")
	return destination{
		url:    func(dir string) string { return s.URL(s.Home + "/" + dir) },
		mkdir:  func(dir string) { chownTo(b, s.User, filepath.Join(s.Home, dir)) },
		env:    []string{"REMORA_SFTP_KEY_FILE=" + s.KeyFile, "REMORA_SFTP_KNOWN_HOSTS_FILE=" + s.KnownHosts},
		client: "`sftp -b` (put)",
		need:   "sftp",
		upload: func(file string) func(int) *exec.Cmd {
			vars := map[string]string{"file": file, "key": s.KeyFile, "known": s.KnownHosts, "port": port, "user": s.User, "home": s.Home}
			return shell(baseEnv(), "echo 'put {file} {home}/client/{round}' | sftp -q -b - -F /dev/null -i {key} -P {port} "+
				"-o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={known} {user}@127.0.0.1 >/dev/null", vars)
		},
	}
}

func startWebDAVDest(b *testing.B, tmp string) destination {
	w := testenv.StartWebDAVUnlimited(b) // Apache's default refuses a PUT over 1 GiB
	netrc := writeFile(b, filepath.Join(tmp, "netrc"), fmt.Sprintf("machine 127.0.0.1 login %s password %s\n", w.User, w.Password))
	return destination{
		url:    func(dir string) string { return w.URL("/" + dir) },
		mkdir:  func(dir string) { w.MakeCollection(b, dir) },
		env:    w.Env(),
		client: "`curl -T`",
		need:   "curl",
		upload: func(file string) func(int) *exec.Cmd {
			return shell(baseEnv(), "curl -sS -f --netrc-file {netrc} -T {file} http://{addr}/client/{round}",
				map[string]string{"file": file, "netrc": netrc, "addr": w.Addr})
		},
	}
}

func startFTPDest(b *testing.B, tmp string) destination {
	f := testenv.StartPlainFTP(b)
	netrc := writeFile(b, filepath.Join(tmp, "netrc"), fmt.Sprintf("machine 127.0.0.1 login %s password %s\n", f.User, f.Password))
	return destination{
		url:    func(dir string) string { return f.URL("/" + dir) },
		mkdir:  func(dir string) { f.MakeDir(b, dir) },
		env:    f.Env(),
		client: "`curl -T ftp://`",
		need:   "curl",
		upload: func(file string) func(int) *exec.Cmd {
			return shell(baseEnv(), "curl -sS -f --netrc-file {netrc} -T {file} ftp://{addr}/client/{round}",
				map[string]string{"file": file, "netrc": netrc, "addr": f.Addr})
		},
	}
}

func startSMBDest(b *testing.B, tmp string) destination {
	s := testenv.StartSMB(b)
	_, port, _ := strings.Cut(s.Addr, ":")
	auth := writeFile(b, filepath.Join(tmp, "smbauth"), fmt.Sprintf("username = %s\npassword = %s\n", s.User, s.Password))
	conf := writeFile(b, filepath.Join(tmp, "smb.conf"), "")
	return destination{
		url:    func(dir string) string { return s.URL(s.Share, dir) },
		mkdir:  func(dir string) { mkdirAll(b, filepath.Join(s.Dir, dir)) },
		env:    s.Env(),
		client: "`smbclient -c put`",
		need:   "smbclient",
		upload: func(file string) func(int) *exec.Cmd {
			return shell(baseEnv(), "smbclient -s {conf} //127.0.0.1/{share} -p {port} -A {auth} -c 'put {file} client/{round}' >/dev/null",
				map[string]string{"file": file, "conf": conf, "share": s.Share, "port": port, "auth": auth})
		},
	}
}

func startAzblobDest(b *testing.B, tmp string) destination {
	a := testenv.StartAzurite(b)
	a.CreateContainer(b, "bench")
	sas := a.SAS(b, "bench", "cw", testenv.AzuriteKey)
	return destination{
		also: func(file string) []contender {
			return []contender{{name: "`curl` staging 8 MiB blocks, 2 at once, then the block list, as Remora sends (emulator's cost)", need: "curl",
				cmd: shell(baseEnv(), azblobBlocks, map[string]string{"cfg": azblobBlockConfig(b, tmp, file, a.Endpoint, sas), "endpoint": a.Endpoint, "sas": sas})}}
		},
		url:    func(dir string) string { return a.URL("bench", dir) },
		mkdir:  func(string) {},
		env:    a.Env(),
		client: "`curl -T` (Put Blob, SAS)",
		need:   "curl",
		upload: func(file string) func(int) *exec.Cmd {
			return shell(baseEnv(), "curl -sS -f -H 'x-ms-blob-type: BlockBlob' -T {file} '{endpoint}/bench/client/{round}?{sas}'",
				map[string]string{"file": file, "endpoint": a.Endpoint, "sas": sas})
		},
	}
}

func startGCSDest(b *testing.B, _ string) destination {
	g := testenv.StartGCS(b)
	g.MakeBucket(b, "bench")
	return destination{
		url:    func(dir string) string { return g.URL("bench", dir) },
		mkdir:  func(string) {},
		client: "`curl -T` (media upload)",
		need:   "curl",
		also: func(file string) []contender {
			return []contender{{name: "`curl` resumable upload in 16 MiB chunks, as Remora sends (emulator's cost)", need: "curl",
				cmd: shell(baseEnv(), gcsResumable, map[string]string{"file": file, "addr": g.Addr})}}
		},
		upload: func(file string) func(int) *exec.Cmd {
			return shell(baseEnv(), "curl -sS -f -X POST -H 'Content-Type: application/octet-stream' -T {file} "+
				"'http://{addr}/upload/storage/v1/b/bench/o?uploadType=media&name="+url.QueryEscape("client/")+"{round}' >/dev/null",
				map[string]string{"file": file, "addr": g.Addr})
		},
	}
}

// gcsResumable uploads {file} with curl as a resumable upload in chunks of
// 16 MiB, Remora's default chunk-size: fake-gcs-server appends each chunk to
// the object in memory and hashes the whole object again, so what it costs
// grows with the square of the size.
const gcsResumable = `total=$(stat -c %s {file}); chunk=$((16<<20))
loc=$(curl -sS -f -D - -o /dev/null -X POST -H 'Content-Type: application/json' -d '{}' \
  'http://{addr}/upload/storage/v1/b/bench/o?uploadType=resumable&name=resumable%2F{round}' | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
for ((off = 0; off < total; off += chunk)); do
  end=$((off + chunk < total ? off + chunk : total))
  dd if={file} bs=$chunk skip=$((off / chunk)) count=1 status=none |
    curl -sS -f -X PUT -H "Content-Range: bytes $off-$((end - 1))/$total" --data-binary @- "$loc" >/dev/null
done`

// azblobBlocks stages the blocks azblobBlockConfig lists with one curl, two
// requests at once (Remora's default concurrency), then commits them.
const azblobBlocks = `sed 's/{ROUND}/{round}/g' {cfg}/upload | curl -sS -f --parallel --parallel-max 2 -K - >/dev/null &&
curl -sS -f -X PUT --data-binary @{cfg}/blocklist '{endpoint}/bench/blocks/{round}?comp=blocklist&{sas}' >/dev/null`

// azblobBlockConfig splits file into 8 MiB blocks (Remora's default
// block-size) below tmp, untimed, and writes curl's list of Put Block
// requests for them (its blob named {ROUND}) and the block list to commit.
// It returns the directory that holds both.
func azblobBlockConfig(b *testing.B, tmp, file, endpoint, sas string) string {
	dir := filepath.Join(tmp, "blocks")
	mkdirAll(b, dir)
	if out, err := exec.Command("split", "-a", "4", "-d", "-b", "8M", file, filepath.Join(dir, "b")).CombinedOutput(); err != nil {
		b.Fatalf("split: %v\n%s", err, out)
	}
	parts, err := filepath.Glob(filepath.Join(dir, "b*"))
	if err != nil {
		b.Fatal(err)
	}
	var cfg, list strings.Builder
	list.WriteString(`<?xml version="1.0" encoding="utf-8"?><BlockList>`)
	for i, p := range parts {
		id := base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "block-%06d", i))
		fmt.Fprintf(&cfg, "upload-file = \"%s\"\nurl = \"%s/bench/blocks/{ROUND}?comp=block&blockid=%s&%s\"\n", p, endpoint, url.QueryEscape(id), sas)
		fmt.Fprintf(&list, "<Latest>%s</Latest>", id)
	}
	list.WriteString("</BlockList>")
	writeFile(b, filepath.Join(dir, "upload"), cfg.String())
	writeFile(b, filepath.Join(dir, "blocklist"), list.String())
	return dir
}

// loadavg is the machine's load average over 1, 5 and 15 minutes: other
// work on the machine shows in every figure.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
