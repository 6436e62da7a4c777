package main

// Operating the worker: the admin port, several replicas with one writer, a
// watched keys file, every Redis topology, TLS, a least-privilege ACL user,
// an outbound proxy and a private CA. Real processes throughout.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/internal/e2e"
	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/internal/redistest"
	"github.com/statsig-populator/statsig-populator/internal/testcerts"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
	"github.com/statsig-populator/statsig-populator/pkg/writer"
)

var (
	adminGet = e2e.AdminGet
	freeAddr = e2e.FreeAddr
)

func TestAdminPort(t *testing.T) {
	s := newStack(t)
	addr := freeAddr(t)
	// The first fetches hang: the worker is alive but not ready.
	s.CDN.SetFault(keys.SDKKey{}, fakecdn.Fault{Delay: 1500 * time.Millisecond})
	p := start(t, s.BaseEnv("ADMIN_ADDR="+addr, "METRICS_PER_KEY=true", "LEADER_ELECTION=false"))
	waitFor(t, "admin port", 5*time.Second, func() bool { c, _ := adminGet(addr, "/healthz"); return c == 200 })
	code, body := adminGet(addr, "/readyz")
	if code != 503 || !strings.Contains(body, "not yet confirmed current") {
		t.Fatalf("/readyz before the first sync = %d %s", code, body)
	}
	s.CDN.ClearFaults()
	took := waitFor(t, "ready", 5*time.Second, func() bool { c, _ := adminGet(addr, "/readyz"); return c == 200 })
	t.Logf("ready %v after the CDN answered", took)

	_, status := adminGet(addr, "/status")
	var st struct {
		Ready bool `json:"ready"`
		Keys  []struct {
			Key         string  `json:"key"`
			Version     string  `json:"version"`
			Lcut        int64   `json:"lcut"`
			LcutAge     float64 `json:"lcut_age_seconds"`
			LastOutcome string  `json:"last_outcome"`
			LastSuccess string  `json:"last_success"`
			NextPoll    string  `json:"next_poll"`
		} `json:"keys"`
		Leader struct {
			Enabled bool `json:"enabled"`
			Leading bool `json:"leading"`
		} `json:"leader"`
	}
	if err := json.Unmarshal([]byte(status), &st); err != nil || !st.Ready || len(st.Keys) != 4 || st.Leader.Enabled || !st.Leader.Leading {
		t.Fatalf("/status = %v %s", err, status)
	}
	for _, k := range st.Keys {
		if k.Lcut == 0 || k.LcutAge <= 0 || k.LastOutcome == "" || k.LastSuccess == "" || k.NextPoll == "" {
			t.Errorf("/status entry incomplete: %+v", k)
		}
	}

	// Ready means every key was written once; a no_update fetch needs one
	// more poll, so give the metrics a few intervals. Propagation delay is
	// observed only for changes found by a conditional poll: make one.
	s.CDN.Change(keyA, 1000)
	wantMetrics := []string{
		`statsig_populator_fetches_total{outcome="updated",version="v1"}`,
		`statsig_populator_fetches_total{outcome="no_update",version="v2"}`,
		`statsig_populator_writes_total{outcome="written",version="v1"}`,
		"statsig_populator_fetch_duration_seconds_bucket", "statsig_populator_payload_bytes_bucket",
		"statsig_populator_propagation_delay_seconds_bucket", "statsig_populator_oldest_lcut_age_seconds",
		"statsig_populator_leader 1", "statsig_populator_keys_configured 2",
		`statsig_populator_key_lcut_seconds{key="` + keyA.Redacted() + `",version="v1"}`,
	}
	var metrics string
	waitFor(t, "metrics of a second poll", 5*time.Second, func() bool {
		_, metrics = adminGet(addr, "/metrics")
		return strings.Contains(metrics, `statsig_populator_fetches_total{outcome="no_update",version="v2"}`) &&
			strings.Contains(metrics, "statsig_populator_propagation_delay_seconds_count")
	})
	for _, want := range wantMetrics {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, out := range []string{status, metrics} {
		if strings.Contains(out, keyA.Reveal()) || strings.Contains(out, keyB.Reveal()) {
			t.Error("admin output contains a full SDK key")
		}
	}

	// Redis gone for longer than three intervals: not ready, still alive.
	s.Redis.Kill()
	took = waitFor(t, "not ready without Redis", 5*time.Second, func() bool {
		c, body := adminGet(addr, "/readyz")
		return c == 503 && strings.Contains(body, "Redis has not answered")
	})
	t.Logf("not ready %v after Redis died (interval 300ms)", took)
	if c, _ := adminGet(addr, "/healthz"); c != 200 {
		t.Errorf("/healthz = %d while Redis is down, want 200 (liveness must not depend on Redis)", c)
	}
	waitFor(t, "Redis errors counted", 10*time.Second, func() bool {
		_, m := adminGet(addr, "/metrics")
		return strings.Contains(m, `statsig_populator_redis_errors_total{op="inspect"}`)
	})
	s.Redis.Restart()
	took = waitFor(t, "ready again", 5*time.Second, func() bool { c, _ := adminGet(addr, "/readyz"); return c == 200 })
	t.Logf("ready %v after Redis came back", took)
	p.Stop(t)
}

// replicaState reads a replica's leader state from /status.
func replicaLeading(addr string) (bool, bool) {
	code, body := adminGet(addr, "/status")
	if code != 200 {
		return false, false
	}
	var st struct {
		Leader struct {
			Leading bool `json:"leading"`
		} `json:"leader"`
	}
	_ = json.Unmarshal([]byte(body), &st)
	return st.Leader.Leading, true
}

func TestReplicasOneWriter(t *testing.T) {
	s := newStack(t)
	var addrs []string
	var procs []*e2e.Proc
	for i := 0; i < 3; i++ {
		a := freeAddr(t)
		addrs = append(addrs, a)
		procs = append(procs, start(t, s.BaseEnv("ADMIN_ADDR="+a, "LEADER_LEASE=1s")))
	}
	leaderIdx := func() (int, int) {
		n, idx := 0, -1
		for i, a := range addrs {
			if l, _ := replicaLeading(a); l {
				n++
				idx = i
			}
		}
		return n, idx
	}
	waitFor(t, "one leader", 5*time.Second, func() bool { n, _ := leaderIdx(); return n == 1 })
	waitFor(t, "initial sync", 5*time.Second, s.AllCurrent)
	// Every replica is ready: followers watch Redis.
	for _, a := range addrs {
		waitFor(t, "replica ready", 5*time.Second, func() bool { c, _ := adminGet(a, "/readyz"); return c == 200 })
	}
	// Only one replica asks the CDN: about 4 requests per interval, not 12.
	s.CDN.ResetLog()
	time.Sleep(3 * time.Second)
	reqs := len(s.CDN.Requests())
	t.Logf("%d CDN requests in 3s from 3 replicas (4 key/version pairs, 300ms interval)", reqs)
	if reqs > 4*12 {
		t.Errorf("%d CDN requests in 3 s: more than one replica polls", reqs)
	}

	// SIGKILL the leader: another takes over within one lease and keeps Redis current.
	_, idx := leaderIdx()
	killedAt := time.Now()
	_ = procs[idx].Cmd.Process.Kill()
	took := waitFor(t, "a new leader", 3*time.Second, func() bool { n, i := leaderIdx(); return n == 1 && i != idx })
	t.Logf("new leader %v after SIGKILL of the old one (lease 1s)", took)
	if time.Since(killedAt) > 2*time.Second {
		t.Errorf("takeover took %v", time.Since(killedAt))
	}
	s.CDN.Change(keyA, 1000)
	waitFor(t, "change written by the new leader", 3*time.Second, func() bool { return s.Current(keyA) })

	// SIGSTOP the new leader (as partitioned): another takes over; when it
	// resumes it finds the lease gone and does not write.
	_, idx2 := leaderIdx()
	_ = procs[idx2].Cmd.Process.Signal(syscall.SIGSTOP)
	waitFor(t, "takeover from a paused leader", 4*time.Second, func() bool {
		for i, a := range addrs {
			if i != idx && i != idx2 {
				if l, _ := replicaLeading(a); l {
					return true
				}
			}
		}
		return false
	})
	_ = procs[idx2].Cmd.Process.Signal(syscall.SIGCONT)
	waitFor(t, "resumed replica steps down", 3*time.Second, func() bool { l, ok := replicaLeading(addrs[idx2]); return ok && !l })
	s.CDN.Change(keyB, 1000)
	waitFor(t, "change written after the second takeover", 3*time.Second, func() bool { return s.Current(keyB) })
}

func TestTwoDeploymentsDoNotContend(t *testing.T) {
	s := newStack(t)
	a, b := freeAddr(t), freeAddr(t)
	start(t, s.BaseEnv("ADMIN_ADDR="+a, "REDIS_KEY_PREFIX=team-a:"))
	start(t, s.BaseEnv("ADMIN_ADDR="+b, "REDIS_KEY_PREFIX=team-b:"))
	waitFor(t, "both lead", 5*time.Second, func() bool {
		la, _ := replicaLeading(a)
		lb, _ := replicaLeading(b)
		return la && lb
	})
}

func TestKeysFileWatched(t *testing.T) {
	s := newStack(t)
	keyC := keys.MustParse("secret-third-key-for-the-file")
	s.CDN.SetProject(keyC, fakecdn.Project{Lcut: 1700000009000, Value: 3})
	file := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(file, []byte("# team keys\n"+keyA.Reveal()+"\n"), 0o600)
	environ := env("STATSIG_SERVER_SDK_KEYS_FILE="+file, "STATSIG_API_URL="+s.URL, "REDIS_URL="+s.Redis.URL(),
		"POLL_INTERVAL=500ms", "ADMIN_ADDR="+freeAddr(t), "DELETE_REMOVED_KEYS=true", "STATSIG_DCS_VERSIONS=v1")
	p := start(t, environ)
	v1target := func(k keys.SDKKey) keys.Target { return keys.Targets("", k, keys.V1, []keys.Schema{keys.Hashed})[0] }
	present := func(k keys.SDKKey) bool {
		return s.Redis.Client().Exists(context.Background(), v1target(k).Key).Val() == 1
	}
	waitFor(t, "first key", 5*time.Second, func() bool { return present(keyA) })

	os.WriteFile(file, []byte(keyA.Reveal()+"\n"+keyC.Reveal()+"\n"), 0o600)
	took := waitFor(t, "added key polled", 2*time.Second, func() bool { return present(keyC) })
	t.Logf("added key written %v after the file changed (interval 500ms)", took)

	// A broken edit changes nothing.
	os.WriteFile(file, []byte(keyA.Reveal()+"\nclient-oops\n"), 0o600)
	// Prove the watcher read the broken file before judging that it changed nothing.
	waitFor(t, "the broken file refused", 3*time.Second, func() bool {
		return strings.Contains(p.Logs(), "the SDK keys file holds invalid keys")
	})
	if !present(keyC) {
		t.Fatal("an invalid file removed keys")
	}
	if strings.Contains(p.Logs(), "client-oops") {
		t.Error("the invalid key was logged in full")
	}

	os.WriteFile(file, []byte(keyC.Reveal()+"\n"), 0o600)
	waitFor(t, "removed key deleted", 2*time.Second, func() bool { return !present(keyA) })
	s.CDN.ResetLog()
	// Polls go on (the remaining key is asked twice) while the removed one is not.
	waitFor(t, "the remaining key polled twice", 3*time.Second, func() bool { return len(s.CDN.RequestsFor(keyC, keys.V1)) >= 2 })
	if n := len(s.CDN.RequestsFor(keyA, keys.V1)); n != 0 {
		t.Errorf("removed key still polled: %d requests", n)
	}
}

func TestRedisCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	s := newStack(t) // its standalone Redis is unused here
	cc := c.Client(t)
	for _, formats := range []string{"sfp,node-redis", "string"} {
		// string and sfp share key names: give the string run its own prefix.
		prefix := map[string]string{"string": "str:"}[formats]
		environ := s.BaseEnv("REDIS_CLUSTER_ADDRS="+strings.Join(c.Addrs(), ","), "REDIS_FORMATS="+formats,
			"REDIS_URL=redis://unused:1", "REDIS_KEY_PREFIX="+prefix)
		run := func(args ...string) string {
			cmd := exec.Command(e2e.Binary, args...)
			cmd.Env = environ
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v with formats %s: %v\n%s", args, formats, err, out)
			}
			return string(out)
		}
		run("once")
		run("check")
		layout := keys.Layout{Prefix: prefix, NodeRedisHash: "statsig-redis", Schemas: []keys.Schema{keys.Hashed, keys.Prefix}}
		for _, f := range strings.Split(formats, ",") {
			layout.Formats = append(layout.Formats, keys.Format(f))
		}
		w := writer.New(cc, 0)
		for _, k := range []keys.SDKKey{keyA, keyB} {
			for _, v := range []keys.Version{keys.V1, keys.V2} {
				for _, tg := range layout.Targets(k, v) {
					e, err := w.Read(context.Background(), tg)
					want := fakecdn.V1Body(k, s.CDN.Project(k))
					if v == keys.V2 {
						want = fakecdn.V2Body(k, s.CDN.Project(k))
					}
					if err != nil || string(e.Payload) != string(want) {
						t.Errorf("%s %s %s on the cluster: %v", tg.Format, tg.Schema, v, err)
					}
				}
			}
		}
	}
	// Slots are really spread: the keys live on more than one node.
	used := 0
	for _, n := range c.Nodes {
		if n.Client().DBSize(context.Background()).Val() > 0 {
			used++
		}
	}
	if used < 2 {
		t.Errorf("keys on %d node(s): the test did not exercise several slots", used)
	}

	// And the long-running worker, leader election included, on the cluster.
	p := start(t, s.BaseEnv("REDIS_CLUSTER_ADDRS="+strings.Join(c.Addrs(), ","), "REDIS_URL=redis://unused:1"))
	s.CDN.Change(keyA, 1000)
	w := writer.New(cc, 0)
	tg := keys.Targets("", keyA, keys.V2, []keys.Schema{keys.Hashed})[0]
	waitFor(t, "change on the cluster", 5*time.Second, func() bool {
		e, _ := w.Read(context.Background(), tg)
		return string(e.Payload) == string(fakecdn.V2Body(keyA, s.CDN.Project(keyA)))
	})
	p.Stop(t)
}

