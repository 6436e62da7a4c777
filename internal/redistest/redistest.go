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
	"sync/atomic"
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
	s.admin = redis.NewClient(&redis.Options{Addr: s.Addr(), Password: s.password(), MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second})
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

	viewFrom atomic.Int32 // the node View asked last
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
	s.admin = redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second})
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if s.admin.Ping(context.Background()).Err() == nil {
			return nil
		}
	}
	_ = cmd.Process.Kill()
	return fmt.Errorf("sentinel on port %d did not answer", s.Port)
}

// StartReplica starts a redis-server replicating master (--replicaof, extra
// arguments after it) and waits until its link to the master is up.
func StartReplica(t testing.TB, master *Server, extra ...string) *Server {
	t.Helper()
	args := append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(master.Port)}, extra...)
	if pw := master.password(); pw != "" {
		args = append(args, "--masterauth", pw, "--requirepass", pw)
	}
	r := Start(t, args...)
	waitUntil(t, "replica linked to its master", 20*time.Second, func() bool {
		return strings.Contains(r.admin.Info(context.Background(), "replication").Val(), "master_link_status:up")
	})
	return r
}

// Alive reports whether the process answers PING.
func (s *Server) Alive() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	return s.admin.Ping(ctx).Err() == nil
}

// Role is what ROLE says first: "master" or "slave" ("" when it does not
// answer).
func (s *Server) Role() string {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	r, err := s.admin.Do(ctx, "ROLE").Slice()
	if err != nil || len(r) == 0 {
		return ""
	}
	role, _ := r[0].(string)
	return role
}

func waitUntil(t testing.TB, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ClusterNodeTimeout is the cluster-node-timeout of StartClusterWithReplicas:
// a master that does not answer for this long is marked failed and one of
// its replicas takes over about a second later.
const ClusterNodeTimeout = 1000 * time.Millisecond

// StartClusterWithReplicas starts masters × (1 + replicasPerMaster)
// redis-server processes in cluster mode (cluster-node-timeout
// ClusterNodeTimeout, so that a failover takes seconds; extra arguments go to
// every node, e.g. "--cluster-require-full-coverage", "no") and joins them
// into a cluster of masters masters, each with replicasPerMaster replicas
// (redis-cli --cluster create --cluster-replicas), all slots covered. It
// returns once every node sees the cluster ok and every replica is in sync
// with its master. Nodes lists every node; Masters and ReplicasOf tell the
// roles apart.
func StartClusterWithReplicas(t testing.TB, masters, replicasPerMaster int, extra ...string) *Cluster {
	t.Helper()
	c := &Cluster{}
	var addrs []string
	n := masters * (1 + replicasPerMaster)
	for i := 0; i < n; i++ {
		args := append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout.Milliseconds())),
			// A replica may take over however long ago it last heard its
			// master: tests kill masters at any moment.
			"--cluster-replica-validity-factor", "0"}, extra...)
		s := Start(t, args...)
		c.Nodes = append(c.Nodes, s)
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicasPerMaster), "--cluster-yes")
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	ctx := context.Background()
	waitUntil(t, "cluster ok on every node, every node known", 30*time.Second, func() bool {
		for _, s := range c.Nodes {
			info := s.admin.ClusterInfo(ctx).Val()
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(n)+"\r") {
				return false
			}
		}
		return true
	})
	waitUntil(t, "every replica in sync", 30*time.Second, func() bool {
		ms := 0
		for _, s := range c.Nodes {
			info := s.admin.Info(ctx, "replication").Val()
			switch {
			case strings.Contains(info, "role:master"):
				ms++
			case !strings.Contains(info, "master_link_status:up"):
				return false
			}
		}
		return ms == masters
	})
	return c
}

// ClusterNode is one line of CLUSTER NODES, as a live node sees it.
type ClusterNode struct {
	ID     string
	Server *Server // nil when the address is not one of the cluster's processes
	Flags  []string
	Master string // the master's ID for a replica, "" for a master
	Slots  []string
}

// Is reports whether flag (master, slave, fail, fail?, myself…) is set.
func (n ClusterNode) Is(flag string) bool {
	for _, f := range n.Flags {
		if f == flag {
			return true
		}
	}
	return false
}

