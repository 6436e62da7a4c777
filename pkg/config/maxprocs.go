package config

import (
	"os"
	"runtime"
)

// DefaultMaxProcs runs the worker on one scheduler thread unless GOMAXPROCS
// says otherwise. The worker waits on the network nearly all the time; with
// more threads than it keeps busy, a goroutine it wakes (a poller, net/http's
// reader and writer, go-redis) can wake an idle thread too, where one thread
// runs them in turn. docs/performance.md ("One scheduler thread") has the
// measurements: less memory and less CPU at low load, and how busy the one
// thread is at 10,000 keys. Go's own default is every CPU of the machine, or
// of the container's CPU limit but at least 2: on a large node without a
// limit, dozens of threads for a fraction of a core. GOMAXPROCS in the
// environment wins, as for any Go program.
func DefaultMaxProcs() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
}