func TestRedisSentinelFailover(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	sentinel := redistest.StartSentinel(t, "mymaster", master)
	waitFor(t, "replica in sync", 10*time.Second, func() bool {
		return strings.Contains(replica.Client().Info(context.Background(), "replication").Val(), "master_link_status:up")
	})
	waitFor(t, "sentinel sees the replica", 10*time.Second, func() bool {
		r, _ := sentinel.Client().Do(context.Background(), "SENTINEL", "replicas", "mymaster").Slice()
		return len(r) == 1
	})
	s := newStack(t)
	p := start(t, s.BaseEnv("REDIS_SENTINEL_ADDRS="+sentinel.Addr(), "REDIS_SENTINEL_MASTER=mymaster", "REDIS_URL=redis://unused:1"))
	current := func(rdb *redis.Client, k keys.SDKKey) bool {
		for _, v := range []keys.Version{keys.V1, keys.V2} {
			want := fakecdn.V1Body(k, s.CDN.Project(k))
			if v == keys.V2 {
				want = fakecdn.V2Body(k, s.CDN.Project(k))
			}
			for _, tg := range keys.Targets("", k, v, []keys.Schema{keys.Hashed, keys.Prefix}) {
				if rdb.HGet(context.Background(), tg.Key, "config").Val() != string(want) {
					return false
				}
			}
		}
		return true
	}
	waitFor(t, "initial sync through Sentinel", 5*time.Second, func() bool { return current(master.Client(), keyA) && current(master.Client(), keyB) })

	// Keep changing a key while Sentinel fails over to the replica.
	stop := make(chan struct{})
	var changer sync.WaitGroup
	changer.Add(1)
	go func() {
		defer changer.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(150 * time.Millisecond):
				s.CDN.Change(keyA, 100)
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)
	if err := sentinel.Client().Do(context.Background(), "SENTINEL", "failover", "mymaster").Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	waitFor(t, "replica promoted", 15*time.Second, func() bool {
		return strings.Contains(replica.Client().Info(context.Background(), "replication").Val(), "role:master")
	})
	time.Sleep(time.Second)
	close(stop)
	changer.Wait()
	took := waitFor(t, "new master current", 10*time.Second, func() bool { return current(replica.Client(), keyA) && current(replica.Client(), keyB) })
	t.Logf("all keys current on the promoted master %v after the last change", took)
	p.Stop(t)
}

func TestRedisTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.NewCA(t)
	server := ca.Issue(t, "localhost", "127.0.0.1")
	client := ca.Issue(t, "statsig-populator")
	caFile := testcerts.Write(t, dir, "ca.pem", ca.CertPEM)
	tlsPort := redistest.FreePort(t)
	srv := redistest.Start(t, "--tls-port", strconv.Itoa(tlsPort),
		"--tls-cert-file", testcerts.Write(t, dir, "server.pem", server.CertPEM),
		"--tls-key-file", testcerts.Write(t, dir, "server.key", server.KeyPEM),
		"--tls-ca-cert-file", caFile, "--tls-auth-clients", "yes")
	_ = srv
	s := newStack(t)
	url := fmt.Sprintf("rediss://127.0.0.1:%d/0", tlsPort)
	certFile := testcerts.Write(t, dir, "client.pem", client.CertPEM)
	keyFile := testcerts.Write(t, dir, "client.key", client.KeyPEM)
	once := func(extra ...string) (int, string) {
		cmd := exec.Command(e2e.Binary, "once")
		cmd.Env = s.BaseEnv(append([]string{"REDIS_URL=" + url, "LOG_LEVEL=error"}, extra...)...)
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	if code, out := once("REDIS_TLS_CA_FILE="+caFile, "REDIS_TLS_CERT_FILE="+certFile, "REDIS_TLS_KEY_FILE="+keyFile); code != 0 {
		t.Fatalf("mutual TLS: exit %d\n%s", code, out)
	}
	if n := srv.Client().Exists(context.Background(), keys.Targets("", keyA, keys.V1, []keys.Schema{keys.Hashed})[0].Key).Val(); n != 1 {
		t.Fatal("nothing written over TLS")
	}
	// The server certificate is verified by default: without our CA it fails.
	if code, _ := once("REDIS_TLS_CERT_FILE="+certFile, "REDIS_TLS_KEY_FILE="+keyFile); code != 1 {
		t.Errorf("unknown CA: exit %d, want 1", code)
	}
	// And the server demands a client certificate.
	if code, _ := once("REDIS_TLS_CA_FILE=" + caFile); code != 1 {
		t.Errorf("no client certificate: exit %d, want 1", code)
	}
	// Skipping verification works, and is said loudly.
	cmd := exec.Command(e2e.Binary, "once")
	cmd.Env = s.BaseEnv("REDIS_URL="+url, "REDIS_TLS_INSECURE_SKIP_VERIFY=true", "REDIS_TLS_CERT_FILE="+certFile, "REDIS_TLS_KEY_FILE="+keyFile)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "NOT verified") {
		t.Errorf("insecure skip verify: %v\n%s", err, out)
	}
}

