package poller

import (
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/writer"
)

// The scheduler's decisions, as pure functions of state and observations.

// sinceTime decides what to ask the CDN for: the cursor (a conditional fetch)
// only when every target key still holds at least what we last confirmed
// there. A missing key or an older lcut (a flush, a restart without
// persistence, an eviction, a failover to a stale replica) means 0: fetch the
// whole payload so it can be rewritten.
func sinceTime(cursor, confirmed int64, stored []writer.Stored) int64 {
	if cursor <= 0 || confirmed <= 0 {
		return 0
	}
	for _, s := range stored {
		if !s.Present() || s.Lcut < confirmed {
			return 0
		}
	}
	return cursor
}

// needsWrite reports, per target, whether Redis holds less than lcut there
// and so should be written. The write script re-checks atomically; this only
// spares Redis payloads it would refuse anyway.
func needsWrite(lcut int64, stored []writer.Stored) []bool {
	out := make([]bool, len(stored))
	for i, s := range stored {
		out[i] = !s.Present() || s.Lcut < lcut
	}
	return out
}

// kind is what a poll's outcome means for scheduling.
type kind int

const (
	kindSuccess      kind = iota // updated or confirmed current: the normal interval
	kindRetry                    // transient or refused: exponential backoff
	kindRedisRetry               // Redis failed: backoff, but never longer than the interval
	kindRateLimited              // 429: back off further
	kindUnauthorized             // 401/403: re-check rarely
	kindNotPolled                // not polled (shutting down, lease lost mid-poll): the normal interval
	kindFollower                 // not the leader: Redis checked, nothing fetched; the normal interval
)

const (
	// DefaultUnauthorizedRecheck is how often a key the CDN refuses is asked
	// again, unless configured otherwise.
	DefaultUnauthorizedRecheck = 5 * time.Minute
	// Patience is how long a key may keep failing before its retries are
	// allowed to fall behind the poll interval. Shorter faults heal within an
	// interval or two of ending; longer ones back off to spare a CDN in trouble.
	Patience = 5 * time.Minute
	// MaxBackoff caps the delay after repeated transient failures.
	MaxBackoff = 3 * time.Minute
	// MaxRateLimitDelay caps the delay after 429s (Retry-After included).
	MaxRateLimitDelay = 10 * time.Minute
)

// delayInput is what nextDelay decides from.
type delayInput struct {
	kind     kind
	interval time.Duration
	// recheck is how long an unauthorized key waits (never less than the
	// interval).
	recheck time.Duration
	// backoff is the next value of the job's exponential backoff (1 s
	// doubling up to MaxBackoff, with its own jitter).
	backoff time.Duration
	// retryAfter is the server's Retry-After, 0 if none.
	retryAfter time.Duration
	// failingFor is how long the job's current run of failures has lasted.
	failingFor time.Duration
	// first is set for the first success since start: the next poll is then
	// placed anywhere in the coming interval, which spreads the polls of all
	// keys evenly instead of in the bunch the start-up sync made.
	first bool
	// u is a uniform random number in [0,1).
	u float64
}

// Jitter is how far, at most, a poll strays from its interval, as a
// fraction of it.
const Jitter = 0.02

// nextDelay is the time until a job's next poll.
//
// A healthy key is polled again after one interval ±2%, at random: enough to
// keep keys from drifting into lockstep (the first poll after start-up
// already spreads them over the interval), little enough that a change
// reaches Redis within 1.02 intervals of happening, and on average exactly
// one poll per interval.
func nextDelay(in delayInput) time.Duration {
	jittered := func(d time.Duration) time.Duration {
		return time.Duration(float64(d) * (1 + Jitter*(2*in.u-1)))
	}
	patient := in.failingFor < Patience
	switch in.kind {
	case kindRetry:
		d := in.backoff
		if patient {
			d = min(d, jittered(in.interval))
		}
		return max(d, in.retryAfter)
	case kindRedisRetry:
		// Redis is ours, not upstream's: retrying costs the CDN nothing, and a
		// Redis that comes back must be refilled within an interval.
		return min(in.backoff, jittered(in.interval))
	case kindRateLimited:
		// Always at least (about) a whole interval, and Retry-After when given.
		d := max(in.retryAfter, jittered(in.interval))
		if !patient {
			d = max(d, 4*in.backoff)
		}
		return min(d, max(MaxRateLimitDelay, in.interval))
	case kindUnauthorized:
		return jittered(max(in.recheck, in.interval))
	default:
		if in.first {
			return time.Duration(float64(in.interval) * (0.1 + 0.9*in.u))
		}
		return jittered(in.interval)
	}
}
