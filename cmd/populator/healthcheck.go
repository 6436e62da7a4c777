package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/config"
)

// runHealthcheck asks the local admin port for /healthz (or /readyz with
// --ready) and exits 0 on 200, 1 otherwise: an exec probe and a Docker
// HEALTHCHECK for images without a shell or curl.
func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ready := fs.Bool("ready", false, "check /readyz instead of /healthz")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return exitError{exitBadConfig}
	}
	cfg, err := config.Load(false)
	if err != nil {
		fmt.Fprintln(stderr, "populator:", err)
		return exitError{exitBadConfig}
	}
	if cfg.AdminAddr == "" {
		fmt.Fprintln(stderr, "populator: ADMIN_ADDR is empty: the admin port is off")
		return exitError{exitBadConfig}
	}
	path := "/healthz"
	if *ready {
		path = "/readyz"
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+localAddr(cfg.AdminAddr)+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "populator: healthcheck:", err)
		return exitError{exitFailure}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprint(stdout, strings.TrimSpace(string(body))+"\n")
	if resp.StatusCode != http.StatusOK {
		return exitError{exitFailure}
	}
	return nil
}

// localAddr turns a listen address into one to dial on this host.
func localAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::", "[::]":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}
