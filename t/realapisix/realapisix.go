// Package realapisix starts a stock APISIX install the way users start it:
// a private etcd, `apisix start` in a private home with a config.yaml built
// by merging the project's conf/config.yaml, APISIX spawning the runner from
// ext-plugin.cmd, and the relay upstream and routes created through the real
// Admin API. The end-to-end lane and `make run` use it.
//
// Any APISIX 3.x install works (APISIX_HOME, default /usr/local/apisix, the
// official packages' location) with `openresty` and `etcd` on PATH.
package realapisix

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultHome is where the official APISIX packages install.
const DefaultHome = "/usr/local/apisix"

// Home is the APISIX install to use: $APISIX_HOME, else DefaultHome.
func Home() string {
	if h := os.Getenv("APISIX_HOME"); h != "" {
		return h
	}
	return DefaultHome
}

// Available says why APISIX at home cannot be started here, or nil.
func Available(home string) error {
	if _, err := os.Stat(filepath.Join(home, "apisix", "core", "version.lua")); err != nil {
		return fmt.Errorf("no APISIX at %s (set APISIX_HOME, or install one: sudo bash ../shared/apisix/install.sh --with-old)", home)
	}
	for _, bin := range []string{"etcd", "openresty"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s is not on PATH", bin)
		}
	}
	return nil
}

// Version reads the version of the APISIX at home.
func Version(home string) (string, error) {
	b, err := os.ReadFile(filepath.Join(home, "apisix", "core", "version.lua"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`VERSION\s*=\s*"([^"]+)"`).FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("no VERSION in %s/apisix/core/version.lua", home)
	}
	return string(m[1]), nil
}

// AtLeast compares dotted versions: AtLeast("3.14.0", 3, 14) is true.
func AtLeast(version string, major, minor int) bool {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, _ := strconv.Atoi(parts[0])
	mi, _ := strconv.Atoi(parts[1])
	return ma > major || ma == major && mi >= minor
}

// Options say what to start.
type Options struct {
	Home       string   // APISIX install; default Home()
	ConfigFile string   // the project's conf/config.yaml, merged into the generated one
	RunnerBin  string   // replaces ext-plugin.cmd[0] of ConfigFile
	Env        []string // "K=V" for `apisix start`; APISIX passes those named in nginx_config.envs on to the runner
	Workers    int      // nginx worker_processes, default 2
	// Ports: zero picks free ones.
	DataPort, AdminPort int
	AdminKey            string // default: a random one
	// User runs APISIX (and so the runner) as this uid and its group, as a
	// deployment that does not start APISIX as root; 0 = this process's user.
	User uint32
	Logf func(format string, args ...any)
}

// Instance is one running etcd + APISIX.
type Instance struct {
	Version  string
	Install  string // the APISIX install
	Home     string // the private home APISIX runs in
	DataURL  string // http://127.0.0.1:<node_listen>
	AdminURL string
	AdminKey string
	Config   []byte // the generated config.yaml

	opts    Options
	env     []string
	etcd    *exec.Cmd
	etcdDir string
	etcdLog *os.File
	stopped bool
}

// Start brings up etcd and APISIX. On error nothing is left running.
func Start(o Options) (inst *Instance, err error) {
	if o.Home == "" {
		o.Home = Home()
	}
	if o.Workers == 0 {
		o.Workers = 2
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if err := Available(o.Home); err != nil {
		return nil, err
	}
	version, err := Version(o.Home)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	i := &Instance{Version: version, Install: o.Home, AdminKey: hex.EncodeToString(key), opts: o}
	if o.AdminKey != "" {
		i.AdminKey = o.AdminKey
	}
	defer func() {
		if err != nil {
			i.Stop()
		}
	}()
	ports, err := freePorts(7)
	if err != nil {
		return nil, err
	}
	if o.DataPort != 0 {
		ports[0] = o.DataPort
	}
	if o.AdminPort != 0 {
		ports[1] = o.AdminPort
	}
	if err := i.startEtcd(ports[4], ports[5]); err != nil {
		return nil, err
	}
	// APISIX refuses to run under /root and its workers (nobody when
	// started as root) must read the home: a world-readable dir in /tmp.
	i.Home, err = os.MkdirTemp("", "ai-proxy-apisix-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(i.Home, 0o755); err != nil {
		return nil, err
	}
	if err := i.makeHome(); err != nil {
		return nil, err
	}
	cfg, err := i.buildConfig(ports)
	if err != nil {
		return nil, err
	}
	i.Config = cfg
	if err := os.WriteFile(filepath.Join(i.Home, "conf", "config.yaml"), cfg, 0o644); err != nil {
		return nil, err
	}
	if o.User != 0 {
		if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", o.User, o.User), i.Home).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("chown %s: %v %s", i.Home, err, out)
		}
	}
	i.DataURL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	i.AdminURL = fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	i.env = append(os.Environ(), o.Env...)
	if out, err := i.cli("start"); err != nil {
		return nil, fmt.Errorf("apisix start: %v\n%s%s", err, out, i.tailErrorLog())
	}
	// `apisix start` exits 0 even when nginx then refuses the config: wait
	// for the Admin API to answer.
	if err := i.waitAdmin(15 * time.Second); err != nil {
		return nil, fmt.Errorf("APISIX %s did not come up: %v\n%s", version, err, i.tailErrorLog())
	}
	o.Logf("APISIX %s (%s) up: data %s, admin %s, home %s", version, o.Home, i.DataURL, i.AdminURL, i.Home)
	return i, nil
}

