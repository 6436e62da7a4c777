package poller

import (
	"testing"
	"unsafe"
)

// A worker holds one job per SDK key and version for its whole life: keep it
// within the 192-byte allocation size class (it was 288 with a full Status).
func TestJobSize(t *testing.T) {
	if size := unsafe.Sizeof(job{}); size > 192 {
		t.Errorf("job is %d bytes, want at most 192", size)
	}
}
