package config

import (
	"os"
	"runtime"
)

// DefaultMaxProcs runs the worker on one scheduler thread unless GOMAXPROCS
// says otherwise. The worker waits on the network nearly all the time (under
// 0.1 core at 10,000 keys); with more threads than it keeps busy, a goroutine
// it wakes (a poller, net/http's reader and writer, go-redis) can wake an
// idle thread too, where one thread runs them in turn. Measured in
// docs/performance.md ("One scheduler thread"): about 2 MB less memory in
// every run, and from no difference to 45 % less CPU at low load on a noisy
// 2-core VM. Go's own default is every CPU of the machine, or of the
// container's CPU limit but at least 2: on a large node without a limit,
// dozens of threads for a fraction of a core. GOMAXPROCS in the environment
// wins, as for any Go program. At 10,000 keys × 2 versions every 10 s (2,000
// polls a second) the one thread is busy less than a tenth of the time.
func DefaultMaxProcs() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
}
