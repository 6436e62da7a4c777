package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// problemVars is the variables of err's problems, in order; nil for nil.
// parseWant parses env and fails the test unless exactly the variables in
// want have problems, and every hint is in the message.
func parseWant(t *testing.T, env Env, want, hints []string) (Config, error) {
	t.Helper()
	cfg, err := env.Parse(noFile, true)
	if got := problemVars(t, err); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("problems with %v, want %v\n%v", got, want, err)
	}
	for _, h := range hints {
		if !strings.Contains(err.Error(), h) {
			t.Errorf("message lacks %q:\n%v", h, err)
		}
	}
	return cfg, err
}

func problemVars(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var p Problems
	if !errors.As(err, &p) {
		t.Fatalf("error %v is not Problems", err)
	}
	var out []string
	for _, pr := range p {
		out = append(out, pr.Var)
	}
	return out
}

// A variable set to the empty string is treated as unset: every variable
// with a default gets it, except ADMIN_ADDR, whose empty value turns the admin
// server off (README).
func TestEmptyMeansUnset(t *testing.T) {
	base := defaults(t)
	base.SDKKeys = keyA
	want, err := base.Parse(noFile, true)
	if err != nil {
		t.Fatal(err)
	}
	et := reflect.TypeOf(Env{})
	for i := 0; i < et.NumField(); i++ {
		f := et.Field(i)
		if _, ok := f.Tag.Lookup("default"); !ok {
			continue
		}
		name := f.Tag.Get("envconfig")
		t.Run(name, func(t *testing.T) {
			env := base
			reflect.ValueOf(&env).Elem().Field(i).SetString("")
			got, err := env.Parse(noFile, true)
			if err != nil {
				t.Fatalf("%s= : %v", name, err)
			}
			w := want
			if name == "ADMIN_ADDR" {
				w.AdminAddr = ""
			}
			if !reflect.DeepEqual(got, w) {
				t.Errorf("%s= gives %+v\nwant %+v", name, got, w)
			}
		})
	}
	// The same through the process environment, as envconfig reads it.
	t.Run("Load", func(t *testing.T) {
		t.Setenv("STATSIG_SERVER_SDK_KEYS", keyA)
		for _, v := range []string{"LOG_LEVEL", "REDIS_KEY_TTL", "POLL_INTERVAL", "STATSIG_API_URL", "REDIS_URL", "LOG_FORMAT"} {
			t.Setenv(v, "")
		}
		c, err := Load(true)
		if err != nil {
			t.Fatal(err)
		}
		if c.LogLevel != zerolog.InfoLevel || c.KeyTTL != 0 || c.PollInterval != 10*time.Second ||
			c.APIURL != "https://api.statsigcdn.com" || c.Redis.Addrs[0] != "127.0.0.1:6379" || c.LogFormat != "json" {
			t.Errorf("empty variables did not take their defaults: %+v", c)
		}
		t.Setenv("ADMIN_ADDR", "")
		if c, err := Load(true); err != nil || c.AdminAddr != "" {
			t.Errorf("ADMIN_ADDR= : %q, %v; want the admin server off", c.AdminAddr, err)
		}
	})
}

