package leader

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/internal/redistest"
)

const lease = 600 * time.Millisecond

type replica struct {
	e      *Elector
	cancel context.CancelFunc
	done   chan struct{}
}

func start(t *testing.T, addr, key string) *replica {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{e: New(rdb, key, lease, zerolog.New(io.Discard)), cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); r.e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

func leaders(rs ...*replica) int {
	n := 0
	for _, r := range rs {
		if r.e.Leading() {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	begin := time.Now()
	for !cond() {
		if time.Since(begin) > limit {
			t.Fatalf("%s: not true after %v", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(begin)
}

func TestOneLeaderAndHandover(t *testing.T) {
	srv := redistest.Start(t)
	a, b, c := start(t, srv.Addr(), "p:statsig-populator:leader"), start(t, srv.Addr(), "p:statsig-populator:leader"), start(t, srv.Addr(), "p:statsig-populator:leader")
	waitFor(t, "a leader", lease, func() bool { return leaders(a, b, c) == 1 })
	// Never two at once, over several renewals.
	for end := time.Now().Add(3 * lease); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if n := leaders(a, b, c); n != 1 {
			t.Fatalf("%d leaders", n)
		}
	}
	var old *replica
	for _, r := range []*replica{a, b, c} {
		if r.e.Leading() {
			old = r
		}
	}
	holder := srv.Client().Get(context.Background(), "p:statsig-populator:leader").Val()
	if holder != old.e.ID() {
		t.Fatalf("lease held by %q, leader is %q", holder, old.e.ID())
	}
	// A clean shutdown hands over at once (within a renewal period).
	old.cancel()
	<-old.done
	took := waitFor(t, "a new leader after shutdown", lease, func() bool { return leaders(a, b, c) == 1 && !old.e.Leading() })
	t.Logf("handover after a clean shutdown: %v (lease %v)", took, lease)
}

func TestPartitionedLeaderStopsBeforeTakeover(t *testing.T) {
	srv := redistest.Start(t)
	// The leader talks to Redis through a proxy the test can cut.
	px := newCutProxy(t, srv.Addr())
	a := start(t, px.addr, "k")
	waitFor(t, "a leads", lease, a.e.Leading)
	b := start(t, srv.Addr(), "k")
	time.Sleep(lease / 2)
	if b.e.Leading() {
		t.Fatal("b leads while a holds the lease")
	}
	px.cut()
	cutAt := time.Now()
	stopped := waitFor(t, "a stops leading", 2*lease, func() bool { return !a.e.Leading() })
	took := waitFor(t, "b takes over", 2*lease, b.e.Leading)
	t.Logf("partitioned leader stopped after %v; follower took over after %v (lease %v)", stopped, time.Since(cutAt), lease)
	if stopped > lease {
		t.Errorf("partitioned leader kept leading for %v, longer than the lease", stopped)
	}
	if took > 2*lease {
		t.Errorf("takeover took %v", took)
	}
}

// A renewal that fails while the lease in Redis is still ours (a timeout, a
// dropped connection) must not leave the replicas without a writer until the
// lease expires: the leader takes its own lease back at the next step, and
// no rival gets it meanwhile.
func TestFailedRenewalIsRetaken(t *testing.T) {
	srv := redistest.Start(t)
	px := newCutProxy(t, srv.Addr())
	a := start(t, px.addr, "k")
	waitFor(t, "a leads", lease, a.e.Leading)
	b := start(t, srv.Addr(), "k")
	px.cut()
	waitFor(t, "a's renewal fails", 2*lease, func() bool { return !a.e.Leading() })
	px.heal()
	healed := time.Now()
	waitFor(t, "a leads again", 2*lease, a.e.Leading)
	ttl := srv.Client().PTTL(context.Background(), "k").Val()
	t.Logf("a led again %v after the connection healed", time.Since(healed))
	if b.e.Leading() || srv.Client().Get(context.Background(), "k").Val() != a.e.ID() {
		t.Fatal("the rival took the lease: the leader waited for its own lease to expire")
	}
	if ttl < lease/2 {
		t.Errorf("lease TTL %v after retaking it, want it extended to about %v", ttl, lease)
	}
}

func TestPrefixesDoNotContend(t *testing.T) {
	srv := redistest.Start(t)
	a, b := start(t, srv.Addr(), "team-a:statsig-populator:leader"), start(t, srv.Addr(), "team-b:statsig-populator:leader")
	waitFor(t, "both lead", lease, func() bool { return a.e.Leading() && b.e.Leading() })
}

func TestLeaseLostToFlushIsRetaken(t *testing.T) {
	srv := redistest.Start(t)
	a := start(t, srv.Addr(), "k")
	waitFor(t, "a leads", lease, a.e.Leading)
	srv.FlushAll()
	waitFor(t, "lease key back", lease, func() bool { return srv.Client().Get(context.Background(), "k").Val() == a.e.ID() })
	if !a.e.Leading() {
		t.Fatal("a lost leadership after a flush with no rival")
	}
}

// cutProxy forwards TCP to Redis until cut, after which it blackholes: the
// connections stay open and nothing answers, as in a network partition.
type cutProxy struct {
	addr string
	mu   sync.Mutex
	dead bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := listen()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &cutProxy{addr: ln.Addr().String()}
	go p.serve(ln, target)
	return p
}

func (p *cutProxy) cut()  { p.mu.Lock(); p.dead = true; p.mu.Unlock() }
func (p *cutProxy) heal() { p.mu.Lock(); p.dead = false; p.mu.Unlock() }
func (p *cutProxy) isDead() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dead
}
