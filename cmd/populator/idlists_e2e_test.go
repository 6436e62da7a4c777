package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/internal/e2e"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// ID lists through the real binary: once writes them and reports them,
// check reads them as the SDKs do and finds what breaks them, and the running
// worker keeps them current and answers for them on /status and /readyz.
func TestCheckIDLists(t *testing.T) {
	s := e2e.NewStack(t)
	ctx := context.Background()
	rdb := s.Redis.Client()
	s.CDN.PutIDList(keyA, "list_1", "123", 0, []byte("+ungWv48B\n+Ngi8oeRO\n"))
	base := s.BaseEnv()

	once := exec.Command(e2e.Binary, "once")
	once.Env = base
	out, err := once.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ID LISTS") {
		t.Fatalf("once: %v\n%s", err, out)
	}
	code, rows, all := checkJSON(t, base)
	idRows := 0
	for _, r := range rows {
		if r.Version == "id_lists" {
			idRows++
			if r.SDKKey == keyA.Redacted() && r.Size != 20 {
				t.Errorf("%s %s holds %d bytes, want 20", r.SDKKey, r.Schema, r.Size)
			}
		}
	}
	if code != 0 || idRows != 4 || len(problems(rows)) != 0 {
		t.Fatalf("exit %d, %d ID-list rows (want 2 keys × 2 schemas), problems %+v\n%s", code, idRows, problems(rows), all)
	}

	list := keys.NewIDListTarget("", keyA, keys.Hashed, "list_1")
	manifest := keys.NewManifestTarget("", keyB, keys.Prefix)
	cases := []struct {
		name string
		do   func()
		want string
	}{
		{"a list longer than announced", func() { rdb.Append(ctx, list.Key, "+AAAAAAAA\n") }, "announces 20 bytes, 30 are stored"},
		{"a list that lost its first byte", func() { rdb.SetRange(ctx, list.Key, 0, "x") }, "does not start with + or -"},
		{"a list under another fileID", func() { rdb.Set(ctx, list.FileIDKey, "456", 0) }, "another fileID"},
		{"a list gone", func() { rdb.Del(ctx, list.Key) }, "announced but not stored"},
		{"a manifest gone", func() { rdb.Del(ctx, manifest.Key) }, "no ID-list manifest"},
		{"a manifest that is not JSON", func() { rdb.HSet(ctx, manifest.Key, "config", "[1,2") }, "not a JSON object"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s.Redis.FlushAll()
			runOnceOK(t, base)
			c.do()
			code, rows, all := checkJSON(t, base)
			bad := problems(rows)
			if code != exitFailure || len(bad) != 1 || !strings.Contains(bad[0].Problem, c.want) {
				t.Fatalf("exit %d, problems %+v, want one with %q\n%s", code, bad, c.want, all)
			}
		})
	}
}

func TestWorkerKeepsIDListsCurrent(t *testing.T) {
	s := e2e.NewStack(t)
	ctx := context.Background()
	rdb := s.Redis.Client()
	s.CDN.PutIDList(keyA, "list_1", "123", 0, []byte("+ungWv48B\n+Ngi8oeRO\n"))
	admin := e2e.FreeAddr(t)
	start(t, s.BaseEnv("ADMIN_ADDR="+admin, "ID_LISTS_POLL_INTERVAL=300ms"))
	list := keys.NewIDListTarget("", keyA, keys.Hashed, "list_1")
	waitFor(t, "ready", 10*time.Second, func() bool { c, _ := adminGet(admin, "/readyz"); return c == 200 })
	if v, _ := rdb.Get(ctx, list.Key).Result(); v != "+ungWv48B\n+Ngi8oeRO\n" {
		t.Fatalf("ready, but the list holds %q", v)
	}
	_, status := adminGet(admin, "/status")
	if !strings.Contains(status, `"id_lists":[`) || !strings.Contains(status, `"lists":1`) {
		t.Fatalf("/status lacks the ID lists: %s", status)
	}
	s.CDN.AppendIDList(keyA, "list_1", []byte("-ungWv48B\n"))
	waitFor(t, "append in Redis", 5*time.Second, func() bool {
		v, _ := rdb.Get(ctx, list.Key).Result()
		return strings.HasSuffix(v, "-ungWv48B\n")
	})
	s.Redis.FlushAll()
	waitFor(t, "healed after FLUSHALL", 5*time.Second, func() bool {
		v, _ := rdb.Get(ctx, list.Key).Result()
		return v == "+ungWv48B\n+Ngi8oeRO\n-ungWv48B\n"
	})
}

// With REDIS_FORMATS=string the manifest is a STRING beside its marker, and
// once and check agree on it.
func TestCheckIDListsStringFormat(t *testing.T) {
	s := e2e.NewStack(t)
	s.CDN.PutIDList(keyA, "list_1", "123", 0, []byte("+ungWv48B\n"))
	base := s.BaseEnv("REDIS_FORMATS=string")
	runOnceOK(t, base)
	code, rows, all := checkJSON(t, base)
	n := 0
	for _, r := range rows {
		if r.Version == "id_lists" && r.Format == "string" {
			n++
		}
	}
	if code != 0 || n != 4 {
		t.Fatalf("exit %d, %d string-format ID-list rows, want 4\n%s", code, n, all)
	}
	mt := keys.NewManifestTarget("", keyA, keys.Hashed).InFormat(keys.String)
	if v, _ := s.Redis.Client().Get(context.Background(), mt.Key).Result(); !strings.Contains(v, `"fileID":"123"`) {
		t.Fatalf("string manifest holds %q", v)
	}
}
