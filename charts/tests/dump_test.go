package tests

import (
	"os"
	"testing"
)

// TestDump prints the rendering of DUMP_VALUES (a file in testdata/values) for a human to read:
// DUMP_VALUES=tls.yaml go test -run TestDump -v
func TestDump(t *testing.T) {
	name := os.Getenv("DUMP_VALUES")
	if name == "" {
		t.Skip("set DUMP_VALUES=<file in testdata/values> to print a rendering")
	}
	r := mustRender(t, valuesFile(t, name))
	t.Log("\n" + r.Text + "\n--- NOTES\n" + r.Notes)
}
