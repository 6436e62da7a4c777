package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/internal/e2e"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// STATSIG_API_URL=file:///…: the worker keeps Redis current from a snapshot
// archive with no CDN, applies a newer archive without a restart, and keeps
// serving the last good one when a damaged one replaces it.
func TestOfflineSourceFromArchive(t *testing.T) {
	s := e2e.NewStack(t)
	ctx := context.Background()
	s.CDN.PutIDList(keyA, "list_1", "123", 0, []byte("+ungWv48B\n"))
	dir := t.TempDir()
	archive := filepath.Join(dir, "snapshot.tar.gz")
	export := func() {
		t.Helper()
		tmp := filepath.Join(dir, "next.tar.gz")
		if code, out := runBin(t, s.BaseEnv("REDIS_URL=redis://127.0.0.1:1/0"), "export", "--from-cdn", "--out", tmp); code != 0 {
			t.Fatalf("export --from-cdn: exit %d\n%s", code, out)
		}
		if err := os.Rename(tmp, archive); err != nil {
			t.Fatal(err)
		}
	}
	export()

	// The CDN is out of reach from here on: the worker's only source is the
	// archive (an unroutable CDN URL would not even be tried).
	admin := e2e.FreeAddr(t)
	offline := s.BaseEnv("STATSIG_API_URL=file://"+archive, "ADMIN_ADDR="+admin, "ID_LISTS_POLL_INTERVAL=300ms")
	s.CDN.ResetLog()
	p := start(t, offline)
	waitFor(t, "Redis filled from the archive", 10*time.Second, s.AllCurrent)
	waitFor(t, "ready", 10*time.Second, func() bool { c, _ := adminGet(admin, "/readyz"); return c == 200 })
	list := keys.NewIDListTarget("", keyA, keys.Hashed, "list_1")
	if v, _ := s.Redis.Client().Get(ctx, list.Key).Result(); v != "+ungWv48B\n" {
		t.Fatalf("ID list from the archive: %q", v)
	}
	if n := len(s.CDN.Requests()); n != 0 {
		t.Fatalf("the worker asked the CDN %d times in offline mode", n)
	}

	// A newer archive is applied without a restart.
	s.CDN.Change(keyA, 1000)
	s.CDN.AppendIDList(keyA, "list_1", []byte("-ungWv48B\n"))
	export()
	took := waitFor(t, "newer archive applied", 10*time.Second, func() bool {
		v, _ := s.Redis.Client().Get(ctx, list.Key).Result()
		return s.Current(keyA) && v == "+ungWv48B\n-ungWv48B\n"
	})
	t.Logf("a replaced archive reached Redis after %v", took)

	// A damaged one changes nothing and is said loudly.
	want := s.Redis.Client().HGetAll(ctx, keys.Targets("", keyA, keys.V1, []keys.Schema{keys.Hashed})[0].Key).Val()
	b, _ := os.ReadFile(archive)
	b[len(b)/2] ^= 0xff
	os.WriteFile(filepath.Join(dir, "bad.tar.gz"), b, 0o600)
	os.Rename(filepath.Join(dir, "bad.tar.gz"), archive)
	waitFor(t, "refusal logged", 10*time.Second, func() bool { return strings.Contains(p.Logs(), "archive refused") })
	time.Sleep(time.Second)
	got := s.Redis.Client().HGetAll(ctx, keys.Targets("", keyA, keys.V1, []keys.Schema{keys.Hashed})[0].Key).Val()
	if got["lcut"] != want["lcut"] || got["config"] != want["config"] {
		t.Fatal("a damaged archive changed Redis")
	}
	if c, _ := adminGet(admin, "/readyz"); c != 200 {
		t.Fatalf("/readyz %d while the last good archive is served", c)
	}
}
