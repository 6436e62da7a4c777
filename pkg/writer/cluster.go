package writer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// What happens when part of Redis fails: per-target errors, slot map
// reloads on a cluster, retries while a slot migrates, and WAIT for replicas.

// ReloadMinInterval is the least time between two slot map reloads the
// writer asks for on a cluster after connection-level failures. A failover
// moves slots once; asking again on every failed command would only make
// every node answer CLUSTER SLOTS over and over while a dead master is
// dialled.
const ReloadMinInterval = 500 * time.Millisecond

// WriteAttempts bounds how many times Write runs its script while the
// target's slot is migrating (TRYAGAIN, or a redirect go-redis gave up on).
const WriteAttempts = 8

// DefaultWaitTimeout is the WAIT timeout SetWaitReplicas uses when given none.
const DefaultWaitTimeout = 100 * time.Millisecond

// IsUnreachable reports whether err means Redis (or the cluster node holding
// a key) could not be asked at all, as opposed to an answer about the key
// itself. True for a refused, reset, closed or timed-out connection, a
// context that ended, go-redis's own client-side failures (a closed client,
// an exhausted pool, a cluster without reachable nodes) and the replies of a
// node that does not serve right now: CLUSTERDOWN, MASTERDOWN, LOADING,
// TRYAGAIN, READONLY (a master demoted by a failover), BUSY, NOREPLICAS,
// NOAUTH and WRONGPASS, and a MOVED or ASK that go-redis did not follow.
// False for nil, redis.Nil, a key of another type (ErrWrongType, WRONGTYPE),
// a node out of memory for this write (OOM), a refused permission (NOPERM),
// a payload too large, and any other reply about the command or the key.
// It looks through a *TargetError to its cause.
func IsUnreachable(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) {
		return false
	}
	var te *TargetError
	if errors.As(err, &te) {
		if te.err == nil {
			return false
		}
		err = te.err
	}
	if errors.Is(err, ErrWrongType) || errors.Is(err, ErrPayloadTooLarge) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		return unreachableReply(re.Error())
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	// go-redis's own failures before or around a command: "redis: client is
	// closed", "redis: connection pool timeout", "redis: cluster has no
	// nodes", "redis: all sentinels specified in configuration are
	// unreachable"…
	return strings.HasPrefix(err.Error(), "redis: ")
}

