package poller

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

func TestSetKeysAddsAndRemoves(t *testing.T) {
	third := keys.MustParse("secret-third-key-0000000000")
	for _, del := range []bool{false, true} {
		h := newHarness(t, Options{Keys: []keys.SDKKey{testKey}, DeleteRemovedKeys: del})
		h.cdn.SetProject(otherKey, fakecdn.Project{Lcut: 1700000100000, Value: 1})
		h.cdn.SetProject(third, fakecdn.Project{Lcut: 1700000100000, Value: 1})
		h.run()
		h.waitFor("initial sync", 5*time.Second, func() bool { return h.current(testKey) })

		h.poller.SetKeys([]keys.SDKKey{testKey, otherKey, third})
		took := h.waitFor("added keys written", h.opt.Interval+time.Second, func() bool { return h.current(otherKey) && h.current(third) })
		t.Logf("added keys current after %v", took)
		if n := len(h.poller.Statuses()); n != 6 {
			t.Fatalf("%d statuses, want 6", n)
		}

		h.poller.SetKeys([]keys.SDKKey{otherKey})
		h.waitFor("removed keys gone from status", time.Second, func() bool { return len(h.poller.Statuses()) == 2 })
		h.cdn.ResetLog()
		time.Sleep(3 * h.opt.Interval)
		for _, k := range []keys.SDKKey{testKey, third} {
			if n := len(h.cdn.RequestsFor(k, keys.V1)); n != 0 {
				t.Errorf("removed key %s still polled (%d requests)", k, n)
			}
			for _, v := range allVers {
				for _, tg := range h.opt.Layout.Targets(k, v) {
					exists := h.rdb.Exists(context.Background(), tg.Key).Val() == 1
					if exists == del {
						t.Errorf("DELETE_REMOVED_KEYS=%v: %s exists=%v", del, tg.Key, exists)
					}
				}
			}
		}
		if len(h.cdn.RequestsFor(otherKey, keys.V1)) == 0 {
			t.Error("the remaining key is no longer polled")
		}
	}
}

type switchGate struct{ on atomic.Bool }

func (g *switchGate) Leading() bool { return g.on.Load() }

func TestFollowerReadsButNeverFetchesOrWrites(t *testing.T) {
	gate := &switchGate{}
	h := newHarness(t, Options{Gate: gate})
	h.run()
	h.waitFor("follower statuses", 3*time.Second, func() bool {
		for _, s := range h.poller.Statuses() {
			if s.LastOutcome != "follower_missing" {
				return false
			}
		}
		return true
	})
	if n := len(h.cdn.Requests()); n != 0 {
		t.Fatalf("a follower sent %d CDN requests", n)
	}
	if n := len(h.rdb.Keys(context.Background(), "*").Val()); n != 0 {
		t.Fatalf("a follower wrote %d keys", n)
	}
	// Becoming leader: every key is polled within one interval.
	gate.on.Store(true)
	h.poller.TakeOver()
	took := h.waitFor("leader writes", h.opt.Interval+time.Second, h.allCurrent)
	t.Logf("new leader synced in %v", took)
	// Back to follower: it sees the data present and counts as confirmed.
	gate.on.Store(false)
	h.cdn.ResetLog()
	h.waitFor("follower sees data", 3*time.Second, func() bool {
		for _, s := range h.poller.Statuses() {
			if s.LastOutcome != "follower" || !s.Current || !s.Confirmed || s.Lcut == 0 {
				return false
			}
		}
		return true
	})
	if n := len(h.cdn.Requests()); n != 0 {
		t.Fatalf("a follower sent %d CDN requests", n)
	}
}

// Deletes are fenced: a replica that is not the leader (or whose lease may
// have expired by its own clock) deletes nothing, whatever asked for it (a
// 403 seen by a poll that began while leading, a removed key): a delete also
// removes the write guard, so a stale replica's delete could let an older
// payload back in.
func TestDeletesAreFenced(t *testing.T) {
	gate := &switchGate{}
	gate.on.Store(true)
	h := newHarness(t, Options{Gate: gate, DeleteRemovedKeys: true})
	h.run()
	h.waitFor("initial sync", 5*time.Second, h.allCurrent)
	gate.on.Store(false)
	for _, j := range h.poller.jobs {
		if j.key == testKey {
			if err := h.poller.deleteEntries(context.Background(), j, "test"); !errors.Is(err, errNotLeader) {
				t.Errorf("deleteEntries as a follower: %v, want errNotLeader", err)
			}
			if err := h.poller.deleteSiblings(context.Background(), j); !errors.Is(err, errNotLeader) {
				t.Errorf("deleteSiblings as a follower: %v, want errNotLeader", err)
			}
		}
	}
	// A removal seen by a follower deletes nothing either.
	h.poller.SetKeys([]keys.SDKKey{otherKey})
	h.waitFor("removed from the statuses", 3*time.Second, func() bool { return len(h.poller.Statuses()) == 2 })
	h.waitFor("the other key polled as a follower", 3*time.Second, func() bool {
		return h.status(otherKey, keys.V1).LastOutcome == "follower"
	})
	if n := h.targetsExist(testKey); n != 4 {
		t.Errorf("%d of 4 targets left after a follower's delete attempts, want all", n)
	}
}