// View is CLUSTER NODES as a live node sees it: the one that answered last
// time if it still does, else the first that answers in Nodes order (a
// stopped node costs 300 ms).
func (c *Cluster) View(t testing.TB) []ClusterNode {
	t.Helper()
	first := int(c.viewFrom.Load())
	for n := range c.Nodes {
		i := (first + n) % len(c.Nodes)
		s := c.Nodes[i]
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		text, err := s.admin.ClusterNodes(ctx).Result()
		cancel()
		if err != nil {
			continue
		}
		c.viewFrom.Store(int32(i))
		var out []ClusterNode
		for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
			f := strings.Fields(line)
			if len(f) < 8 {
				continue
			}
			addr := f[1]
			if i := strings.IndexByte(addr, '@'); i >= 0 {
				addr = addr[:i]
			}
			n := ClusterNode{ID: f[0], Server: c.byAddr(addr), Flags: strings.Split(f[2], ","), Slots: f[8:]}
			if f[3] != "-" {
				n.Master = f[3]
			}
			out = append(out, n)
		}
		return out
	}
	t.Fatal("no cluster node answers")
	return nil
}

func (c *Cluster) byAddr(addr string) *Server {
	for _, s := range c.Nodes {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// ID is s's cluster node ID.
func (c *Cluster) ID(t testing.TB, s *Server) string {
	t.Helper()
	for _, n := range c.View(t) {
		if n.Server == s {
			return n.ID
		}
	}
	t.Fatalf("node %s is not in the cluster", s.Addr())
	return ""
}

// Masters lists the nodes serving slots now (failed ones left out).
func (c *Cluster) Masters(t testing.TB) []*Server {
	t.Helper()
	var out []*Server
	for _, n := range c.View(t) {
		if n.Is("master") && !n.Is("fail") && len(n.Slots) > 0 && n.Server != nil {
			out = append(out, n.Server)
		}
	}
	return out
}

// ReplicasOf lists the replicas of master.
func (c *Cluster) ReplicasOf(t testing.TB, master *Server) []*Server {
	t.Helper()
	view := c.View(t)
	var id string
	for _, n := range view {
		if n.Server == master {
			id = n.ID
		}
	}
	var out []*Server
	for _, n := range view {
		if id != "" && n.Master == id && n.Server != nil {
			out = append(out, n.Server)
		}
	}
	return out
}

// Slot is the cluster slot of key, as a live node computes it.
func (c *Cluster) Slot(t testing.TB, key string) int {
	t.Helper()
	for _, s := range c.Nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		n, err := s.admin.ClusterKeySlot(ctx, key).Result()
		cancel()
		if err == nil {
			return int(n)
		}
	}
	t.Fatal("no cluster node answers CLUSTER KEYSLOT")
	return 0
}

// MasterFor is the node serving key's slot, as a live node sees the cluster.
func (c *Cluster) MasterFor(t testing.TB, key string) *Server {
	t.Helper()
	slot := c.Slot(t, key)
	for _, n := range c.View(t) {
		if !n.Is("master") || n.Is("fail") {
			continue
		}
		for _, r := range n.Slots {
			if strings.HasPrefix(r, "[") { // a migrating or importing slot
				continue
			}
			lo, hi, _ := strings.Cut(r, "-")
			a, _ := strconv.Atoi(lo)
			b := a
			if hi != "" {
				b, _ = strconv.Atoi(hi)
			}
			if slot >= a && slot <= b {
				return n.Server
			}
		}
	}
	t.Fatalf("no master serves slot %d", slot)
	return nil
}

// WaitFailover waits until one of the replicas the dead master had (replicas,
// listed before it died) reports itself master, and returns it and when it
// was seen so (polled every 10 ms).
func (c *Cluster) WaitFailover(t testing.TB, replicas []*Server, limit time.Duration) (*Server, time.Time) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		for _, r := range replicas {
			if r.Role() == "master" {
				return r, time.Now()
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no replica took over within %v", limit)
	return nil, time.Time{}
}

// ReadOnlyClient is a client whose connections send READONLY first, so that
// a cluster replica answers reads of the slots it replicates instead of
// redirecting them to its master. Closed when the test ends.
func (s *Server) ReadOnlyClient(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), Password: s.password(), MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error { return cn.ReadOnly(ctx).Err() }})
	t.Cleanup(func() { c.Close() })
	return c
}
