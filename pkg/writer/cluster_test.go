package writer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/internal/redistest"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

func TestIsUnreachable(t *testing.T) {
	tg := keys.Target{Version: keys.V2, Format: keys.SFP, Schema: keys.Hashed, Key: "statsig|/v2/download_config_specs|plain_text|abcdefghij"}
	yes := []error{
		context.DeadlineExceeded, context.Canceled, io.EOF, io.ErrUnexpectedEOF, syscall.ECONNREFUSED,
		&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, redis.ErrClosed, redis.ErrPoolTimeout,
		errors.New("redis: cluster has no nodes"),
		replyError("CLUSTERDOWN The cluster is down"), replyError("MASTERDOWN Link with MASTER is down"),
		replyError("LOADING Redis is loading the dataset in memory"), replyError("TRYAGAIN Multiple keys request during rehashing of slot"),
		replyError("READONLY You can't write against a read only replica."), replyError("MOVED 3999 127.0.0.1:6381"),
		replyError("ASK 3999 127.0.0.1:6381"), replyError("NOAUTH Authentication required."), replyError("BUSY Redis is busy running a script"),
		targetErr(tg, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}),
		targetErr(tg, replyError("CLUSTERDOWN Hash slot not served")),
	}
	no := []error{
		nil, redis.Nil, ErrWrongType, wrongType(tg, "", "string"), targetErr(tg, replyError("WRONGTYPE Operation against a key holding the wrong kind of value")),
		replyError("OOM command not allowed when used memory > 'maxmemory'."), replyError("NOPERM this user has no permissions"),
		replyError("ERR Error running script"), targetErr(tg, fmt.Errorf("unexpected script reply of 3 elements")), ErrPayloadTooLarge,
	}
	for _, err := range yes {
		if !IsUnreachable(err) {
			t.Errorf("IsUnreachable(%v) = false, want true", err)
		}
	}
	for _, err := range no {
		if IsUnreachable(err) {
			t.Errorf("IsUnreachable(%v) = true, want false", err)
		}
	}
}

// clusterTargets is n SDK keys' v2 targets (hashed and prefix schemas) in
// layout l, spread over the slots.
func clusterTargets(n int, l keys.Layout) []keys.Target {
	var out []keys.Target
	for i := 0; i < n; i++ {
		k := keys.MustParse(fmt.Sprintf("secret-cluster%04dabcdefghijklmn", i))
		out = append(out, l.Targets(k, keys.V2)...)
	}
	return out
}

var sfpLayout = keys.Layout{Formats: []keys.Format{keys.SFP}, Schemas: []keys.Schema{keys.Hashed, keys.Prefix}}

func clusterClient(t *testing.T, c *redistest.Cluster, opt *redis.ClusterOptions) *redis.ClusterClient {
	if opt == nil {
		// As the worker's client (redisconn): context deadlines bound
		// socket reads.
		opt = &redis.ClusterOptions{ContextTimeoutEnabled: true, DialerRetries: 1}
	}
	opt.Addrs = c.Addrs()
	cc := redis.NewClusterClient(opt)
	t.Cleanup(func() { cc.Close() })
	return cc
}

