// Package redistest starts real redis-server processes for tests, each on its
// own free port and in its own directory, so a test can kill, restart, flush
// or pause its server without touching any other Redis on the machine.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func init() {
	// go-redis logs dial failures to stderr by itself; tests that kill their
	// server on purpose would drown their output in them.
	redis.SetLogger(quiet{})
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// Server is one redis-server process owned by a test.
type Server struct {
	t     testing.TB
	Port  int
	Dir   string
	args  []string
	cmd   *exec.Cmd
	admin *redis.Client
}

// Start runs redis-server with extra arguments (e.g. "--maxmemory", "1mb")
// and stops it when the test ends. The test fails if redis-server is missing:
// CI installs it, and a skipped suite would prove nothing.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found on PATH (install it: apt-get install -y redis-server): %v", err)
	}
	s := &Server{t: t, Dir: t.TempDir()}
	s.args = append([]string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.Dir, "--protected-mode", "no", "--daemonize", "no"}, extra...)
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		s.Port = FreePort(t)
		if lastErr = s.start(bin); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("starting redis-server: %v", lastErr)
	}
	t.Cleanup(s.Kill)
	return s
}

func (s *Server) start(bin string) error {
	args := append([]string{"--port", strconv.Itoa(s.Port)}, s.args...)
	cmd := exec.Command(bin, args...)
	logf, err := os.OpenFile(filepath.Join(s.Dir, "redis.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	go func() { _ = cmd.Wait(); logf.Close() }()
	s.cmd = cmd
	s.admin = redis.NewClient(&redis.Options{Addr: s.Addr(), Password: s.password(), MaxRetries: -1, DialTimeout: time.Second})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s.admin.Ping(context.Background()).Err() == nil {
			return nil
		}
		if cmd.ProcessState != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	return fmt.Errorf("redis-server on port %d did not answer: %s", s.Port, lastLines(string(log), 5))
}

// password is the --requirepass argument, if any.
func (s *Server) password() string {
	for i, a := range s.args {
		if a == "--requirepass" && i+1 < len(s.args) {
			return s.args[i+1]
		}
	}
	return ""
}

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is a redis:// URL for db 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Client is a client for the test's own checks (no retries, so a dead server
// shows at once), authenticated with --requirepass when one was given.
func (s *Server) Client() *redis.Client { return s.admin }

// Kill stops the server at once (SIGKILL); its data is gone.
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused process cannot die otherwise
		_ = s.cmd.Process.Kill()
		for i := 0; i < 200 && s.portOpen(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// Restart kills the server and starts a new, empty one on the same port.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	bin, _ := exec.LookPath("redis-server")
	if err := s.start(bin); err != nil {
		s.t.Fatalf("restarting redis-server: %v", err)
	}
}

// Pause stops the process (SIGSTOP): connections stay open and nothing answers.
func (s *Server) Pause() { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// FlushAll empties every database.
func (s *Server) FlushAll() {
	s.t.Helper()
	if err := s.admin.FlushAll(context.Background()).Err(); err != nil {
		s.t.Fatalf("FLUSHALL: %v", err)
	}
}

func (s *Server) portOpen() bool {
	c, err := net.DialTimeout("tcp", s.Addr(), 50*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// FreePort asks the kernel for a port nobody listens on.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// Cluster is a Redis Cluster of masters started by a test.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts n redis-server processes in cluster mode and joins them
// into one cluster of n masters (redis-cli --cluster create), all slots
// covered.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{}
	var addrs []string
	for i := 0; i < n; i++ {
		s := Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		c.Nodes = append(c.Nodes, s)
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range c.Nodes {
		for !strings.Contains(s.admin.ClusterInfo(context.Background()).Val(), "cluster_state:ok") {
			if time.Now().After(deadline) {
				t.Fatalf("cluster not ok: %s", s.admin.ClusterInfo(context.Background()).Val())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// Addrs lists host:port of every node.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, s := range c.Nodes {
		out = append(out, s.Addr())
	}
	return out
}

// Client is a cluster client for the test's own checks.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { cc.Close() })
	return cc
}

// StartSentinel runs a Sentinel monitoring master under name (quorum 1,
// failure detection after 1 s).
func StartSentinel(t testing.TB, name string, master *Server) *Server {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	text := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\nsentinel resolve-hostnames no\n",
		name, master.Port, name, name)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, Dir: dir, args: []string{conf, "--sentinel", "--bind", "127.0.0.1", "--protected-mode", "no", "--daemonize", "no"}}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		s.Port = FreePort(t)
		if lastErr = s.startSentinel(bin); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatalf("starting sentinel: %v", lastErr)
	}
	t.Cleanup(s.Kill)
	return s
}

// startSentinel runs redis-server in sentinel mode: the config file must be
// the first argument.
func (s *Server) startSentinel(bin string) error {
	args := append([]string{s.args[0], "--port", strconv.Itoa(s.Port)}, s.args[1:]...)
	cmd := exec.Command(bin, args...)
	logf, err := os.OpenFile(filepath.Join(s.Dir, "redis.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	go func() { _ = cmd.Wait(); logf.Close() }()
	s.cmd = cmd
	s.admin = redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if s.admin.Ping(context.Background()).Err() == nil {
			return nil
		}
	}
	_ = cmd.Process.Kill()
	return fmt.Errorf("sentinel on port %d did not answer", s.Port)
}
