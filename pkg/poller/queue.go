package poller

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// queue is the schedule shared by the loop and the pollers. The loop takes
// due jobs out of it in batches; a poller puts its job back as soon as the
// poll is done, under the lock, instead of sending it to the loop: at a
// thousand polls a second, waking the loop once per finished poll (a channel
// send and a select) cost more than keeping the schedule itself. The loop
// is woken only when a job comes back due before the loop meant to look.
type queue struct {
	mu       sync.Mutex
	h        schedule
	inflight int   // jobs taken out and not yet back
	wakeAt   int64 // when the loop looks next, on the Poller's clock; 0 while it runs
	idle     chan struct{}
	wake     chan struct{} // capacity 1: a job is due before wakeAt
	// retired, when set, is called for every removed job once no poll of
	// it is in flight (at once, or when its poll ends), outside the lock:
	// what a removal deletes must not be written again by a poll that was
	// already under way.
	retired func(*job)
}

func newQueue() *queue { return &queue{wake: make(chan struct{}, 1)} }

// add schedules j at at (a new job, or every job at start).
func (q *queue) add(at int64, j *job) {
	q.mu.Lock()
	q.h.push(at, j)
	q.signalLocked(at)
	q.mu.Unlock()
}

// put returns a job taken out by takeDue, scheduled at j.next, unless its key
// was removed meanwhile.
func (q *queue) put(j *job) {
	q.mu.Lock()
	q.inflight--
	j.out = false
	if !j.removed {
		q.h.push(j.next, j)
		q.signalLocked(j.next)
	}
	if q.inflight == 0 && q.idle != nil {
		close(q.idle)
		q.idle = nil
	}
	retired, removed := q.retired, j.removed
	q.mu.Unlock()
	if removed && retired != nil {
		retired(j)
	}
}

func (q *queue) signalLocked(at int64) {
	if q.wakeAt != 0 && at < q.wakeAt {
		q.wakeAt = 0
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// sleepUntil records when the loop will look next (at most at) and
// returns that time: the earliest due job or at, whichever is first.
func (q *queue) sleepUntil(at int64) int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if first, ok := q.h.first(); ok {
		at = min(at, first)
	}
	q.wakeAt = max(at, 1)
	return at
}

// takeDue removes every job due by horizon, except removed ones, which
// leave the schedule here.
func (q *queue) takeDue(horizon int64) []*job {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.wakeAt = 0
	var batch []*job
	for {
		j, ok := q.h.popDue(horizon)
		if !ok {
			break
		}
		if !j.removed {
			j.out = true
			batch = append(batch, j)
		}
	}
	q.inflight += len(batch)
	return batch
}

// remove marks jobs whose key left the configuration; each leaves the
// schedule when its turn comes, or when its poll in flight ends.
func (q *queue) remove(jobs []*job) {
	q.mu.Lock()
	var idle []*job
	for _, j := range jobs {
		j.removed = true
		if !j.out {
			idle = append(idle, j)
		}
	}
	retired := q.retired
	q.mu.Unlock()
	if retired != nil {
		for _, j := range idle {
			retired(j)
		}
	}
}

// spreadWithin makes every waiting job due within span of now, each at a
// random point, keeping any that is due sooner.
func (q *queue) spreadWithin(now, span int64, u func() float64) {
	q.mu.Lock()
	q.h.spreadWithin(now, span, u)
	q.mu.Unlock()
}

// waitIdle waits until every job taken out is back, for at most grace, and
// returns how many are still out.
func (q *queue) waitIdle(grace time.Duration) int {
	q.mu.Lock()
	if q.inflight == 0 {
		q.mu.Unlock()
		return 0
	}
	idle := make(chan struct{})
	q.idle = idle
	q.mu.Unlock()
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	select {
	case <-idle:
		return 0
	case <-deadline.C:
		q.mu.Lock()
		defer q.mu.Unlock()
		q.idle = nil
		return q.inflight
	}
}

// schedule is a min-heap of jobs by the time of their next poll. The times
// live in the heap's own array, so keeping order never touches the jobs
// themselves: with tens of thousands of jobs, chasing those pointers on every
// comparison cost more than the comparisons. It is not a container/heap
// because that boxes every pushed entry in an interface: one allocation per
// poll.
type schedule []entry

type entry struct {
	at int64 // on the Poller's clock
	j  *job
}

func (s *schedule) push(at int64, j *job) {
	*s = append(*s, entry{at, j})
	h := *s
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if h[parent].at <= h[i].at {
			break
		}
		h[parent], h[i] = h[i], h[parent]
		i = parent
	}
}

// first is the earliest time in the schedule.
func (s schedule) first() (int64, bool) {
	if len(s) == 0 {
		return 0, false
	}
	return s[0].at, true
}

// popDue removes and returns the earliest job if it is due by limit.
func (s *schedule) popDue(limit int64) (*job, bool) {
	h := *s
	if len(h) == 0 || h[0].at > limit {
		return nil, false
	}
	j := h[0].j
	last := len(h) - 1
	h[0] = h[last]
	h[last] = entry{}
	h = h[:last]
	for i := 0; ; {
		small, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && h[l].at < h[small].at {
			small = l
		}
		if r < len(h) && h[r].at < h[small].at {
			small = r
		}
		if small == i {
			break
		}
		h[i], h[small] = h[small], h[i]
		i = small
	}
	*s = h
	return j, true
}

// spreadWithin moves every job due later than now+span to a random point of
// [now, now+span), keeping the others, and restores the heap order (a sorted
// array is a heap).
func (s schedule) spreadWithin(now, span int64, u func() float64) {
	for i := range s {
		// Only the late ones move: a schedule already spread over the span
		// (a follower's) stays as even as it was.
		if s[i].at > now+span {
			s[i].at = now + int64(float64(span)*u())
		}
	}
	slices.SortFunc(s, func(a, b entry) int { return cmp.Compare(a.at, b.at) })
}
