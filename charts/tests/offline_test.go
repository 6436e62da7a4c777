package tests

import (
	"strings"
	"testing"
)

// statsig.offlineSnapshot mounts the archive and points STATSIG_API_URL at
// it, from a ConfigMap, a Secret or any volume; two sources are refused.
func TestOfflineSnapshot(t *testing.T) {
	cases := []struct {
		name, values, volumeKey string
	}{
		{"configmap", "statsig: {offlineSnapshot: {existingConfigMap: snap}}", "configMap"},
		{"secret", "statsig: {offlineSnapshot: {existingSecret: snap, key: archive.tgz}}", "secret"},
		{"volume", "statsig: {offlineSnapshot: {volume: {persistentVolumeClaim: {claimName: snaps}}}}", "persistentVolumeClaim"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := mustRender(t, valuesFile(t, "default.yaml"), c.values)
			env := configOf(t, r)
			key := "snapshot.tar.gz"
			if c.name == "secret" {
				key = "archive.tgz"
			}
			if got := env["STATSIG_API_URL"]; got != "file:///etc/statsig-populator/snapshot/"+key {
				t.Errorf("STATSIG_API_URL = %q", got)
			}
			d := r.one(t, "Deployment")
			vols, _ := dig(d.U, "spec", "template", "spec", "volumes").([]any)
			found := false
			for _, v := range vols {
				m, _ := v.(map[string]any)
				if m["name"] == "offline-snapshot" && m[c.volumeKey] != nil {
					found = true
				}
			}
			mounts, _ := dig(d.U, "spec", "template", "spec", "containers", 0, "volumeMounts").([]any)
			mounted := false
			for _, v := range mounts {
				m, _ := v.(map[string]any)
				if m["name"] == "offline-snapshot" && m["mountPath"] == "/etc/statsig-populator/snapshot" {
					mounted = true
				}
			}
			if !found || !mounted {
				t.Errorf("volume %v, mount %v", found, mounted)
			}
		})
	}
	if _, err := render(t, valuesFile(t, "default.yaml"), "statsig: {offlineSnapshot: {existingConfigMap: a, existingSecret: b}}"); err == nil ||
		!strings.Contains(err.Error(), "statsig.offlineSnapshot") {
		t.Errorf("two sources: %v", err)
	}
	if env := configOf(t, mustRender(t, valuesFile(t, "default.yaml"))); env["STATSIG_API_URL"] != "https://api.statsigcdn.com" {
		t.Errorf("default STATSIG_API_URL %q", env["STATSIG_API_URL"])
	}
}
