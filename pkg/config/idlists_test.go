package config

import (
	"strings"
	"testing"
	"time"
)

// Issue 12: STATSIG_ID_LISTS and ID_LISTS_POLL_INTERVAL.
func TestIDListSettings(t *testing.T) {
	base := defaults(t)
	base.SDKKeys = keyA
	cases := []struct {
		name  string
		mod   func(*Env)
		want  []string // variables with problems
		on    bool
		every time.Duration
		hints []string
	}{
		{"default: on with v1 and sfp", func(e *Env) {}, nil, true, time.Minute, nil},
		{"default: off without v1", func(e *Env) { e.DCSVersions = "v2" }, nil, false, time.Minute, nil},
		{"default: off with node-redis", func(e *Env) { e.RedisFormats = "sfp,node-redis" }, nil, false, time.Minute, nil},
		{"default: on with string", func(e *Env) { e.RedisFormats = "string" }, nil, true, time.Minute, nil},
		{"default: off with two formats", func(e *Env) { e.RedisFormats = "string,node-redis" }, nil, false, time.Minute, nil},
		{"explicit false", func(e *Env) { e.IDLists = "false" }, nil, false, time.Minute, nil},
		{"explicit true without v1", func(e *Env) { e.IDLists, e.DCSVersions = "true", "v2" }, nil, true, time.Minute, nil},
		{"interval 30s", func(e *Env) { e.IDListsPollInterval = "30s" }, nil, true, 30 * time.Second, nil},
		{"explicit true with node-redis", func(e *Env) { e.IDLists, e.RedisFormats = "true", "node-redis" }, []string{"STATSIG_ID_LISTS"}, false, 0,
			[]string{"sfp or the string layout, alone", "node-redis", "STATSIG_ID_LISTS=false"}},
		{"explicit true with string", func(e *Env) { e.IDLists, e.RedisFormats = "true", "string" }, nil, true, time.Minute, nil},
		{"not a boolean", func(e *Env) { e.IDLists = "sometimes" }, []string{"STATSIG_ID_LISTS"}, false, 0, []string{"not true or false"}},
		{"interval 50ms", func(e *Env) { e.IDListsPollInterval = "50ms" }, []string{"ID_LISTS_POLL_INTERVAL"}, false, 0, []string{"outside"}},
		{"interval text", func(e *Env) { e.IDListsPollInterval = "hourly" }, []string{"ID_LISTS_POLL_INTERVAL"}, false, 0, nil},
		// A TTL shorter than the ID-list interval is fine: ID-list keys get
		// at least three intervals (wiring.IDListTTL).
		{"short ttl", func(e *Env) { e.RedisKeyTTL = "20s" }, nil, true, time.Minute, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := base
			c.mod(&env)
			cfg, err := parseWant(t, env, c.want, c.hints)
			if err == nil && (cfg.IDLists != c.on || cfg.IDListsPollInterval != c.every) {
				t.Errorf("IDLists %v every %s, want %v every %s", cfg.IDLists, cfg.IDListsPollInterval, c.on, c.every)
			}
		})
	}
}

// STATSIG_API_URL=file:///…: an absolute, clean local path, or a clear
// problem; the base URL is then the offline source's, with no cleartext
// warning (nothing leaves the process).
func TestSnapshotAPIURL(t *testing.T) {
	base := defaults(t)
	base.SDKKeys = keyA
	ok := []struct{ url, path string }{
		{"file:///var/lib/snap/archive.tar.gz", "/var/lib/snap/archive.tar.gz"},
		{"file://localhost/srv/a.tgz", "/srv/a.tgz"},
		{"FILE:///srv/a.tgz", "/srv/a.tgz"},
	}
	for _, c := range ok {
		env := base
		env.APIURL = c.url
		cfg, err := env.Parse(noFile, true)
		if err != nil || cfg.SnapshotPath != c.path || cfg.APIURL != "http://snapshot.invalid" || len(cfg.Warnings) != 0 {
			t.Errorf("%s: path %q, base %q, warnings %v, err %v", c.url, cfg.SnapshotPath, cfg.APIURL, cfg.Warnings, err)
		}
	}
	bad := []string{
		"file:relative/archive.tar.gz",
		"file://",
		"file:///",
		"file://cdn.example.com/archive.tar.gz",
		"file:///srv/../etc/passwd",
		"file:///srv//a.tgz",
		"file:///srv/a.tgz?x=1",
		"file:///srv/a.tgz#frag",
		"file:///srv/%zz",
		"file:///" + strings.Repeat("a/", 5000) + "x",
	}
	for _, u := range bad {
		env := base
		env.APIURL = u
		_, err := env.Parse(noFile, true)
		if got := problemVars(t, err); strings.Join(got, ",") != "STATSIG_API_URL" {
			t.Errorf("%.60q: problems %v, want STATSIG_API_URL\n%v", u, got, err)
		}
	}
}