func (i *Instance) startEtcd(client, peer int) error {
	dir, err := os.MkdirTemp("", "ai-proxy-etcd-")
	if err != nil {
		return err
	}
	i.etcdDir = dir
	log, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		return err
	}
	i.etcdLog = log
	cu := fmt.Sprintf("http://127.0.0.1:%d", client)
	pu := fmt.Sprintf("http://127.0.0.1:%d", peer)
	cmd := exec.Command("etcd", "--name", "lane", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", cu, "--advertise-client-urls", cu,
		"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
		"--initial-cluster", "lane="+pu)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	i.etcd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(cu + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(log.Name())
			return fmt.Errorf("etcd did not become healthy: %v\n%s", err, tail(b, 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// makeHome lays out a private APISIX home: the install's code linked,
// conf/ and logs/ its own, so several instances can run side by side.
func (i *Instance) makeHome() error {
	for _, d := range []string{"apisix", "bin", "deps"} {
		if err := os.Symlink(filepath.Join(i.Install, d), filepath.Join(i.Home, d)); err != nil {
			return err
		}
	}
	for _, d := range []string{"conf", "logs"} {
		if err := os.Mkdir(filepath.Join(i.Home, d), 0o755); err != nil {
			return err
		}
	}
	// config-default.yaml holds the defaults before 3.3 (later: in Lua).
	for _, f := range []string{"mime.types", "config-default.yaml", "debug.yaml"} {
		b, err := os.ReadFile(filepath.Join(i.Install, "conf", f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(i.Home, "conf", f), b, 0o644); err != nil {
			return err
		}
	}
	return exec.Command("cp", "-r", filepath.Join(i.Install, "conf", "cert"), filepath.Join(i.Home, "conf")).Run()
}

// buildConfig merges the project's config.yaml over what a test instance
// needs (listeners, etcd, admin key), as a user merges it into theirs.
func (i *Instance) buildConfig(ports []int) ([]byte, error) {
	base := map[string]any{
		"apisix": map[string]any{
			"node_listen": []any{map[string]any{"ip": "127.0.0.1", "port": ports[0]}},
			"enable_ipv6": false,
			"ssl":         map[string]any{"enable": false},
			"control":     map[string]any{"ip": "127.0.0.1", "port": ports[2]},
		},
		"deployment": map[string]any{
			"role":             "traditional",
			"role_traditional": map[string]any{"config_provider": "etcd"},
			"admin": map[string]any{
				"admin_key":    []any{map[string]any{"name": "admin", "key": i.AdminKey, "role": "admin"}},
				"allow_admin":  []any{"127.0.0.0/24"},
				"admin_listen": map[string]any{"ip": "127.0.0.1", "port": ports[1]},
			},
			"etcd": map[string]any{
				"host":   []any{fmt.Sprintf("http://127.0.0.1:%d", ports[4])},
				"prefix": "/apisix",
			},
		},
		"nginx_config": map[string]any{
			"worker_processes":     i.opts.Workers,
			"worker_rlimit_nofile": 20000,
			"error_log_level":      envOr("REALAPISIX_ERROR_LOG_LEVEL", "warn"),
		},
		"plugin_attr": map[string]any{
			"prometheus": map[string]any{"export_addr": map[string]any{"ip": "127.0.0.1", "port": ports[3]}},
		},
	}
	// The package's own conf sets this; with a config of our own, APISIX
	// 3.18's Lua ai-proxy (the benchmark's reference) needs it too.
	if AtLeast(i.Version, 3, 17) {
		base["plugin_attr"].(map[string]any)["ai-proxy"] = map[string]any{"http_client": "lua-resty-http"}
	}
	if i.opts.ConfigFile != "" {
		b, err := os.ReadFile(i.opts.ConfigFile)
		if err != nil {
			return nil, err
		}
		var project map[string]any
		if err := yaml.Unmarshal(b, &project); err != nil {
			return nil, fmt.Errorf("%s: %w", i.opts.ConfigFile, err)
		}
		if i.opts.RunnerBin != "" {
			ep, _ := project["ext-plugin"].(map[string]any)
			cmd, _ := ep["cmd"].([]any)
			if len(cmd) == 0 {
				return nil, fmt.Errorf("%s has no ext-plugin.cmd", i.opts.ConfigFile)
			}
			cmd[0] = i.opts.RunnerBin
		}
		merge(base, project)
	}
	return yaml.Marshal(base)
}

// merge copies src into dst: maps merge key by key, lists of strings
// (nginx_config.envs) are joined, anything else from src wins.
func merge(dst, src map[string]any) {
	for k, v := range src {
		switch sv := v.(type) {
		case map[string]any:
			if dv, ok := dst[k].(map[string]any); ok {
				merge(dv, sv)
				continue
			}
		case []any:
			if dv, ok := dst[k].([]any); ok && allStrings(dv) && allStrings(sv) {
				dst[k] = append(dv, sv...)
				continue
			}
		}
		dst[k] = v
	}
}

func allStrings(l []any) bool {
	for _, v := range l {
		if _, ok := v.(string); !ok {
			return false
		}
	}
	return true
}

// cli runs `bin/apisix <args>` in the private home, as the official
// service unit runs it in /usr/local/apisix.
func (i *Instance) cli(args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(i.Home, "bin", "apisix"), args...)
	cmd.Dir = i.Home
	cmd.Env = i.env
	if i.opts.User != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: i.opts.User, Gid: i.opts.User}}
	}
	return cmd.CombinedOutput()
}

