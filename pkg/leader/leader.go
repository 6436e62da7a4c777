// Package leader elects one writer among replicas with a lease in Redis: a
// script that takes the lease when nobody holds it and extends it when we
// do, run every third of the lease, and a compare-and-delete script to hand
// it over on shutdown.
//
// The lease only saves upstream requests: correctness never depends on it,
// because every write is guarded by its lcut. A replica counts itself leader
// only until the lease it last confirmed would expire by its own clock,
// measured from before the confirming request was sent, so a replica cut off
// from Redis stops writing before anyone else can take over.
package leader

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// acquire extends the lease if we hold it and takes it if nobody does. A
// replica whose renewal failed (a timeout, a dropped connection) while the
// lease in Redis was still its own takes it back at the next step, instead
// of leaving every replica without a writer until the lease expires.
var acquire = redis.NewScript(`
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
`)

// release deletes the lease if we still hold it.
var release = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Elector competes for the lease. Leading is safe for concurrent use.
type Elector struct {
	rdb   redis.UniversalClient
	key   string
	id    string
	lease time.Duration
	log   zerolog.Logger
	// OnChange, when set, is called with every change of leadership.
	OnChange func(leading bool)

	mu         sync.Mutex
	validUntil time.Time // zero when not leading
	holder     string    // who holds the lease, as last seen
}

// New returns an Elector for the lease key (e.g.
// "{prefix}statsig-populator:leader").
func New(rdb redis.UniversalClient, key string, lease time.Duration, log zerolog.Logger) *Elector {
	host, _ := os.Hostname()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return &Elector{rdb: rdb, key: key, id: host + "-" + hex.EncodeToString(b), lease: lease, log: log}
}

// ID is this replica's name in the lease.
func (e *Elector) ID() string { return e.id }

// Leading reports whether this replica holds a lease that has not expired by
// its own clock.
func (e *Elector) Leading() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return time.Now().Before(e.validUntil)
}

// State describes the election for status output.
type State struct {
	Enabled    bool      `json:"enabled"`
	Leading    bool      `json:"leading"`
	ID         string    `json:"id"`
	Holder     string    `json:"holder,omitempty"`
	ValidUntil time.Time `json:"valid_until,omitempty"`
}

// State returns the current state.
func (e *Elector) State() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := State{Enabled: true, ID: e.id, Holder: e.holder, Leading: time.Now().Before(e.validUntil)}
	if st.Leading {
		st.ValidUntil = e.validUntil
	}
	return st
}

// Run competes for and holds the lease until ctx ends, then releases it so a
// follower can take over at once.
func (e *Elector) Run(ctx context.Context) {
	tick := time.NewTicker(e.lease / 3)
	defer tick.Stop()
	leading := false
	for {
		now := e.step(ctx)
		if now != leading {
			leading = now
			if leading {
				e.log.Info().Str("id", e.id).Dur("lease", e.lease).Msg("became leader: fetching and writing")
			} else {
				e.log.Warn().Str("id", e.id).Msg("not leader (lost or not won the lease): not writing")
			}
			if e.OnChange != nil {
				e.OnChange(leading)
			}
		}
		select {
		case <-ctx.Done():
			e.release()
			if leading && e.OnChange != nil {
				e.OnChange(false)
			}
			return
		case <-tick.C:
		}
	}
}

// step takes or renews the lease once and reports whether we lead.
func (e *Elector) step(ctx context.Context) bool {
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, e.lease/3)
	defer cancel()
	n, err := acquire.Run(cctx, e.rdb, []string{e.key}, e.id, e.lease.Milliseconds()).Int()
	held := err == nil && n == 1
	if err != nil {
		e.log.Debug().Err(err).Msg("taking or renewing the lease failed")
	}
	holder := e.id
	if !held {
		holder, _ = e.rdb.Get(cctx, e.key).Result()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.holder = holder
	if held {
		// Measured from before the request: Redis's own expiry is later.
		e.validUntil = start.Add(e.lease)
	} else {
		e.validUntil = time.Time{}
	}
	return held
}

func (e *Elector) release() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	e.mu.Lock()
	wasLeading := time.Now().Before(e.validUntil)
	e.validUntil = time.Time{}
	e.mu.Unlock()
	if wasLeading {
		_ = release.Run(ctx, e.rdb, []string{e.key}, e.id).Err()
	}
}
