// Package deploy checks the repository's docker-compose.yml, .env.example and keys.txt.example
// with compose-go, the loader Docker Compose itself uses. It is a Go module of its own so the
// worker's go.mod does not carry compose-go's dependencies.
//
//	cd deploy && go test ./...
package deploy

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

const (
	root          = ".."
	secretsDir    = "/run/secrets/"
	keysFileVar   = "STATSIG_SERVER_SDK_KEYS_FILE"
	keysVar       = "STATSIG_SERVER_SDK_KEYS"
	defaultAdmin  = "8080"
	redisService  = "redis"
	workerService = "populator"
	demoService   = "demo"
)

// loadProject loads docker-compose.yml the way the README's instructions run it: in a directory
// holding .env copied from .env.example and keys.txt copied from keys.txt.example. A copy, so a
// developer's own .env and keys.txt (real keys) are never read by the test.
func loadProject(t *testing.T, profiles ...string) (*types.Project, string) {
	t.Helper()
	dir := t.TempDir()
	for src, dst := range map[string]string{
		"docker-compose.yml": "docker-compose.yml",
		".env.example":       ".env",
		"keys.txt.example":   "keys.txt",
	} {
		b, err := os.ReadFile(filepath.Join(root, src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(dir, "docker-compose.yml")},
		cli.WithWorkingDirectory(dir),
		cli.WithEnvFiles(filepath.Join(dir, ".env")),
		cli.WithDotEnv,
		cli.WithProfiles(profiles),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml with profiles %v does not load: %v", profiles, err)
	}
	return p, dir
}

func serviceNames(p *types.Project) []string {
	names := p.ServiceNames()
	slices.Sort(names)
	return names
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("service %s: %v", name, err)
	}
	return s
}

