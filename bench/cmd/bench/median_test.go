package main

import "testing"

func TestMedianRun(t *testing.T) {
	run := func(cpu float64, rss int64, errs ...string) *RunResult {
		return &RunResult{Name: "worker-100", CPUCores: cpu, RSSMeanKB: rss, Errors: errs}
	}
	for _, tc := range []struct {
		name    string
		in      []*RunResult
		cpu     float64
		rss     int64
		repeats int
	}{
		{"one run is itself", []*RunResult{run(0.02, 100)}, 0.02, 100, 0},
		{"odd count: the middle CPU, the middle RSS", []*RunResult{run(0.09, 120), run(0.01, 100), run(0.02, 90)}, 0.02, 100, 3},
		{"even count: the lower middle", []*RunResult{run(0.04, 140), run(0.01, 100), run(0.03, 130), run(0.02, 90)}, 0.02, 100, 4},
		{"a failed repetition is left out", []*RunResult{run(0.05, 100), run(0, 0, "boom"), run(0.03, 80)}, 0.03, 80, 2},
		{"all failed: the last one", []*RunResult{run(0, 0, "a"), run(0, 0, "b")}, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := medianRun(tc.in)
			if m.CPUCores != tc.cpu || m.RSSMeanKB != tc.rss || len(m.Repeats) != tc.repeats {
				t.Errorf("medianRun = cpu %v rss %v repeats %d, want %v %v %d", m.CPUCores, m.RSSMeanKB, len(m.Repeats), tc.cpu, tc.rss, tc.repeats)
			}
			for _, r := range tc.in {
				if r == m && len(tc.in) > 1 && tc.repeats > 0 {
					t.Error("medianRun returned one of its inputs, which it then modified")
				}
			}
		})
	}
}