func TestValidation(t *testing.T) {
	base := defaults(t)
	base.SDKKeys = keyA
	cases := []struct {
		name  string
		mod   func(*Env)
		want  []string // variables with problems
		check func(Config) bool
	}{
		// REDIS_KEY_TTL: 0 in any spelling is "never expire".
		{"ttl 0", func(e *Env) { e.RedisKeyTTL = "0" }, nil, func(c Config) bool { return c.KeyTTL == 0 }},
		{"ttl 0s", func(e *Env) { e.RedisKeyTTL = "0s" }, nil, func(c Config) bool { return c.KeyTTL == 0 }},
		{"ttl 0h0m", func(e *Env) { e.RedisKeyTTL = "0h0m" }, nil, func(c Config) bool { return c.KeyTTL == 0 }},
		{"ttl -0s", func(e *Env) { e.RedisKeyTTL = "-0s" }, nil, func(c Config) bool { return c.KeyTTL == 0 }},
		{"ttl 24h", func(e *Env) { e.RedisKeyTTL = "24h" }, nil, func(c Config) bool { return c.KeyTTL == 24*time.Hour }},
		{"ttl negative", func(e *Env) { e.RedisKeyTTL = "-1s" }, []string{"REDIS_KEY_TTL"}, nil},
		{"ttl below a second", func(e *Env) { e.RedisKeyTTL = "500ms" }, []string{"REDIS_KEY_TTL"}, nil},
		{"ttl absurd", func(e *Env) { e.RedisKeyTTL = "100000h" }, []string{"REDIS_KEY_TTL"}, nil},

		// LOG_LEVEL: the five documented levels only.
		{"level trace", func(e *Env) { e.LogLevel = "trace" }, nil, func(c Config) bool { return c.LogLevel == zerolog.TraceLevel }},
		{"level WARN", func(e *Env) { e.LogLevel = "WARN" }, nil, func(c Config) bool { return c.LogLevel == zerolog.WarnLevel }},
		{"level error", func(e *Env) { e.LogLevel = "error" }, nil, func(c Config) bool { return c.LogLevel == zerolog.ErrorLevel }},
		{"level disabled", func(e *Env) { e.LogLevel = "disabled" }, []string{"LOG_LEVEL"}, nil},
		{"level fatal", func(e *Env) { e.LogLevel = "fatal" }, []string{"LOG_LEVEL"}, nil},
		{"level panic", func(e *Env) { e.LogLevel = "panic" }, []string{"LOG_LEVEL"}, nil},
		{"level -1", func(e *Env) { e.LogLevel = "-1" }, []string{"LOG_LEVEL"}, nil},
		{"level 3", func(e *Env) { e.LogLevel = "3" }, []string{"LOG_LEVEL"}, nil},
		{"level 99", func(e *Env) { e.LogLevel = "99" }, []string{"LOG_LEVEL"}, nil},

		// ADMIN_ADDR: host:port with a numeric port 0-65535, or empty.
		{"admin default", func(e *Env) { e.AdminAddr = ":8080" }, nil, func(c Config) bool { return c.AdminAddr == ":8080" }},
		{"admin any port", func(e *Env) { e.AdminAddr = "127.0.0.1:0" }, nil, nil},
		{"admin top port", func(e *Env) { e.AdminAddr = "[::1]:65535" }, nil, nil},
		{"admin port name", func(e *Env) { e.AdminAddr = ":abc" }, []string{"ADMIN_ADDR"}, nil},
		{"admin service name", func(e *Env) { e.AdminAddr = ":http" }, []string{"ADMIN_ADDR"}, nil},
		{"admin port too big", func(e *Env) { e.AdminAddr = ":99999" }, []string{"ADMIN_ADDR"}, nil},
		{"admin port 65536", func(e *Env) { e.AdminAddr = ":65536" }, []string{"ADMIN_ADDR"}, nil},
		{"admin negative port", func(e *Env) { e.AdminAddr = ":-1" }, []string{"ADMIN_ADDR"}, nil},
		{"admin no port", func(e *Env) { e.AdminAddr = "localhost:" }, []string{"ADMIN_ADDR"}, nil},
		{"admin no colon", func(e *Env) { e.AdminAddr = "8080" }, []string{"ADMIN_ADDR"}, nil},

		// The Redis pool follows the CDN concurrency.
		{"pool size", func(e *Env) { e.PollConcurrency = "10" }, nil, func(c Config) bool { return c.Redis.PoolSize == 10+redisPoolSpare }},
		{"pool size at the top", func(e *Env) { e.PollConcurrency = "10000" }, nil, func(c Config) bool { return c.Redis.PoolSize == 10000+redisPoolSpare }},
		{"absurd concurrency", func(e *Env) { e.PollConcurrency = "1000000" }, []string{"POLL_CONCURRENCY"}, nil},

		// Prefix-schema collisions: two keys with the same first 20 characters.
		{"keys colliding", func(e *Env) { e.SDKKeys = "secret-shared-prefix-one,secret-shared-prefix-two" }, []string{"STATSIG_SERVER_SDK_KEYS"}, nil},
		{"keys colliding, prefix only", func(e *Env) {
			e.SDKKeys, e.RedisKeySchemas = "secret-shared-prefix-one,secret-shared-prefix-two", "prefix"
		}, []string{"STATSIG_SERVER_SDK_KEYS"}, nil},
		{"keys colliding, hashed only", func(e *Env) {
			e.SDKKeys, e.RedisKeySchemas = "secret-shared-prefix-one,secret-shared-prefix-two", "hashed"
		}, nil, func(c Config) bool { return len(c.SDKKeys) == 2 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := base
			c.mod(&env)
			cfg, err := parseWant(t, env, c.want, nil)
			if err == nil && c.check != nil && !c.check(cfg) {
				t.Errorf("parsed %+v", cfg)
			}
			if err != nil && strings.Contains(err.Error(), "secret-shared-prefix") {
				t.Errorf("message shows 20 characters of a key:\n%v", err)
			}
		})
	}
}