// unreachableReply: a reply of a node that cannot serve the command now,
// whatever the key.
func unreachableReply(msg string) bool {
	for _, p := range []string{"CLUSTERDOWN", "MASTERDOWN", "LOADING", "TRYAGAIN", "READONLY", "BUSY", "NOREPLICAS",
		"NOAUTH", "WRONGPASS", "MOVED ", "ASK ", "ERR max number of clients"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// isRedirect: a MOVED or ASK reply that reached us (go-redis follows them a
// few times, then gives up, and a single node's client never follows them).
func isRedirect(err error) bool {
	var re redis.Error
	if !errors.As(err, &re) {
		return false
	}
	msg := re.Error()
	return strings.HasPrefix(msg, "MOVED ") || strings.HasPrefix(msg, "ASK ")
}

// isMigrating: the key's slot is moving between nodes; the same call
// succeeds once it has moved. A script on two keys of a migrating slot gets
// TRYAGAIN while one key has moved and the other not.
func isMigrating(err error) bool {
	var re redis.Error
	return isRedirect(err) || errors.As(err, &re) && strings.HasPrefix(re.Error(), "TRYAGAIN")
}

// retryDelay is the pause before attempt+1 of a write whose slot migrates:
// 20 ms, doubling, at most 250 ms (about 1 s over WriteAttempts).
func retryDelay(attempt int) time.Duration {
	return min(20*time.Millisecond<<min(attempt-1, 8), 250*time.Millisecond)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// byNode splits the indexes of targets into groups that each live on one
// node: a single group unless the client is a cluster client. Both keys of a
// string target share a slot, so the target's key decides.
func (w *Writer) byNode(ctx context.Context, targets []keys.Target) [][]int {
	all := func() [][]int {
		idx := make([]int, len(targets))
		for i := range idx {
			idx[i] = i
		}
		return [][]int{idx}
	}
	cc, ok := w.rdb.(*redis.ClusterClient)
	if !ok || len(targets) < 2 {
		return all()
	}
	group := map[*redis.Client]int{}
	var groups [][]int
	for i, t := range targets {
		node, err := cc.MasterForKey(ctx, t.Key)
		if err != nil {
			// No slot map at all (no node answered yet): one pipeline,
			// which fails or succeeds as a whole anyway.
			return all()
		}
		g, ok := group[node]
		if !ok {
			g = len(groups)
			group[node] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	return groups
}

// noteUnreachable asks a cluster client to reload its slot map, at most once
// per ReloadMinInterval. go-redis reloads it by itself on MOVED and
// READONLY replies and when it is older than ClusterStateReloadInterval
// (redisconn sets 2 s), but not on connection errors: without this, a master
// that died keeps being dialled until the next periodic reload, even after
// its replica took over.
func (w *Writer) noteUnreachable() {
	cc, ok := w.rdb.(*redis.ClusterClient)
	if !ok {
		return
	}
	now := time.Now().UnixNano()
	last := w.lastReload.Load()
	if now-last < int64(ReloadMinInterval) || !w.lastReload.CompareAndSwap(last, now) {
		return
	}
	cc.ReloadState(context.Background()) // asynchronous: go-redis reloads in the background
}

// seen passes err through, asking for a slot map reload when it is a
// connection-level failure.
func (w *Writer) seen(err error) error {
	if IsUnreachable(err) {
		w.noteUnreachable()
	}
	return err
}

// SetWaitReplicas makes every write that wrote something wait for n replicas
// to acknowledge it (Redis WAIT n timeout, on the connection of the write, on
// the node that holds the key), for at most timeout (<= 0:
// DefaultWaitTimeout; never 0, which would block forever). n <= 0 turns it
// off (the default). Call it before any write.
//
// It narrows, and does not close, the window in which a failover to a replica
// that had not yet received a write moves a key back in time for readers: a
// WAIT that times out leaves the write in place, done, and is reported in
// WriteResult (Replicas, Warning), not as an error. Each write then takes up
// to timeout longer while a replica lags or is down.
func (w *Writer) SetWaitReplicas(n int, timeout time.Duration) {
	if timeout <= 0 {
		timeout = DefaultWaitTimeout
	}
	w.waitReplicas, w.waitTimeout = max(n, 0), max(timeout, time.Millisecond)
}

// WaitReplicas is what SetWaitReplicas set: 0 replicas when off.
func (w *Writer) WaitReplicas() (int, time.Duration) { return w.waitReplicas, w.waitTimeout }

// writeAndWait runs the script and, when it wrote, WAIT on the same
// connection: WAIT counts the replicas that acknowledged that connection's
// last write, so on another connection it would prove nothing.
func (w *Writer) writeAndWait(ctx context.Context, t keys.Target, script *redis.Script, names []string, args []any) (WriteResult, error) {
	var conn *redis.Conn
	switch c := w.rdb.(type) {
	case *redis.ClusterClient:
		node, err := c.MasterForKey(ctx, t.Key)
		if err != nil {
			return WriteResult{}, err
		}
		conn = node.Conn()
	case interface{ Conn() *redis.Conn }: // standalone, and Sentinel's current master
		conn = c.Conn()
	default:
		res, err := scriptResult(script.Run(ctx, w.rdb, names, args...))
		if err == nil && res.Written {
			res.Warning = "written without WAIT: this Redis client cannot hold one connection for a write and its WAIT"
		}
		return res, err
	}
	defer conn.Close()
	res, err := scriptResult(script.Run(ctx, conn, names, args...))
	if isRedirect(err) {
		// The slot map is stale (MOVED) or the slot is migrating (ASK): the
		// cluster client follows redirects, a single node's connection does
		// not. Write through it; the reload makes the next WAIT possible.
		w.noteUnreachable()
		res, err = scriptResult(script.Run(ctx, w.rdb, names, args...))
		if err == nil && res.Written {
			res.Warning = "written without WAIT: the key's slot was moving between cluster nodes"
		}
		return res, err
	}
	if err != nil || !res.Written {
		return res, err
	}
	n, err := conn.Wait(ctx, w.waitReplicas, w.waitTimeout).Result()
	res.Waited = true
	if err != nil {
		w.seen(err)
		res.Warning = "WAIT after the write failed: " + err.Error()
		return res, nil
	}
	res.Replicas = int(n)
	if res.Replicas < w.waitReplicas {
		res.Warning = fmt.Sprintf("%d of %d replicas acknowledged the write within %v", n, w.waitReplicas, w.waitTimeout)
	}
	return res, nil
}