// aclRules is the least-privilege ACL documented in the README.
const aclRules = "on >populator-pw resetkeys ~statsig* resetchannels -@all +ping +hello +client|setname " +
	"+hget +hset +hexists +hstrlen +hdel +get +set +strlen +del +exists +pexpire +persist +pttl +type +evalsha +eval " +
	"+hmget +append +getrange +rename"

func TestRedisACLUser(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	if err := s.Redis.Client().Do(ctx, append([]any{"ACL", "SETUSER", "populator"}, splitArgs(aclRules)...)...).Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	pwFile := filepath.Join(t.TempDir(), "redis-password")
	os.WriteFile(pwFile, []byte("populator-pw\n"), 0o600)
	environ := s.BaseEnv("REDIS_USERNAME=populator", "REDIS_PASSWORD_FILE="+pwFile, "REDIS_FORMATS=sfp,node-redis", "ADMIN_ADDR="+freeAddr(t))
	// ID lists (sfp alone), a new list and then an append, as that user.
	s.CDN.PutIDList(keyA, "list_1", "123", 0, []byte("+ungWv48B\n"))
	withIDLists := s.BaseEnv("REDIS_USERNAME=populator", "REDIS_PASSWORD_FILE="+pwFile, "STATSIG_ID_LISTS=true")
	for i, env := range [][]string{environ, withIDLists, withIDLists} {
		if i == 2 {
			s.CDN.AppendIDList(keyA, "list_1", []byte("-ungWv48B\n"))
		}
		for _, args := range [][]string{{"once"}, {"check"}} {
			cmd := exec.Command(e2e.Binary, args...)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%v as the ACL user: %v\n%s", args, err, out)
			}
		}
	}
	if v, _ := s.Redis.Client().Get(ctx, keys.NewIDListTarget("", keyA, keys.Hashed, "list_1").Key).Result(); v != "+ungWv48B\n-ungWv48B\n" {
		t.Fatalf("ID list written by the ACL user: %q", v)
	}
	// The running worker, with its leader lease, works as that user too.
	p := start(t, environ)
	s.CDN.Change(keyA, 1000)
	waitFor(t, "change written by the ACL user", 5*time.Second, func() bool { return s.Current(keyA) })
	p.Stop(t)
	if strings.Contains(p.Logs(), "NOPERM") {
		t.Errorf("permission errors in the log:\n%s", p.Logs())
	}
	// The ACL really restricts: the same user cannot touch other keys.
	other := redis.NewClient(&redis.Options{Addr: s.Redis.Addr(), Username: "populator", Password: "populator-pw"})
	defer other.Close()
	if err := other.Set(ctx, "unrelated", "x", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("ACL user wrote an unrelated key: %v", err)
	}
}