// A master of the cluster is killed: Inspect still reads every target on the
// other masters and reports the dead master's ones as unreachable, without
// an error for the batch. Once every node is gone, the batch fails as on a
// dead standalone Redis.
func TestInspectClusterNodeDown(t *testing.T) {
	ctx := context.Background()
	// Without full coverage the healthy masters keep serving while a slot
	// has no master (no replicas here to take over).
	c := redistest.StartClusterWithReplicas(t, 3, 0, "--cluster-require-full-coverage", "no")
	cc := clusterClient(t, c, nil)
	w := New(cc, 0)
	targets := clusterTargets(20, sfpLayout)
	for i, tg := range targets {
		if _, err := w.Write(ctx, tg, payload(int64(1000+i), "{}")); err != nil {
			t.Fatal(err)
		}
	}
	wrong := keys.Target{Version: keys.V2, Format: keys.SFP, Schema: keys.Hashed, Key: "wrong-type-key"}
	if err := cc.Set(ctx, wrong.Key, "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	targets = append(targets, wrong)
	owner := map[int]*redistest.Server{}
	for i, tg := range targets {
		owner[i] = c.MasterFor(t, tg.Key)
	}
	dead := owner[0]
	dead.Kill()
	killed := time.Now()
	defer func() { t.Logf("%v from the kill to the end", time.Since(killed)) }()

	got, err := w.Inspect(ctx, targets)
	if err != nil {
		t.Fatalf("Inspect with one master of three down: %v", err)
	}
	var onDead, onLive int
	for i, s := range got[:len(got)-1] {
		if owner[i] == dead {
			onDead++
			if s.Err == nil || !s.Unreachable || s.Present() || !IsUnreachable(s.Err) {
				t.Errorf("target %d on the dead master: %+v, want an unreachable error", i, s)
			}
			assertNoSecret(t, "unreachable error", s.Err.Error())
			continue
		}
		onLive++
		if s.Err != nil || s.Unreachable || s.Lcut != int64(1000+i) {
			t.Errorf("target %d on a live master: %+v, want lcut %d", i, s, 1000+i)
		}
	}
	if w := got[len(got)-1]; owner[len(got)-1] != dead && (!errors.Is(w.Err, ErrWrongType) || w.Unreachable) {
		t.Errorf("key of another type: %+v, want ErrWrongType, not unreachable", w)
	}
	if onDead == 0 || onLive == 0 {
		t.Fatalf("%d targets on the dead master, %d on live ones: the test proves nothing", onDead, onLive)
	}
	// Writes to the live masters go on.
	for i, tg := range targets[:len(targets)-1] {
		_, err := w.Write(ctx, tg, payload(int64(5000+i), "{}"))
		if (owner[i] == dead) != (err != nil) {
			t.Errorf("write to target %d (on the dead master: %v): %v", i, owner[i] == dead, err)
		}
		if err != nil && !IsUnreachable(err) {
			t.Errorf("write to the dead master: %v, not unreachable", err)
		}
	}

	t.Logf("reads and writes with a master down: %v", time.Since(killed))
	for _, n := range c.Nodes {
		n.Kill()
	}
	start := time.Now()
	defer func() { t.Logf("Inspect with every node down: %v", time.Since(start)) }()
	if _, err := w.Inspect(ctx, targets); err == nil || !IsUnreachable(err) {
		t.Errorf("Inspect with every node down = %v, want an unreachable error", err)
	}
}

// A master that stops answering without closing connections (SIGSTOP: a
// host gone without a reset looks the same) does not hold the batch for the
// caller's whole timeout: Inspect returns StragglerWait after the other
// masters answered, with their targets read and the stuck node's unreachable.
func TestInspectClusterNodeStuck(t *testing.T) {
	ctx := context.Background()
	c := redistest.StartClusterWithReplicas(t, 3, 0, "--cluster-require-full-coverage", "no")
	cc := clusterClient(t, c, nil)
	w := New(cc, 0)
	targets := clusterTargets(20, sfpLayout)
	owner := map[int]*redistest.Server{}
	for i, tg := range targets {
		if _, err := w.Write(ctx, tg, payload(int64(1000+i), "{}")); err != nil {
			t.Fatal(err)
		}
		owner[i] = c.MasterFor(t, tg.Key)
	}
	stuck := owner[0]
	stuck.Pause()
	defer stuck.Resume()
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	got, err := w.Inspect(ictx, targets)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Inspect with one master stuck: %v", err)
	}
	if took > StragglerWait+time.Second {
		t.Errorf("Inspect with one master stuck took %v, want about StragglerWait (%v)", took, StragglerWait)
	}
	var onStuck int
	for i, s := range got {
		if owner[i] == stuck {
			onStuck++
			if !s.Unreachable || !errors.Is(s.Err, context.DeadlineExceeded) {
				t.Errorf("target %d on the stuck master: %+v", i, s)
			}
		} else if s.Err != nil || s.Lcut != int64(1000+i) {
			t.Errorf("target %d on a live master: %+v", i, s)
		}
	}
	t.Logf("Inspect with a stuck master took %v (context 5s), %d of %d targets unreachable", took.Round(time.Millisecond), onStuck, len(targets))
	// Every node stuck: nothing answers, the batch fails at the deadline.
	for _, n := range c.Nodes {
		n.Pause()
		defer n.Resume()
	}
	ictx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := w.Inspect(ictx, targets); err == nil || !IsUnreachable(err) {
		t.Errorf("Inspect with every node stuck = %v, want an unreachable error", err)
	}
}