// A collision between a key of the environment and one of the file is the
// file's problem; both keys are named, redacted.
func TestPrefixCollisionWithFile(t *testing.T) {
	env := defaults(t)
	one, two := keys.MustParse("secret-shared-prefix-one"), keys.MustParse("secret-shared-prefix-two")
	env.SDKKeys = one.Reveal()
	env.SDKKeysFile = "/keys"
	_, err := env.Parse(files(map[string]string{"/keys": two.Reveal() + "\n"}), true)
	if got := problemVars(t, err); strings.Join(got, ",") != "STATSIG_SERVER_SDK_KEYS_FILE" {
		t.Fatalf("problems with %v\n%v", got, err)
	}
	if msg := err.Error(); !strings.Contains(msg, one.Redacted()) || !strings.Contains(msg, two.Redacted()) {
		t.Errorf("message does not name both keys:\n%s", msg)
	}
}

func TestKeysFileByteOrderMark(t *testing.T) {
	env := defaults(t)
	env.SDKKeysFile = "/keys"
	c, err := env.Parse(files(map[string]string{"/keys": "\uFEFF" + keyB + "\r\n" + keyC + "\r\n"}), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.SDKKeys) != 2 || c.SDKKeys[0].Reveal() != keyB {
		t.Fatalf("keys = %v", c.SDKKeys)
	}
}

func TestAPIURL(t *testing.T) {
	base := defaults(t)
	base.SDKKeys = keyA
	cases := []struct {
		url      string
		wantURL  string // "" when a problem is expected
		wantWarn bool
		hint     string // in the problem
	}{
		{"https://api.statsigcdn.com", "https://api.statsigcdn.com", false, ""},
		{"https://mirror.internal/statsig/", "https://mirror.internal/statsig", false, ""},
		{"http://127.0.0.1:8080/", "http://127.0.0.1:8080", false, ""},
		{"http://127.9.9.9", "http://127.9.9.9", false, ""},
		{"http://localhost:9000", "http://localhost:9000", false, ""},
		{"http://LOCALHOST", "http://LOCALHOST", false, ""},
		{"http://[::1]:9000", "http://[::1]:9000", false, ""},
		{"http://cdn-mirror.internal", "http://cdn-mirror.internal", true, ""},
		{"http://10.0.0.5:8080", "http://10.0.0.5:8080", true, ""},
		{"http://localhost.evil.example", "http://localhost.evil.example", true, ""},
		{"https://user:hunter2pass@mirror.internal", "", false, "credentials"},
		{"https://hunter2token@mirror.internal", "", false, "credentials"},
		{"https://mirror.internal/v2?key=secret-abcdefghijklmnop", "", false, "query"},
		{"https://mirror.internal/?", "", false, "query"},
		{"https://mirror.internal/#section-x", "", false, "fragment"},
		{"ftp://mirror.internal", "", false, "https:// URL with a host"},
		{"mirror.internal/path", "", false, "https:// URL with a host"},
		{"not a url", "", false, "https:// URL with a host"},
		{"https://", "", false, "https:// URL with a host"},
		{"https://mirror.internal:99999", "", false, "port"},
		{"https://mirror.internal:0", "", false, "port"},
		{"https://[::1", "", false, "not a valid URL"},
	}
	for _, c := range cases {
		env := base
		env.APIURL = c.url
		cfg, err := env.Parse(noFile, true)
		if c.wantURL != "" {
			if err != nil {
				t.Errorf("%s: %v", c.url, err)
				continue
			}
			if cfg.APIURL != c.wantURL || (len(cfg.Warnings) > 0) != c.wantWarn {
				t.Errorf("%s: APIURL %q, warnings %q; want %q, warning %v", c.url, cfg.APIURL, cfg.Warnings, c.wantURL, c.wantWarn)
			}
			continue
		}
		if got := problemVars(t, err); strings.Join(got, ",") != "STATSIG_API_URL" && !strings.HasPrefix(strings.Join(got, ","), "STATSIG_API_URL,") {
			t.Errorf("%s: problems with %v, want STATSIG_API_URL", c.url, got)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.hint) {
			t.Errorf("%s: message lacks %q:\n%s", c.url, c.hint, msg)
		}
		// No part of the URL is quoted: not its credentials, host, path
		// or query.
		for _, part := range []string{"hunter2", "mirror.internal", "secret-abc", "/v2", "section-x", c.url} {
			if len(part) > len("https://") && strings.Contains(msg, part) {
				t.Errorf("%s: message quotes %q:\n%s", c.url, part, msg)
			}
		}
	}
}

