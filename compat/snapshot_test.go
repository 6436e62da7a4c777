package compat

// A real SDK starting from a Redis that only `populator import` filled: the
// archive (exported from the CDN, no Redis involved) is the whole source, so
// what statsig-node reads proves that import writes the layout byte for byte
// as the polling worker does.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

func TestStatsigNodeFromImportedSnapshot(t *testing.T) {
	t.Parallel()
	key := keys.MustParse("secret-compatSnapshot01abcdefghij")
	s := newStack(t)
	p := fakecdn.Project{Lcut: baseLcut, Value: 3}
	s.cdn.SetProject(key, p)
	archive := filepath.Join(t.TempDir(), "snap.tar.gz")
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"STATSIG_SERVER_SDK_KEYS=" + key.Reveal(),
		"STATSIG_API_URL=" + s.cdnURL,
		"REDIS_URL=" + s.redis.URL(),
		"REDIS_FORMATS=sfp", "REDIS_KEY_SCHEMAS=hashed", "STATSIG_DCS_VERSIONS=v1",
		"FETCH_TIMEOUT=5s",
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(populatorBin, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("populator %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("export", "--from-cdn", "--out", archive)
	// The CDN changes after the export: the SDK must see the archive's
	// project, not the CDN's, since nothing but import wrote to Redis.
	s.change(key)
	if n := s.redis.Client().DBSize(t.Context()).Val(); n != 0 {
		t.Fatalf("Redis holds %d keys before the import", n)
	}
	run("import", archive)

	dcsKey := keys.DCSKey("", keys.V1, keys.PlainText, keys.Hashed.ID(key))
	sdk, init := startNode(t, "statsig-node", "legacy.mjs", s.nodeEnv(key,
		"GATE_PASS="+fakecdn.GatePass, "GATE_FAIL="+fakecdn.GateFail, "LAYOUT=sfp", "LOCAL_MODE=1"))
	if !init.Success || deref(init.Source) != "DataAdapter" {
		t.Fatalf("initialize() = {success: %v, source: %s, error: %s}, want success from DataAdapter",
			init.Success, deref(init.Source), deref(init.Error))
	}
	assertProject(t, "statsig-node from the imported snapshot", init.Eval, p)
	bye := sdk.quit()
	assertOnlyKeys(t, "statsig-node", bye.Calls.Get, dcsKey)
	s.trip.assertUntouched(t)
}
