package redisconn

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/internal/redistest"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
	"github.com/statsig-populator/statsig-populator/pkg/writer"
)

// probe writes one key every 20 ms through write and remembers when writes
// failed and when they succeeded.
type probe struct {
	mu        sync.Mutex
	firstFail time.Time
	lastFail  time.Time
	okAfter   []time.Time // successes after the first failure
	fails     int
}

func runProbe(ctx context.Context, write func(ctx context.Context, n int64) error) *probe {
	p := &probe{}
	go func() {
		for n := int64(1); ctx.Err() == nil; n++ {
			wctx, cancel := context.WithTimeout(ctx, time.Second)
			err := write(wctx, n)
			cancel()
			now := time.Now()
			p.mu.Lock()
			switch {
			case err != nil && ctx.Err() == nil:
				p.fails++
				p.lastFail = now
				if p.firstFail.IsZero() {
					p.firstFail = now
				}
			case err == nil && !p.firstFail.IsZero():
				p.okAfter = append(p.okAfter, now)
			}
			p.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return p
}

// resumedAfter is the first success after t (zero if none).
func (p *probe) resumedAfter(t time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, at := range p.okAfter {
		if at.After(t) {
			return at
		}
	}
	return time.Time{}
}

func (p *probe) stats() (fails int, first, last time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fails, p.firstFail, p.lastFail
}

// A master of a 3-master/3-replica cluster is killed. The worker's client
// (New: slot map refreshed every DefaultClusterRefresh, one dial per attempt)
// with pkg/writer (a reload as soon as a node fails) writes to the failed
// master's slots again within a fraction of a second of the replica taking
// over, and to the healthy masters' slots throughout when the cluster does
// not require full coverage. For reference, go-redis's defaults (60 s
// refresh, no reload on connection errors) are still dialling the dead node
// seconds after the failover.
func TestClusterFailoverSlotRefresh(t *testing.T) {
	for _, coverage := range []string{"yes", "no"} {
		t.Run("cluster-require-full-coverage="+coverage, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c := redistest.StartClusterWithReplicas(t, 3, 1, "--cluster-require-full-coverage", coverage)
			rdb, err := New(Options{Mode: Cluster, Addrs: c.Addrs()})
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()
			w := writer.New(rdb, 0)
			reference := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
			defer reference.Close()

			// A key on the master that dies, one on a master that lives.
			var onDead, onLive keys.Target
			dead := c.MasterFor(t, "probe-0")
			for i := 0; onDead.Key == "" || onLive.Key == ""; i++ {
				k := fmt.Sprintf("probe-%d", i)
				if c.MasterFor(t, k) == dead {
					onDead = keys.Target{Format: keys.SFP, Key: k}
				} else {
					onLive = keys.Target{Format: keys.SFP, Key: k}
				}
			}
			write := func(tg keys.Target) func(context.Context, int64) error {
				return func(ctx context.Context, n int64) error {
					_, err := w.Write(ctx, tg, &writer.Payload{Body: []byte("{}"), Lcut: n})
					return err
				}
			}
			for _, f := range []func(context.Context, int64) error{write(onDead), write(onLive)} {
				if err := f(ctx, 1); err != nil {
					t.Fatal(err)
				}
			}
			refKey := ""
			for i := 0; refKey == ""; i++ {
				if k := fmt.Sprintf("ref-%d", i); c.MasterFor(t, k) == dead {
					refKey = k
				}
			}
			if err := reference.Set(ctx, refKey, 1, 0).Err(); err != nil {
				t.Fatal(err)
			}
			replicas := c.ReplicasOf(t, dead)
			deadProbe := runProbe(ctx, write(onDead))
			liveProbe := runProbe(ctx, write(onLive))
			refProbe := runProbe(ctx, func(ctx context.Context, n int64) error {
				return reference.Set(ctx, refKey, n, 0).Err()
			})
			time.Sleep(200 * time.Millisecond)
			dead.Kill()
			killed := time.Now()
			_, failover := c.WaitFailover(t, replicas, 20*time.Second)
			var resumed time.Time
			for deadline := time.Now().Add(10 * time.Second); resumed.IsZero() && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				resumed = deadProbe.resumedAfter(failover)
			}
			if resumed.IsZero() {
				t.Fatalf("writes to the failed master's slots did not resume within 10s of the failover (%v after the kill)", failover.Sub(killed))
			}
			// Give the reference client a few seconds past the failover.
			time.Sleep(time.Until(failover.Add(3 * time.Second)))
			refResumed := refProbe.resumedAfter(failover)
			cancel()
			liveFails, liveFirst, liveLast := liveProbe.stats()
			liveOutage := time.Duration(0)
			if liveFails > 0 {
				liveOutage = liveLast.Sub(liveFirst)
			}
			t.Logf("failover %v after the kill; writes to its slots resumed %v after the failover (%v after the kill); "+
				"healthy master: %d failed writes over %v", failover.Sub(killed).Round(time.Millisecond),
				resumed.Sub(failover).Round(time.Millisecond), resumed.Sub(killed).Round(time.Millisecond), liveFails, liveOutage.Round(time.Millisecond))
			if refResumed.IsZero() {
				t.Logf("go-redis defaults (reference): still failing 3s after the failover")
			} else {
				t.Logf("go-redis defaults (reference): resumed %v after the failover", refResumed.Sub(failover).Round(time.Millisecond))
			}
			if d := resumed.Sub(failover); d > 2*time.Second {
				t.Errorf("writes to the failed master's slots resumed %v after the failover, want well within DefaultClusterRefresh", d)
			}
			if coverage == "no" && liveFails > 0 {
				t.Errorf("%d writes to a healthy master failed", liveFails)
			}
		})
	}
}
