package redisconn

import (
	"bytes"
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/internal/redistest"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

func TestDescribe(t *testing.T) {
	cases := []struct {
		name string
		o    Options
		want string
	}{
		{"standalone", Options{Mode: Standalone, Addrs: []string{"10.0.0.1:6379"}, DB: 3, Password: "s3cret", Username: "u"}, "redis://10.0.0.1:6379/3"},
		{"tls", Options{Mode: Standalone, Addrs: []string{"r:6380"}, TLS: &tls.Config{}}, "rediss://r:6380/0"},
		{"cluster", Options{Mode: Cluster, Addrs: []string{"a:1", "b:2"}, Password: "s3cret"}, "cluster redis://a:1,b:2"},
		{"sentinel", Options{Mode: Sentinel, Addrs: []string{"s:26379"}, SentinelMaster: "mymaster", SentinelPassword: "s3cret", DB: 2}, "sentinel redis://s:26379 master mymaster/2"},
		{"no address", Options{Mode: Standalone}, "redis://?/0"},
	}
	for _, c := range cases {
		if got := c.o.Describe(); got != c.want {
			t.Errorf("%s: Describe() = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestNewOptions(t *testing.T) {
	cases := []struct {
		name  string
		o     Options
		check func(*redis.Options) bool
	}{
		{"defaults", Options{Mode: Standalone, Addrs: []string{"127.0.0.1:1"}}, func(o *redis.Options) bool {
			return o.ClientName == "statsig-populator" && o.PipelineReadBufferSize == 32<<10 && o.ContextTimeoutEnabled && o.PoolSize > 0
		}},
		{"pool size from the concurrency", Options{Mode: Standalone, Addrs: []string{"127.0.0.1:1"}, PoolSize: 68}, func(o *redis.Options) bool {
			return o.PoolSize == 68
		}},
		{"pool_size in the URL wins", Options{Mode: Standalone, Addrs: []string{"127.0.0.1:1"}, PoolSize: 68, Tuning: Tuning{PoolSize: 5}}, func(o *redis.Options) bool {
			return o.PoolSize == 5
		}},
		{"tuning applied", Options{Mode: Standalone, Addrs: []string{"127.0.0.1:1"}, DB: 5, Tuning: Tuning{
			ClientName: "team-a", Protocol: 2, ReadTimeout: 7 * time.Second, MaxRetries: -1, PoolFIFO: true,
			MaxActiveConns: 9, ConnMaxLifetime: time.Hour, ConnMaxLifetimeJitter: time.Minute, PipelineReadBufferSize: 4096}},
			func(o *redis.Options) bool {
				return o.DB == 5 && o.ClientName == "team-a" && o.Protocol == 2 && o.ReadTimeout == 7*time.Second && o.MaxRetries == 0 && // go-redis stores -1 (no retries) as 0
					o.PoolFIFO && o.MaxActiveConns == 9 && o.ConnMaxLifetime == time.Hour && o.ConnMaxLifetimeJitter == time.Minute &&
					o.PipelineReadBufferSize == 4096
			}},
		{"password file uses a provider", Options{Mode: Standalone, Addrs: []string{"127.0.0.1:1"}, Password: "pw", PasswordFile: "/run/pw"}, func(o *redis.Options) bool {
			return o.CredentialsProviderContext != nil
		}},
		{"no password file, no provider", Options{Mode: Standalone, Addrs: []string{"127.0.0.1:1"}, Password: "pw"}, func(o *redis.Options) bool {
			return o.CredentialsProviderContext == nil && o.Password == "pw"
		}},
	}
	for _, c := range cases {
		rdb, err := New(c.o)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := rdb.(*redis.Client).Options(); !c.check(got) {
			t.Errorf("%s: go-redis options %+v", c.name, got)
		}
		rdb.Close()
	}

	rdb, err := New(Options{Mode: Cluster, Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}, PoolSize: 68})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if got := rdb.(*redis.ClusterClient).Options(); got.PoolSize != 68 || got.ClusterStateReloadInterval != DefaultClusterRefresh || got.DialerRetries != 1 ||
		!got.ContextTimeoutEnabled || got.ClientName != "statsig-populator" || got.PipelineReadBufferSize != 32<<10 {
		t.Errorf("cluster options: pool size %d (want 68), slot map refresh %v (want %v), %+v", got.PoolSize, got.ClusterStateReloadInterval, DefaultClusterRefresh, got)
	}
	custom, err := New(Options{Mode: Cluster, Addrs: []string{"127.0.0.1:1"}, ClusterRefresh: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer custom.Close()
	if got := custom.(*redis.ClusterClient).Options().ClusterStateReloadInterval; got != time.Second {
		t.Errorf("ClusterRefresh 1s gave a reload interval of %v", got)
	}

	if _, err := New(Options{Mode: Standalone}); err == nil {
		t.Error("New without an address succeeded")
	}
}

func TestPasswordFromFile(t *testing.T) {
	for in, want := range map[string]string{
		"pw":       "pw",
		"pw\n":     "pw",
		"pw\r\n":   "pw",
		"pw\n\n":   "pw\n",
		"":         "",
		" pw \n":   " pw ",
		"a\nb\n":   "a\nb",
		"pw\r\r\n": "pw\r",
	} {
		if got := PasswordFromFile([]byte(in)); got != want {
			t.Errorf("PasswordFromFile(%q) = %q, want %q", in, got, want)
		}
	}
}

// The provider re-reads the file, and keeps the last good password while the
// file cannot be read, is empty or is absurdly large.
func TestFileCredentials(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pw")
	fc := &fileCredentials{username: "u", path: p, last: "start"}
	steps := []struct {
		name    string
		content *string // nil: remove the file
		want    string
	}{
		{"missing file keeps the start password", nil, "start"},
		{"new password", ptr("one\n"), "one"},
		{"empty file keeps the last", ptr(""), "one"},
		{"rotated", ptr("two"), "two"},
		{"too large keeps the last", ptr(strings.Repeat("x", keys.MaxFileSize+1)), "two"},
		{"removed keeps the last", nil, "two"},
	}
	for _, s := range steps {
		if s.content == nil {
			os.Remove(p)
		} else if err := os.WriteFile(p, []byte(*s.content), 0o600); err != nil {
			t.Fatal(err)
		}
		user, pw, err := fc.get(context.Background())
		if err != nil || user != "u" || pw != s.want {
			t.Errorf("%s: got %q, %q, %v; want u, %q", s.name, user, pw, err, s.want)
		}
	}
}

func ptr(s string) *string { return &s }

// A rotated REDIS_PASSWORD_FILE is used by the next connection: after the
// server's password changes and its connections are dropped, the next
// command succeeds without a new client. A client given the password alone
// (the old behaviour) keeps failing: the control.
func TestPasswordFileRotation(t *testing.T) {
	s := redistest.Start(t, "--requirepass", "old-pw")
	file := filepath.Join(t.TempDir(), "redis-password")
	if err := os.WriteFile(file, []byte("old-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	rotating, err := New(Options{Mode: Standalone, Addrs: []string{s.Addr()}, Password: "old-pw", PasswordFile: file})
	if err != nil {
		t.Fatal(err)
	}
	defer rotating.Close()
	static, err := New(Options{Mode: Standalone, Addrs: []string{s.Addr()}, Password: "old-pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer static.Close()
	for _, c := range []redis.UniversalClient{rotating, static} {
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatalf("ping with the first password: %v", err)
		}
	}

	// Rotate: the Secret's file changes, then the server's password, and
	// the server drops every client connection (the admin's own survives:
	// CLIENT KILL skips the caller).
	if err := os.WriteFile(file+".new", []byte("new-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(file+".new", file); err != nil { // atomic, as a Secret volume swaps
		t.Fatal(err)
	}
	admin := s.Client()
	if err := admin.ConfigSet(ctx, "requirepass", "new-pw").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "normal").Err(); err != nil {
		t.Fatal(err)
	}

	// The dropped pooled connection may fail the first attempt; go-redis
	// retries on a new connection, which authenticates with the new file.
	if err := rotating.Set(ctx, "rotated", "yes", 0).Err(); err != nil {
		t.Fatalf("command after rotation: %v (the new password file was not used)", err)
	}
	if got := admin.Get(ctx, "rotated").Val(); got != "yes" {
		t.Fatalf("rotated = %q", got)
	}
	if err := static.Ping(ctx).Err(); err == nil || !isAuthError(err) {
		t.Fatalf("client with a fixed password: %v, want an auth failure (else the test proves nothing)", err)
	}
}

func isAuthError(err error) bool {
	msg := err.Error()
	return bytes.Contains([]byte(msg), []byte("WRONGPASS")) || strings.Contains(msg, "NOAUTH") || strings.Contains(msg, "invalid password")
}
