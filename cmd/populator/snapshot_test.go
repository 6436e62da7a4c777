package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/statsig-populator/statsig-populator/internal/e2e"
	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/internal/redistest"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// runBin runs the binary and returns its exit code and combined output.
func runBin(t *testing.T, environ []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(e2e.Binary, args...)
	cmd.Env = environ
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatal(err)
	return -1, ""
}

// The whole cycle through the real binary: once fills Redis, export archives
// it, FLUSHALL empties it, import refills it, check finds every entry valid,
// and the ID lists come back byte for byte.
func TestSnapshotExportImportRoundTrip(t *testing.T) {
	s := e2e.NewStack(t)
	ctx := context.Background()
	list := fakecdn.SampleIDList(7, 200)
	s.CDN.PutIDList(keyA, "list_1", "file-123", 1, list)
	env := s.BaseEnv()
	runOnceOK(t, env)
	archive := filepath.Join(t.TempDir(), "snap.tar.gz")
	if code, out := runBin(t, env, "export", "--out", archive); code != 0 {
		t.Fatalf("export: exit %d\n%s", code, out)
	}
	raw, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []keys.SDKKey{keyA, keyB} {
		if bytes.Contains(raw, []byte(k.Reveal()[:20])) {
			t.Fatal("the archive holds a key's first 20 characters")
		}
	}
	s.Redis.FlushAll()
	code, out := runBin(t, env, "import", archive)
	if code != 0 || !strings.Contains(out, "all 6 configured") {
		t.Fatalf("import: exit %d\n%s", code, out)
	}
	if !s.AllCurrent() {
		t.Fatal("Redis does not hold the CDN's payloads after the import")
	}
	lt := keys.NewIDListTarget("", keyA, keys.Hashed, "list_1")
	if got := s.Redis.Client().Get(ctx, lt.Key).Val(); got != string(list) {
		t.Fatalf("list: %d bytes, want %d", len(got), len(list))
	}
	code, rows, all := checkJSON(t, env)
	if code != 0 || len(problems(rows)) != 0 {
		t.Fatalf("check after import: exit %d\n%s", code, all)
	}

	// Importing again writes nothing: Redis is as current as the archive.
	code, out = runBin(t, env, "import", archive)
	if code != 0 || !strings.Contains(out, "0 entries written") {
		t.Fatalf("second import: exit %d\n%s", code, out)
	}
}

// An archive older than what Redis holds writes nothing, and import says
// every key is current all the same (Redis lcut >= archive lcut).
func TestSnapshotImportOlderArchiveWritesNothing(t *testing.T) {
	s := e2e.NewStack(t)
	env := s.BaseEnv()
	runOnceOK(t, env)
	archive := filepath.Join(t.TempDir(), "old.tar.gz")
	if code, out := runBin(t, env, "export", "--out", archive); code != 0 {
		t.Fatalf("export: exit %d\n%s", code, out)
	}
	s.CDN.Change(keyA, 1000)
	runOnceOK(t, env)
	newer := s.Body(keyA, keys.V1)
	code, out := runBin(t, env, "import", archive)
	if code != 0 || !strings.Contains(out, "0 entries written") {
		t.Fatalf("import: exit %d\n%s", code, out)
	}
	tg := keys.Targets("", keyA, keys.V1, []keys.Schema{keys.Hashed})[0]
	if s.Redis.Client().HGet(context.Background(), tg.Key, "config").Val() != newer {
		t.Fatal("the older archive replaced a newer payload")
	}
}

