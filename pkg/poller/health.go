package poller

import (
	"strings"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/metrics"
)

// Health summarises statuses for the health gauges: which keys are refused,
// which are failing and how, and how long the least recently refreshed key
// has gone without a successful poll. The last is what shows a key that has
// stopped refreshing; the age of the oldest lcut is the age of the last
// config change, days for a quiet project.
//
// Pairs last seen as a follower are left out of the success age: a follower
// polls nothing, and the leader reports it.
func Health(statuses []Status, now time.Time) metrics.KeyHealth {
	h := metrics.KeyHealth{Failing: map[string]int{}}
	refused := map[string]bool{}
	for _, s := range statuses {
		if s.Lcut > 0 {
			h.OldestLcutAge = max(h.OldestLcutAge, now.Sub(time.UnixMilli(s.Lcut)).Seconds())
		}
		if s.Unauthorized {
			refused[s.Key] = true
			continue
		}
		if s.ConsecutiveFailures > 0 {
			h.Failing[s.LastOutcome]++
		}
		if strings.HasPrefix(s.LastOutcome, "follower") {
			continue
		}
		since := s.LastSuccess
		if since.IsZero() {
			since = s.ConfiguredAt
		}
		if !since.IsZero() {
			h.OldestSuccessAge = max(h.OldestSuccessAge, now.Sub(since).Seconds())
		}
	}
	h.Unauthorized = len(refused)
	return h
}

// IDListHealth summarises ID-list statuses for the ID-list gauges, as
// Health does for config specs (keys last seen as a follower left out of the
// success age).
func IDListHealth(statuses []IDListStatus, now time.Time) metrics.IDListHealth {
	var h metrics.IDListHealth
	for _, s := range statuses {
		h.Lists += s.Lists
		h.Bytes += s.Bytes
		if s.Unauthorized || strings.HasPrefix(s.LastOutcome, "follower") {
			continue
		}
		if s.ConsecutiveFailures > 0 {
			h.Failing++
		}
		since := s.LastSuccess
		if since.IsZero() {
			since = s.ConfiguredAt
		}
		if !since.IsZero() {
			h.OldestSuccessAge = max(h.OldestSuccessAge, now.Sub(since).Seconds())
		}
	}
	return h
}
