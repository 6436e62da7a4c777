package poller

import (
	"math"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/writer"
)

// The scheduler's decisions, as pure functions of state and observations.

// sinceTime decides what to ask the CDN for. A missing or unreadable target
// (a flush, a restart without persistence, an eviction) means 0: fetch the
// whole payload so it can be rewritten. Otherwise the cursor when every
// target still holds at least what this replica last confirmed there, and
// else the lowest lcut Redis holds: after a start or a takeover (nothing
// confirmed yet) or a failover to a stale replica, the CDN answers "no
// updates" if every target is current and the whole payload if one is
// behind, so a rollout of a healthy deployment downloads nothing in full.
// A wrong guess is harmless: the write guard never moves a target back.
func sinceTime(cursor, confirmed int64, stored []writer.Stored) int64 {
	if len(stored) == 0 {
		return 0
	}
	low := stored[0].Lcut
	for _, s := range stored {
		if !s.Present() {
			return 0
		}
		low = min(low, s.Lcut)
	}
	if cursor > 0 && confirmed > 0 && low >= confirmed {
		return cursor
	}
	return low
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
	// DefaultUnauthorizedDeleteAfter is how long a key must be refused without
	// a break before DELETE_ON_UNAUTHORIZED deletes it, unless configured
	// otherwise: three re-checks at the default pace.
	DefaultUnauthorizedDeleteAfter = 15 * time.Minute
	// DefaultMaxClockSkew is how far ahead of the clock an lcut may be.
	DefaultMaxClockSkew = time.Hour
	// Patience is how long a key may keep failing before its retries are
	// allowed to fall behind the poll interval. Shorter faults heal within an
	// interval or two of ending; longer ones back off to spare a CDN in trouble.
	Patience = 5 * time.Minute
	// MaxBackoff caps the delay after repeated transient failures.
	MaxBackoff = 3 * time.Minute
	// MaxRateLimitDelay caps the delay after 429s (Retry-After included).
	MaxRateLimitDelay = 10 * time.Minute
	// MaxRetryAfter caps the server's Retry-After for every status: it is a
	// hint, and one absurd header (a date in the year 9999, a year in
	// seconds) must not park a key. The cap is this or the poll interval,
	// whichever is larger.
	MaxRetryAfter = 10 * time.Minute
	// MinUnauthorizedRechecks is how many re-checks must refuse a key, after
	// the first refusal, before DELETE_ON_UNAUTHORIZED may delete it.
	MinUnauthorizedRechecks = 3
)

// capRetryAfter bounds a server's Retry-After to [0, max(MaxRetryAfter,
// interval)].
func capRetryAfter(d, interval time.Duration) time.Duration {
	return min(max(d, 0), max(MaxRetryAfter, interval))
}

// addSaturating is a+d on the Poller's clock, saturating instead of
// wrapping around: a schedule that overflows would make a job due forever
// or never.
func addSaturating(a int64, d time.Duration) int64 {
	if d > 0 && a > math.MaxInt64-int64(d) {
		return math.MaxInt64
	}
	if d < 0 && a < math.MinInt64-int64(d) {
		return math.MinInt64
	}
	return a + int64(d)
}

// futureLcut reports whether an lcut (epoch ms) lies more than skew ahead of
// now. Such a payload pins its key: the write guard refuses every real
// update, which is older.
func futureLcut(lcutMillis int64, now time.Time, skew time.Duration) bool {
	limit := now.UnixMilli()
	if s := skew.Milliseconds(); s > 0 && limit <= math.MaxInt64-s {
		limit += s
	} else if s > 0 {
		limit = math.MaxInt64
	}
	return lcutMillis > limit
}

// nextPollAt is when a job polls next, on the Poller's clock, delay after
// what it counts from. A job keeping its cadence counts from when this poll
// was due, not from when it ended: the time a poll waits for a slot or takes
// under load (a start-up sync, the full downloads after a FLUSHALL) then never
// shifts its phase, so polls that ended together do not stay bunched ever
// after. Only a due time that this poll actually had (at most window ahead of
// now: batches are taken that early) counts; a job made due early (a
// takeover) or failing counts from now, and so does a job that has fallen
// more than an interval behind (an overloaded worker): catching up would poll
// more often than once an interval.
func nextPollAt(now, due int64, delay, window time.Duration, cadence bool) int64 {
	if cadence && due > 0 && due <= addSaturating(now, window) {
		if next := addSaturating(due, delay); next >= now {
			return next
		}
	}
	return addSaturating(now, delay)
}

// unauthorizedInput is what shouldDeleteUnauthorized decides from.
type unauthorizedInput struct {
	// refusedFor is how long the key has been refused without a break.
	refusedFor time.Duration
	// refusals counts the consecutive 401/403 answers, this one included.
	refusals int
	// deleteAfter is UNAUTHORIZED_DELETE_AFTER.
	deleteAfter time.Duration
	// othersRefused is true when every other configured key is refused too
	// (or there is no other key): then the refusal says more about the
	// upstream or a proxy than about this key.
	othersRefused bool
}

// shouldDeleteUnauthorized decides whether DELETE_ON_UNAUTHORIZED deletes a
// refused key's entries now. A single 401/403 proves little (a proxy's HTML
// error page, a CDN incident), and a delete cannot be undone until the key
// is valid again, so the key must have been refused without a break for
// deleteAfter and at least MinUnauthorizedRechecks re-checks, while some other
// key is still accepted.
func shouldDeleteUnauthorized(in unauthorizedInput) bool {
	return in.refusedFor >= in.deleteAfter && in.refusals > MinUnauthorizedRechecks && !in.othersRefused
}

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
	in.retryAfter = capRetryAfter(in.retryAfter, in.interval)
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
