package tests

import "testing"

// TestGoldenDefault pins what `helm template` renders for the default values (plus one SDK key),
// and the NOTES shown after install.
func TestGoldenDefault(t *testing.T) {
	r := mustRender(t, valuesFile(t, "default.yaml"))
	golden(t, "default.yaml", r.Text)
	golden(t, "default-notes.txt", r.Notes)
}

// TestGoldenCronjob pins the rendering of the CronJob mode.
func TestGoldenCronjob(t *testing.T) {
	r := mustRender(t, valuesFile(t, "cronjob.yaml"))
	golden(t, "cronjob.yaml", r.Text)
	golden(t, "cronjob-notes.txt", r.Notes)
}