// A damaged archive writes nothing and names the member; Redis down during
// import exits 3.
func TestSnapshotImportRefusesDamageAndRedisDown(t *testing.T) {
	s := e2e.NewStack(t)
	env := s.BaseEnv()
	runOnceOK(t, env)
	dir := t.TempDir()
	archive := filepath.Join(dir, "snap.tar.gz")
	if code, out := runBin(t, env, "export", "--out", archive); code != 0 {
		t.Fatalf("export: exit %d\n%s", code, out)
	}
	raw, _ := os.ReadFile(archive)
	truncated := filepath.Join(dir, "truncated.tar.gz")
	os.WriteFile(truncated, raw[:len(raw)*2/3], 0o600)
	s.Redis.FlushAll()
	code, out := runBin(t, env, "import", truncated)
	if code != exitFailure || !strings.Contains(out, "nothing was written") || !strings.Contains(out, "member") {
		t.Fatalf("truncated: exit %d\n%s", code, out)
	}
	if n := s.Redis.Client().DBSize(context.Background()).Val(); n != 0 {
		t.Fatalf("a truncated archive wrote %d keys", n)
	}
	if code, out := runBin(t, env, "import"); code != exitBadConfig {
		t.Fatalf("no file: exit %d\n%s", code, out)
	}

	down := e2e.Env(append(s.BaseEnv()[2:], "REDIS_URL=redis://127.0.0.1:"+itoa(redistest.FreePort(t))+"/0")...)
	code, out = runBin(t, down, "import", archive)
	if code != exitRedisUnavailable || !strings.Contains(out, "0 entries were written") {
		t.Fatalf("Redis down: exit %d\n%s", code, out)
	}
	code, out = runBin(t, down, "export", "--out", filepath.Join(dir, "x.tar.gz"))
	if code != exitRedisUnavailable {
		t.Fatalf("export with Redis down: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.tar.gz")); err == nil {
		t.Fatal("a failed export left an archive")
	}
}

// export --from-cdn needs no Redis at all; its archive imports like any other.
func TestSnapshotExportFromCDN(t *testing.T) {
	s := e2e.NewStack(t)
	list := fakecdn.SampleIDList(3, 20)
	s.CDN.PutIDList(keyB, "list_b", "file-b", 1, list)
	archive := filepath.Join(t.TempDir(), "cdn.tar.gz")
	noRedis := e2e.Env(append(s.BaseEnv()[2:], "REDIS_URL=redis://127.0.0.1:"+itoa(redistest.FreePort(t))+"/0")...)
	if code, out := runBin(t, noRedis, "export", "--from-cdn", "--out", archive); code != 0 {
		t.Fatalf("export --from-cdn: exit %d\n%s", code, out)
	}
	env := s.BaseEnv()
	code, out := runBin(t, env, "import", archive)
	if code != 0 {
		t.Fatalf("import: exit %d\n%s", code, out)
	}
	if !s.AllCurrent() {
		t.Fatal("not current after importing a CDN export")
	}
	lt := keys.NewIDListTarget("", keyB, keys.Prefix, "list_b")
	if got := s.Redis.Client().Get(context.Background(), lt.Key).Val(); got != string(list) {
		t.Fatalf("list: %q", got)
	}
}

// Import into a Redis Cluster: the same scripts, every key on its own slot.
func TestSnapshotImportCluster(t *testing.T) {
	s := e2e.NewStack(t)
	env := s.BaseEnv("STATSIG_ID_LISTS=false")
	runOnceOK(t, env)
	archive := filepath.Join(t.TempDir(), "snap.tar.gz")
	if code, out := runBin(t, env, "export", "--out", archive); code != 0 {
		t.Fatalf("export: exit %d\n%s", code, out)
	}
	c := redistest.StartCluster(t, 3)
	cenv := e2e.Env(append(s.BaseEnv("STATSIG_ID_LISTS=false")[2:], "REDIS_URL=", "REDIS_CLUSTER_ADDRS="+strings.Join(c.Addrs(), ","))...)
	code, out := runBin(t, cenv, "import", archive)
	if code != 0 {
		t.Fatalf("cluster import: exit %d\n%s", code, out)
	}
	cc := c.Client(t)
	for _, k := range []keys.SDKKey{keyA, keyB} {
		for _, v := range []keys.Version{keys.V1, keys.V2} {
			for _, tg := range keys.Targets("", k, v, []keys.Schema{keys.Hashed, keys.Prefix}) {
				if cc.HGet(context.Background(), tg.Key, "config").Val() != s.Body(k, v) {
					t.Fatalf("%s %s %s not imported", k, v, tg.Schema)
				}
			}
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