// Every file read is capped: /dev/zero and a file over the limit are
// problems, all reported together, where they used to grow the process
// until the kernel killed it.
func TestFileSizeLimit(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("secret-aaaaaaaaaaaa\n"), keys.MaxFileSize/20+1), 0o600); err != nil {
		t.Fatal(err)
	}
	env := defaults(t)
	env.SDKKeys = keyA
	env.SDKKeysFile = "/dev/zero"
	env.RedisPasswordFile = big
	env.RedisSentinelPassF = "/dev/zero"
	env.RedisTLS = "true"
	env.RedisTLSCAFile = big
	env.RedisTLSCertFile, env.RedisTLSKeyFile = "/dev/zero", big
	env.StatsigCAFile = "/dev/zero"
	done := make(chan error, 1)
	go func() { _, err := env.Parse(keys.ReadFile, true); done <- err }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Parse did not return: a file read is not capped")
	}
	want := []string{"STATSIG_SERVER_SDK_KEYS_FILE", "REDIS_SENTINEL_PASSWORD_FILE", "REDIS_PASSWORD_FILE",
		"REDIS_TLS_CA_FILE", "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE", "STATSIG_CA_FILE"}
	if got := problemVars(t, err); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("problems with %v\nwant %v\n%v", got, want, err)
	}
	if n := strings.Count(err.Error(), "larger than the 4 MiB limit"); n != len(want) {
		t.Errorf("%d of %d messages say the limit:\n%v", n, len(want), err)
	}
}

func TestEveryProblemAtOnceNewRules(t *testing.T) {
	env := defaults(t)
	env.SDKKeys = "secret-shared-prefix-one secret-shared-prefix-two"
	env.APIURL = "https://user:pw12345678@mirror.internal?x=1"
	env.RedisURL = "redis://:hunter2pw@redis.internal:99999/0"
	env.RedisClusterAddrs = "a:70000"
	env.RedisKeyTTL = "-5s"
	env.AdminAddr = ":abc"
	env.LogLevel = "disabled"
	_, err := env.Parse(noFile, true)
	want := []string{"STATSIG_SERVER_SDK_KEYS", "STATSIG_API_URL", "STATSIG_API_URL", "REDIS_URL",
		"REDIS_CLUSTER_ADDRS", "REDIS_KEY_TTL", "ADMIN_ADDR", "LOG_LEVEL"}
	if got := problemVars(t, err); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("problems with %v\nwant %v\n%v", got, want, err)
	}
	for _, secret := range []string{"pw12345678", "hunter2pw", "user:pw", "mirror.internal", "secret-shared-prefix"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("message shows %q:\n%v", secret, err)
		}
	}
}