func splitArgs(s string) []any {
	var out []any
	for _, f := range strings.Fields(s) {
		out = append(out, f)
	}
	return out
}

func TestProxyAndPrivateCA(t *testing.T) {
	s := newStack(t)
	dir := t.TempDir()
	ca := testcerts.NewCA(t)
	leaf := ca.Issue(t, "cdn.test")
	tlsCDN := httptest.NewUnstartedServer(s.CDN)
	tlsCDN.TLS = tlsConfig(leaf.TLSCertificate(t))
	tlsCDN.StartTLS()
	defer tlsCDN.Close()

	// A CONNECT proxy that knows cdn.test; the worker cannot resolve it itself.
	var connects atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect || r.Host != "cdn.test:443" {
			http.Error(w, "only CONNECT cdn.test:443", http.StatusForbidden)
			return
		}
		connects.Add(1)
		up, err := net.Dial("tcp", tlsCDN.Listener.Addr().String())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		conn, rw, _ := w.(http.Hijacker).Hijack()
		fmt.Fprint(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
		go func() { _, _ = io.Copy(up, rw); up.Close() }()
		_, _ = io.Copy(conn, up)
		conn.Close()
	}))
	defer proxy.Close()

	caFile := testcerts.Write(t, dir, "ca.pem", ca.CertPEM)
	cmd := exec.Command(e2e.Binary, "once")
	cmd.Env = s.BaseEnv("STATSIG_API_URL=https://cdn.test", "HTTPS_PROXY="+proxy.URL, "STATSIG_CA_FILE="+caFile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("once through the proxy: %v\n%s", err, out)
	}
	if connects.Load() == 0 || !s.AllCurrent() {
		t.Fatalf("%d CONNECTs; all current: %v", connects.Load(), s.AllCurrent())
	}
	// Without the private CA the CDN's certificate is refused.
	s.Redis.FlushAll()
	cmd = exec.Command(e2e.Binary, "once")
	cmd.Env = s.BaseEnv("STATSIG_API_URL=https://cdn.test", "HTTPS_PROXY="+proxy.URL)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "certificate") {
		t.Errorf("unknown CA accepted: %v\n%s", err, out)
	}
	// NO_PROXY sends it direct, where cdn.test does not resolve.
	before := connects.Load()
	cmd = exec.Command(e2e.Binary, "once")
	cmd.Env = s.BaseEnv("STATSIG_API_URL=https://cdn.test", "HTTPS_PROXY="+proxy.URL, "NO_PROXY=cdn.test", "STATSIG_CA_FILE="+caFile)
	_ = cmd.Run()
	if connects.Load() != before || cmd.ProcessState.ExitCode() != 1 {
		t.Errorf("NO_PROXY ignored: %d new CONNECTs, exit %d", connects.Load()-before, cmd.ProcessState.ExitCode())
	}
}

func tlsConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

func TestHealthcheckCommand(t *testing.T) {
	s := newStack(t)
	port := redistest.FreePort(t)
	probe := func(args ...string) int {
		cmd := exec.Command(e2e.Binary, append([]string{"healthcheck"}, args...)...)
		cmd.Env = env("ADMIN_ADDR=:" + strconv.Itoa(port))
		_ = cmd.Run()
		return cmd.ProcessState.ExitCode()
	}
	if code := probe(); code != 1 {
		t.Fatalf("healthcheck with nothing listening: exit %d, want 1", code)
	}
	s.CDN.SetFault(keys.SDKKey{}, fakecdn.Fault{Status: 503})
	p := start(t, s.BaseEnv("ADMIN_ADDR=:"+strconv.Itoa(port)))
	waitFor(t, "alive", 5*time.Second, func() bool { return probe() == 0 })
	if code := probe("--ready"); code != 1 {
		t.Errorf("--ready while the CDN fails: exit %d, want 1", code)
	}
	s.CDN.ClearFaults()
	waitFor(t, "ready", 5*time.Second, func() bool { return probe("--ready") == 0 })
	p.Stop(t)
}

// A replica whose admin port is taken exits without ever holding the lease:
// the port is opened before the lease is sought, so the other replicas are
// never left waiting out a lease nobody renews.
func TestAdminPortTakenNeverHoldsTheLease(t *testing.T) {
	s := newStack(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cmd := exec.Command(e2e.Binary)
	cmd.Env = s.BaseEnv("ADMIN_ADDR="+ln.Addr().String(), "LEADER_ELECTION=true", "LEADER_LEASE=30s")
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(out), "admin server") {
		t.Fatalf("exit %d with the admin port taken, want 1 and the reason:\n%s", code, out)
	}
	if n := s.Redis.Client().Exists(context.Background(), leaseKey("")).Val(); n != 0 {
		t.Errorf("the lease key exists after a replica exited for want of its admin port: the others would wait 30s")
	}
}
