package poller

import (
	"testing"
	"time"
)

func TestHealth(t *testing.T) {
	now := time.Now()
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	statuses := []Status{
		{Key: "a", Version: "v1", LastOutcome: "no_update", LastSuccess: ago(5 * time.Second), Lcut: ago(72 * time.Hour).UnixMilli()},
		{Key: "a", Version: "v2", LastOutcome: "http_5xx", ConsecutiveFailures: 40, LastSuccess: ago(2 * time.Hour)},
		{Key: "b", Version: "v1", LastOutcome: "timeout", ConsecutiveFailures: 1, LastSuccess: ago(10 * time.Second)},
		{Key: "b", Version: "v2", LastOutcome: "http_5xx", ConsecutiveFailures: 2, ConfiguredAt: ago(time.Minute)}, // never succeeded
		// Refused keys are counted once per SDK key and left out of the rest.
		{Key: "c", Version: "v1", LastOutcome: "unauthorized", Unauthorized: true, ConsecutiveFailures: 9, LastSuccess: ago(100 * time.Hour)},
		{Key: "c", Version: "v2", LastOutcome: "unauthorized", Unauthorized: true, ConsecutiveFailures: 9},
		// A follower polls nothing: the leader reports its staleness.
		{Key: "d", Version: "v1", LastOutcome: "follower", LastSuccess: ago(50 * time.Hour)},
	}
	h := Health(statuses, now)
	if h.Unauthorized != 1 {
		t.Errorf("Unauthorized = %d, want 1 (one SDK key)", h.Unauthorized)
	}
	if h.Failing["http_5xx"] != 2 || h.Failing["timeout"] != 1 || len(h.Failing) != 2 {
		t.Errorf("Failing = %v, want http_5xx 2, timeout 1", h.Failing)
	}
	if d := h.OldestSuccessAge - (2 * time.Hour).Seconds(); d < -1 || d > 1 {
		t.Errorf("OldestSuccessAge = %v, want 2h", h.OldestSuccessAge)
	}
	if d := h.OldestLcutAge - (72 * time.Hour).Seconds(); d < -1 || d > 1 {
		t.Errorf("OldestLcutAge = %v, want 72h", h.OldestLcutAge)
	}
	if h := Health(nil, now); h.OldestSuccessAge != 0 || h.Unauthorized != 0 || len(h.Failing) != 0 {
		t.Errorf("no keys: %+v", h)
	}
}
