// Command populator keeps Statsig download_config_specs payloads current in
// Redis, in the key layouts the Statsig SDK data adapters read.
//
//	populator [run]   poll and write until SIGTERM/SIGINT (the default)
//	populator once    one full cycle; exit 0 when every key is current in Redis
//	populator keys    the Redis keys written for each SDK key, and their readers
//	populator check   what Redis holds, read as the SDKs read it; exit 0 when valid,
//	                  1 when not, 3 when Redis cannot be read
//	populator export --out FILE [--from-cdn]
//	                  the configured keys' payloads and ID lists, from Redis (or the
//	                  CDN), into a verified snapshot archive (docs/snapshots.md)
//	populator import [--verify-only] FILE
//	                  verify a snapshot archive whole, then write it into Redis with
//	                  the worker's monotonic scripts; exit 0 when every key is current
//	populator healthcheck [--ready]  probe the local admin port (exit 0/1)
//	populator demo    the worker against an embedded, in-memory Redis and sample
//	                  projects (or your keys): try it with nothing but Go
//	populator version print the version
//	populator help    list subcommands and environment variables
//
// Configuration comes from environment variables (populator help lists them).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/statsig-populator/statsig-populator/pkg/config"
)

// version is stamped at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	config.DefaultMaxProcs()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	os.Exit(exitCode(err, os.Stderr))
}

// exitError carries a process exit code; its message (if any) was printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// Exit codes.
const (
	exitOK        = 0
	exitFailure   = 1 // a run or check found keys not current, or a runtime failure
	exitBadConfig = 2 // invalid configuration or usage
	// check could not read Redis at all (down, unreachable, refused the
	// credentials): distinct from 1 so that a probe or CI job can tell "Redis
	// holds bad entries" from "Redis could not be asked".
	exitRedisUnavailable = 3
)

func exitCode(err error, stderr io.Writer) int {
	var ee exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintln(stderr, "populator:", err)
		return exitFailure
	}
}

// run is the whole program, minus signal handling and os.Exit, so tests can
// call it. The environment is read by envconfig from the process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runWorker(ctx, stderr)
	case "once":
		return runOnce(ctx, stdout, stderr)
	case "keys":
		return runKeys(args, stdout, stderr)
	case "check":
		return runCheck(ctx, args, stdout, stderr)
	case "export":
		return runExport(ctx, args, stdout, stderr)
	case "import":
		return runImport(ctx, args, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, args, stdout, stderr)
	case "demo":
		return runDemo(ctx, args, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "populator", buildVersion())
		return nil
	case "help", "--help", "-help", "-h":
		return usage(stdout)
	default:
		fmt.Fprintf(stderr, "populator: unknown command %q\n\n", cmd)
		_ = usage(stderr)
		return exitError{exitBadConfig}
	}
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

func usage(w io.Writer) error {
	fmt.Fprint(w, `Usage: populator [command]

Commands:
  run       poll the Statsig CDN and keep Redis current until SIGTERM/SIGINT (default)
  once      run one full cycle for every key; exit 0 when all are current in Redis, 1 otherwise
  keys      print every Redis key written for each SDK key, and which SDK reads it
            (--sdk-key K shows K's names in full; --json for JSON lines)
  check     read Redis the way the SDKs do and report each entry; exit 0 when all are
            present and valid, 1 otherwise, 3 when Redis cannot be read (down,
            unreachable, credentials refused); never writes (--json for JSON lines)
  export --out FILE [--from-cdn]
            write the configured keys' payloads (and ID lists) from Redis, or straight
            from the CDN, into a snapshot archive (.tar.gz, replaced atomically); keys
            are named in it only by their SHA-256 (docs/snapshots.md)
  import [--verify-only] FILE
            verify a snapshot archive whole (digests, payload rules), then write the
            configured keys from it with the worker's scripts (never older over newer);
            exit 0 when every key and version is current, 1 otherwise, 3 when Redis
            cannot be reached; a damaged archive writes nothing
  healthcheck [--ready]
            ask the local admin port for /healthz (or /readyz); exit 0 on 200, 1 otherwise
  demo      run the worker against a Redis embedded in memory (for trying things only)
            and sample projects, or STATSIG_SERVER_SDK_KEYS; needs nothing but Go (--help)
  version   print the version
  help      this text

`)
	return usageEnv(w)
}
