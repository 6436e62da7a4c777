package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// InprocResult is the worker's packages profiled in-process (bench/cmd/inproc).
type InprocResult struct {
	Keys        int            `json:"keys"`
	Figures     map[string]any `json:"figures"`
	CPUTop      string         `json:"cpu_top"`
	CPUCumTop   string         `json:"cpu_cum_top"`
	AllocTop    string         `json:"alloc_top"`
	AllocCumTop string         `json:"alloc_cum_top"`
	InuseTop    string         `json:"inuse_top"` // live heap at the end of the window
	Error       string         `json:"error,omitempty"`
}

// runInproc profiles the worker's packages in-process at n keys against the
// fake CDN and a fresh Redis: a CPU profile and allocation sites over two
// intervals of steady state.
func (h *harness) runInproc(n int) *InprocResult {
	c := h.cfg
	res := &InprocResult{Keys: n}
	dir := filepath.Join(c.out, "logs", "inproc")
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		res.Error = err.Error()
		return res
	}
	keysFile := filepath.Join(dir, "keys.txt")
	if err := writeKeys(keysFile, keyNames(n)); err != nil {
		res.Error = err.Error()
		return res
	}
	defer os.Remove(keysFile)
	logf("inproc: the worker's packages in-process at %d keys, CPU profile over 2 intervals, then allocation sites over 2 more", n)
	rs, err := startRedis(dir)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer rs.stop()
	fake, api, err := h.startFake(dir, keysFile, c.Filler)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer fake.stop()
	cmd := exec.Command(filepath.Join(c.bin, "inproc"), "-out", dir, "-intervals", "2", "-fake", api)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, h.workerEnv(keysFile, api, rs, freePort())...)
	stderr, _ := os.Create(filepath.Join(dir, "inproc.log"))
	cmd.Stderr = stderr
	out, err := cmd.Output()
	stderr.Close()
	if err != nil {
		res.Error = "inproc: " + err.Error()
		return res
	}
	_ = json.Unmarshal(out, &res.Figures)
	pprofTop := func(args ...string) string {
		a := append([]string{"tool", "pprof", "-top", "-nodecount=30"}, args...)
		b, err := exec.Command("go", a...).Output()
		if err != nil {
			return "pprof failed: " + err.Error()
		}
		var lines []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Type:") && false {
				continue
			}
			lines = append(lines, strings.TrimRight(l, " "))
		}
		return strings.TrimSpace(strings.Join(lines, "\n"))
	}
	cpu := filepath.Join(dir, "inproc-cpu.pprof")
	before, after := filepath.Join(dir, "inproc-allocs-before.pprof"), filepath.Join(dir, "inproc-allocs-after.pprof")
	res.CPUTop = pprofTop(cpu)
	res.CPUCumTop = pprofTop("-cum", cpu)
	res.AllocTop = pprofTop("-sample_index=alloc_objects", "-base", before, after)
	res.AllocCumTop = pprofTop("-cum", "-sample_index=alloc_objects", "-base", before, after)
	res.InuseTop = pprofTop("-sample_index=inuse_space", after)
	for name, text := range map[string]string{"cpu": res.CPUTop, "cpu-cum": res.CPUCumTop, "allocs": res.AllocTop, "allocs-cum": res.AllocCumTop, "inuse": res.InuseTop} {
		_ = os.WriteFile(filepath.Join(c.out, "profile-inproc-"+name+".txt"), []byte(text+"\n"), 0o644)
	}
	logf("inproc: %s", strings.TrimSpace(string(out)))
	_ = strconv.Itoa
	return res
}