// A string write (two keys in one slot) while its slot migrates: TRYAGAIN
// as long as one key has moved and the other not; Write retries until the
// migration is over.
func TestWriteRetriesWhileSlotMigrates(t *testing.T) {
	ctx := context.Background()
	c := redistest.StartClusterWithReplicas(t, 3, 0)
	cc := clusterClient(t, c, nil)
	w := New(cc, 0)
	tg := keys.Layout{Formats: []keys.Format{keys.String}, Schemas: []keys.Schema{keys.Prefix}}.Targets(leakKey, keys.V2)[0]
	if _, err := w.Write(ctx, tg, payload(1000, `{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	slot := c.Slot(t, tg.Key)
	if c.Slot(t, tg.LcutRef) != slot {
		t.Fatal("the string target's keys are in different slots")
	}
	src := c.MasterFor(t, tg.Key)
	dst := c.Masters(t)[0]
	if dst == src {
		dst = c.Masters(t)[1]
	}
	srcID, dstID := c.ID(t, src), c.ID(t, dst)
	do := func(s *redistest.Server, args ...any) {
		t.Helper()
		if err := s.Client().Do(ctx, args...).Err(); err != nil {
			t.Fatalf("%v: %v", args[:3], err)
		}
	}
	do(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID)
	do(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID)
	// Half moved: the lcut key is on the destination, the payload not yet.
	do(src, "MIGRATE", "127.0.0.1", dst.Port, "", 0, 5000, "KEYS", tg.LcutRef)

	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(300 * time.Millisecond)
		do(src, "MIGRATE", "127.0.0.1", dst.Port, "", 0, 5000, "KEYS", tg.Key)
		do(dst, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
		do(src, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
	}()
	start := time.Now()
	res, err := w.Write(ctx, tg, payload(2000, `{"v":2}`))
	took := time.Since(start)
	<-done
	if err != nil || !res.Written {
		t.Fatalf("Write during the migration = %+v, %v", res, err)
	}
	if took < 250*time.Millisecond {
		t.Errorf("Write took %v: it cannot have waited for the migration (300 ms)", took)
	}
	if got := dst.Client().Get(ctx, tg.Key).Val(); got != `{"v":2}` {
		t.Errorf("payload on the new owner = %q", got)
	}
	if got := dst.Client().Get(ctx, tg.LcutRef).Val(); got != "2000" {
		t.Errorf("lcut on the new owner = %q", got)
	}
	t.Logf("write during the migration succeeded after %v", took.Round(time.Millisecond))
}

func TestWaitReplicas(t *testing.T) {
	ctx := context.Background()
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	rdb := redis.NewClient(&redis.Options{Addr: master.Addr()})
	t.Cleanup(func() { rdb.Close() })
	w := New(rdb, 0)

	res, err := w.Write(ctx, target, payload(1, "{}"))
	if err != nil || res.Waited || res.Warning != "" {
		t.Fatalf("Write without WAIT = %+v, %v", res, err)
	}

	w.SetWaitReplicas(1, 2*time.Second)
	for lcut := int64(2); lcut < 50; lcut++ {
		res, err := w.Write(ctx, target, payload(lcut, `{"t":`+strconv.FormatInt(lcut, 10)+`}`))
		if err != nil || !res.Written || !res.Waited || res.Replicas != 1 || res.Warning != "" {
			t.Fatalf("Write with WAIT 1 = %+v, %v", res, err)
		}
		// Acknowledged means the replica has it: a read there right away
		// sees it.
		if got := replica.Client().HGet(ctx, key, "lcut").Val(); got != strconv.FormatInt(lcut, 10) {
			t.Fatalf("replica holds lcut %s right after a WAIT-acknowledged write of %d", got, lcut)
		}
	}
	res, err = w.Write(ctx, target, payload(3, "{}")) // older: nothing written, nothing to wait for
	if err != nil || res.Written || res.Waited {
		t.Fatalf("stale write with WAIT = %+v, %v", res, err)
	}

	// More replicas asked for than exist: the write is done, reported short.
	w.SetWaitReplicas(2, 200*time.Millisecond)
	start := time.Now()
	res, err = w.Write(ctx, target, payload(100, "{}"))
	took := time.Since(start)
	if err != nil || !res.Written || !res.Waited || res.Replicas != 1 || !strings.Contains(res.Warning, "1 of 2 replicas") {
		t.Fatalf("Write with WAIT 2 and one replica = %+v, %v", res, err)
	}
	if took < 190*time.Millisecond || took > 2*time.Second {
		t.Errorf("WAIT 2 with one replica took %v, want about the 200ms timeout", took)
	}

	// A replica that stops answering: 0 acknowledgements, still no error.
	replica.Pause()
	defer replica.Resume()
	w.SetWaitReplicas(1, 150*time.Millisecond)
	res, err = w.Write(ctx, target, payload(101, "{}"))
	if err != nil || !res.Written || !res.Waited || res.Replicas != 0 || !strings.Contains(res.Warning, "0 of 1 replicas") {
		t.Fatalf("Write with WAIT 1 and the replica stuck = %+v, %v", res, err)
	}
	replica.Resume()
	assertNoSecret(t, "WAIT warning", res.Warning)
	if n, d := w.WaitReplicas(); n != 1 || d != 150*time.Millisecond {
		t.Errorf("WaitReplicas() = %d, %v", n, d)
	}
	w.SetWaitReplicas(1, 0)
	if _, d := w.WaitReplicas(); d != DefaultWaitTimeout {
		t.Errorf("SetWaitReplicas(1, 0) set a timeout of %v, want %v", d, DefaultWaitTimeout)
	}
}

// On a cluster, WAIT goes to the node of the key, on the connection of its
// write (go-redis does not route a WAIT to a key's node by itself).
func TestWaitReplicasCluster(t *testing.T) {
	ctx := context.Background()
	c := redistest.StartClusterWithReplicas(t, 3, 1)
	cc := clusterClient(t, c, nil)
	w := New(cc, 0)
	w.SetWaitReplicas(1, 2*time.Second)
	l := keys.Layout{Prefix: "w:", NodeRedisHash: "h", Formats: []keys.Format{keys.SFP, keys.NodeRedis}, Schemas: []keys.Schema{keys.Hashed, keys.Prefix}}
	targets := clusterTargets(10, l)
	targets = append(targets, clusterTargets(3, keys.Layout{Prefix: "s:", Formats: []keys.Format{keys.String}, Schemas: []keys.Schema{keys.Hashed}})...)
	nodes := map[*redistest.Server]bool{}
	replicaClients := map[*redistest.Server]*redis.Client{}
	for i, tg := range targets {
		lcut := int64(1000 + i)
		res, err := w.Write(ctx, tg, payload(lcut, "{}"))
		if err != nil || !res.Written || !res.Waited || res.Replicas != 1 || res.Warning != "" {
			t.Fatalf("target %d: %+v, %v", i, res, err)
		}
		master := c.MasterFor(t, tg.Key)
		nodes[master] = true
		for _, r := range c.ReplicasOf(t, master) {
			rc := replicaClients[r]
			if rc == nil {
				rc = r.ReadOnlyClient(t)
				replicaClients[r] = rc
			}
			var got string
			switch tg.Format {
			case keys.NodeRedis:
				got = rc.HGet(ctx, tg.Key, tg.LcutRef).Val()
			case keys.String:
				got = rc.Get(ctx, tg.LcutRef).Val()
			default:
				got = rc.HGet(ctx, tg.Key, "lcut").Val()
			}
			if got != strconv.FormatInt(lcut, 10) {
				t.Errorf("target %d: its master's replica holds lcut %q right after a WAIT-acknowledged write of %d", i, got, lcut)
			}
		}
	}
	if len(nodes) < 2 {
		t.Errorf("targets on %d node(s): the test did not exercise several masters", len(nodes))
	}
}

// concurrent Inspect and Write calls on a cluster while a master dies: no
// data race in the per-node fan-out and the reload throttle.
func TestClusterConcurrentUse(t *testing.T) {
	ctx := context.Background()
	c := redistest.StartClusterWithReplicas(t, 3, 0, "--cluster-require-full-coverage", "no")
	cc := clusterClient(t, c, nil)
	w := New(cc, 0)
	targets := clusterTargets(10, sfpLayout)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(1); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = w.Inspect(ctx, targets)
				_, _ = w.Write(ctx, targets[int(i)%len(targets)], payload(i, "{}"))
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	c.MasterFor(t, targets[0].Key).Kill()
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
}