func env(s types.ServiceConfig, name string) (string, bool) {
	v, ok := s.Environment[name]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

// publishes reports whether the service publishes container port target on some host port.
func publishes(s types.ServiceConfig, target string) bool {
	for _, p := range s.Ports {
		if p.Published != "" && strconv.FormatUint(uint64(p.Target), 10) == target {
			return true
		}
	}
	return false
}

// checkBuiltFromDockerfile: the service's image is built from the repository's Dockerfile with
// the repository as context.
func checkBuiltFromDockerfile(t *testing.T, s types.ServiceConfig, dir string) {
	t.Helper()
	if s.Build == nil {
		t.Errorf("%s has no build section: it would pull an image instead of building this checkout", s.Name)
		return
	}
	if filepath.Clean(s.Build.Context) != filepath.Clean(dir) {
		t.Errorf("%s: build context %s, want the repository root (.)", s.Name, s.Build.Context)
	}
	if s.Build.Dockerfile != "Dockerfile" {
		t.Errorf("%s: dockerfile %q, want Dockerfile", s.Name, s.Build.Dockerfile)
	}
	if _, err := os.Stat(filepath.Join(root, s.Build.Dockerfile)); err != nil {
		t.Errorf("%s: %v", s.Name, err)
	}
}

var pinnedRedis = regexp.MustCompile(`^redis:\d+\.\d+(\.\d+)?-alpine@sha256:[0-9a-f]{64}$`)

// TestComposeStack: `docker compose up` runs Redis and the worker, the worker's keys come only
// from the secret file, and it writes to the redis service once that is healthy.
func TestComposeStack(t *testing.T) {
	p, dir := loadProject(t)
	if got := serviceNames(p); !slices.Equal(got, []string{workerService, redisService}) {
		t.Fatalf("services without a profile: %v, want [populator redis] (demo only under --profile demo)", got)
	}

	redis := service(t, p, redisService)
	if !pinnedRedis.MatchString(redis.Image) {
		t.Errorf("redis image %q is not pinned as redis:VERSION-alpine@sha256:<digest>", redis.Image)
	}
	if redis.HealthCheck == nil || len(redis.HealthCheck.Test) == 0 || redis.HealthCheck.Disable {
		t.Error("redis has no healthcheck: service_healthy would never be reached")
	}

	w := service(t, p, workerService)
	checkBuiltFromDockerfile(t, w, dir)

	// The keys: a compose secret from ./keys.txt, read through the keys-file variable.
	if len(w.Secrets) != 1 {
		t.Fatalf("populator has %d secrets, want 1 (the SDK keys file)", len(w.Secrets))
	}
	sec := w.Secrets[0]
	target := sec.Target
	if target == "" {
		target = sec.Source // compose mounts it at /run/secrets/<source>
	}
	if !strings.HasPrefix(target, "/") {
		target = secretsDir + target
	}
	def, ok := p.Secrets[sec.Source]
	if !ok {
		t.Fatalf("secret %s is not defined at the top level", sec.Source)
	}
	if filepath.Clean(def.File) != filepath.Join(dir, "keys.txt") {
		t.Errorf("secret %s comes from %q, want ./keys.txt", sec.Source, def.File)
	}
	if v, _ := env(w, keysFileVar); v != target {
		t.Errorf("populator: %s=%q, want the mounted secret %s", keysFileVar, v, target)
	}
	for _, s := range p.Services {
		if v, ok := env(s, keysVar); ok && v != "" {
			t.Errorf("%s sets %s: SDK keys must come only from the secret file", s.Name, keysVar)
		}
	}

	// Redis: the redis service, on its port.
	raw, _ := env(w, "REDIS_URL")
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "redis" || u.Hostname() != redisService || (u.Port() != "" && u.Port() != "6379") {
		t.Errorf("populator: REDIS_URL=%q, want redis://redis:6379/… (the redis service)", raw)
	}
	if u != nil && u.User != nil {
		t.Errorf("populator: REDIS_URL carries credentials")
	}
	dep, ok := w.DependsOn[redisService]
	if !ok || dep.Condition != types.ServiceConditionHealthy {
		t.Errorf("populator depends_on redis = %+v, want condition service_healthy", dep)
	}

	// The admin port (ADMIN_ADDR) is published.
	admin, ok := env(w, "ADMIN_ADDR")
	port := defaultAdmin
	if ok {
		_, port, err = net.SplitHostPort(admin)
		if err != nil || port == "" {
			t.Errorf("populator: ADMIN_ADDR=%q is not host:port (empty turns the admin port off)", admin)
		}
	}
	if !publishes(w, port) {
		t.Errorf("populator does not publish the admin port %s: %+v", port, w.Ports)
	}
	if !publishes(redis, "6379") {
		t.Errorf("redis does not publish 6379 for SDKs on this machine: %+v", redis.Ports)
	}
}

// TestComposeDemo: under --profile demo, `populator demo` runs alone: no key, no redis service,
// its Redis and admin ports published.
func TestComposeDemo(t *testing.T) {
	p, dir := loadProject(t, "demo")
	if got := serviceNames(p); !slices.Equal(got, []string{demoService, workerService, redisService}) {
		t.Fatalf("services under --profile demo: %v, want [demo populator redis]", got)
	}
	d := service(t, p, demoService)
	checkBuiltFromDockerfile(t, d, dir)
	if len(d.Command) == 0 || d.Command[0] != "demo" {
		t.Fatalf("demo runs %q, want populator demo …", d.Command)
	}
	if len(d.DependsOn) > 0 {
		t.Errorf("demo depends on %v: it needs no other service", d.DependsOn)
	}
	if len(d.Secrets) > 0 || len(d.EnvFiles) > 0 {
		t.Error("demo reads secrets or .env: it needs no key and no settings")
	}
	if v, ok := env(d, keysVar); ok || v != "" {
		t.Errorf("demo sets %s", keysVar)
	}
	flags := map[string]string{}
	for i := 1; i+1 < len(d.Command); i++ {
		if strings.HasPrefix(d.Command[i], "--") {
			flags[d.Command[i]] = d.Command[i+1]
		}
	}
	for flag, fallback := range map[string]string{"--redis-addr": "6379", "--admin-addr": defaultAdmin} {
		port := fallback
		if addr, ok := flags[flag]; ok {
			host, p, err := net.SplitHostPort(addr)
			if err != nil || host == "127.0.0.1" || host == "localhost" {
				t.Errorf("demo %s %s: want a wildcard host (0.0.0.0:port), or the port is unreachable from outside the container", flag, addr)
			}
			port = p
		} else if flag == "--redis-addr" {
			t.Error("demo has no --redis-addr: its Redis would listen on loopback inside the container")
		}
		if !publishes(d, port) {
			t.Errorf("demo does not publish port %s (%s): %+v", port, flag, d.Ports)
		}
	}
}

// secretKey is what a real server secret key looks like (secret- and a long random tail).
var secretKey = regexp.MustCompile(`secret-[A-Za-z0-9]{12,}`)

// TestNoKeysInFiles: no SDK key is written in the compose file or the env example, and the keys
// example holds no key line at all (only comments), so copying it configures nothing by accident.
func TestNoKeysInFiles(t *testing.T) {
	for _, name := range []string{"docker-compose.yml", ".env.example", "keys.txt.example"} {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		if m := secretKey.Find(b); m != nil {
			t.Errorf("%s holds something shaped like a server secret key (%.10s…)", name, m)
		}
		for i, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if name == "keys.txt.example" && line != "" && !strings.HasPrefix(line, "#") {
				t.Errorf("keys.txt.example:%d: %q is not a comment: the example must configure no key", i+1, line)
			}
			if name == ".env.example" && strings.HasPrefix(line, keysVar+"=") {
				t.Errorf(".env.example:%d sets %s: keys go only in keys.txt", i+1, keysVar)
			}
		}
	}
}