func (i *Instance) waitAdmin(wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		code, _, err := i.Admin("GET", "/apisix/admin/routes", nil)
		if err == nil && code == 200 {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("admin API answered %d", code)
			}
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Admin calls the Admin API.
func (i *Instance) Admin(method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, i.AdminURL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("X-API-KEY", i.AdminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// Put creates or replaces an object (routes/<id>, upstreams/<id>) and
// returns the id APISIX stored it under.
func (i *Instance) Put(kind, id string, body []byte) error {
	code, b, err := i.Admin("PUT", "/apisix/admin/"+kind+"/"+id, body)
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return fmt.Errorf("PUT %s/%s: %d %s", kind, id, code, b)
	}
	return nil
}

// Delete removes an object.
func (i *Instance) Delete(kind, id string) error {
	code, b, err := i.Admin("DELETE", "/apisix/admin/"+kind+"/"+id, nil)
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return fmt.Errorf("DELETE %s/%s: %d %s", kind, id, code, b)
	}
	return nil
}

// Synced waits until probe answers true several times in a row: each
// nginx worker syncs from etcd on its own, and requests land on any.
func (i *Instance) Synced(wait time.Duration, probe func() bool) error {
	deadline := time.Now().Add(wait)
	streak := 0
	for streak < 2*i.opts.Workers+2 {
		if probe() {
			streak++
			continue
		}
		streak = 0
		if time.Now().After(deadline) {
			return errors.New("APISIX did not sync the change in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Reload runs `apisix reload` (nginx HUP: new workers and a new
// privileged agent, which starts a new runner; the old one gets SIGTERM).
func (i *Instance) Reload() error {
	out, err := i.cli("reload")
	if err != nil {
		return fmt.Errorf("apisix reload: %v\n%s", err, out)
	}
	return nil
}

// MasterPID is nginx's master process.
func (i *Instance) MasterPID() int {
	b, err := os.ReadFile(filepath.Join(i.Home, "logs", "nginx.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// SocketPath is where APISIX tells the runner to listen.
func (i *Instance) SocketPath() string {
	return filepath.Join(i.Home, "conf", fmt.Sprintf("apisix-%d.sock", i.MasterPID()))
}

// RunnerPIDs lists the live runner processes APISIX started (children of
// its privileged agents running RunnerBin).
func (i *Instance) RunnerPIDs() []int {
	master := i.MasterPID()
	if master == 0 {
		return nil
	}
	nginx := map[int]bool{master: true}
	for _, p := range procs() {
		if p.ppid == master {
			nginx[p.pid] = true
		}
	}
	var out []int
	for _, p := range procs() {
		if nginx[p.ppid] && p.exe == i.opts.RunnerBin && p.state != "Z" {
			out = append(out, p.pid)
		}
	}
	return out
}

// WorkerPIDs lists nginx's worker processes, which serve the requests
// (not the privileged agent, which runs the runner).
func (i *Instance) WorkerPIDs() []int {
	master := i.MasterPID()
	var out []int
	for _, p := range procs() {
		if p.ppid != master || master == 0 {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.pid), "cmdline"))
		if strings.HasPrefix(string(cmd), "nginx: worker process") {
			out = append(out, p.pid)
		}
	}
	return out
}

// AllRunnerPIDs lists every live process running RunnerBin: the ones
// APISIX started and the workers they started, attached or not.
func (i *Instance) AllRunnerPIDs() []int {
	var out []int
	for _, p := range procs() {
		if p.exe == i.opts.RunnerBin && p.state != "Z" {
			out = append(out, p.pid)
		}
	}
	return out
}

type proc struct {
	pid, ppid int
	state     string
	exe       string
}

func procs() []proc {
	ents, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, ppid, ok := procStat(pid)
		if !ok {
			continue
		}
		exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		out = append(out, proc{pid: pid, ppid: ppid, state: state, exe: strings.TrimSuffix(exe, " (deleted)")})
	}
	return out
}

// procStat reads a process's state and parent from /proc/<pid>/stat.
func procStat(pid int) (state string, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, false
	}
	// pid (comm) state ppid ...: comm may hold spaces and parens.
	s := string(b)
	j := strings.LastIndexByte(s, ')')
	if j < 0 {
		return "", 0, false
	}
	f := strings.Fields(s[j+1:])
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0], ppid, err == nil
}

// AccessLogPath is APISIX's access log.
func (i *Instance) AccessLogPath() string { return filepath.Join(i.Home, "logs", "access.log") }

// ErrorLogPath is APISIX's error log; the runner's output is copied there.
func (i *Instance) ErrorLogPath() string { return filepath.Join(i.Home, "logs", "error.log") }

// AccessLog reads the access log's JSON lines.
func (i *Instance) AccessLog() ([]map[string]string, error) {
	b, err := os.ReadFile(i.AccessLogPath())
	if err != nil {
		return nil, err
	}
	var out []map[string]string
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		m := map[string]string{}
		if err := json.Unmarshal(line, &m); err != nil {
			return nil, fmt.Errorf("access log line is not JSON: %v: %s", err, line)
		}
		out = append(out, m)
	}
	return out, nil
}

func (i *Instance) tailErrorLog() string {
	b, err := os.ReadFile(i.ErrorLogPath())
	if err != nil {
		return ""
	}
	return "error.log:\n" + tail(b, 30)
}

// ErrorLog is the whole error log.
func (i *Instance) ErrorLog() string {
	b, _ := os.ReadFile(i.ErrorLogPath())
	return string(b)
}

// Stop runs `apisix stop`, waits for nginx and the runner to be gone, stops
// etcd and removes what Start made. It is safe to call twice.
func (i *Instance) Stop() {
	if i.stopped {
		return
	}
	i.stopped = true
	if i.Home != "" {
		master := i.MasterPID()
		runners := i.AllRunnerPIDs()
		if master != 0 {
			_, _ = i.cli("stop")
			waitGone(append(runners, master), 10*time.Second)
		}
		if os.Getenv("REALAPISIX_KEEP") == "" {
			os.RemoveAll(i.Home)
		} else {
			i.opts.Logf("kept APISIX home %s", i.Home)
		}
	}
	if i.etcd != nil {
		_ = i.etcd.Process.Kill()
		_ = i.etcd.Wait()
	}
	if i.etcdLog != nil {
		i.etcdLog.Close()
	}
	if i.etcdDir != "" {
		os.RemoveAll(i.etcdDir)
	}
}

// StopGracefully runs `apisix quit` and reports how long it took.
func (i *Instance) Quit() error {
	out, err := i.cli("quit")
	if err != nil {
		return fmt.Errorf("apisix quit: %v\n%s", err, out)
	}
	return nil
}

// StopNow runs `apisix stop` and returns once APISIX and its runner exited,
// leaving etcd for Stop.
func (i *Instance) StopNow() error {
	master := i.MasterPID()
	runners := i.AllRunnerPIDs()
	out, err := i.cli("stop")
	if err != nil {
		return fmt.Errorf("apisix stop: %v\n%s", err, out)
	}
	if !waitGone(append(runners, master), 10*time.Second) {
		return errors.New("nginx or the runner still runs 10s after apisix stop")
	}
	return nil
}

func waitGone(pids []int, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		alive := false
		for _, pid := range pids {
			if pid > 0 && syscall.Kill(pid, 0) == nil && !zombie(pid) {
				alive = true
			}
		}
		if !alive {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func zombie(pid int) bool {
	state, _, ok := procStat(pid)
	return !ok || state == "Z"
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// FreeAddr is a free loopback address.
func FreeAddr() (string, error) {
	p, err := freePorts(1)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", p[0]), nil
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
