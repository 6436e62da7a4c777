package poller

import (
	"testing"
	"time"
)

func TestQueue(t *testing.T) {
	q := newQueue()
	a, b, c := &job{}, &job{}, &job{}
	q.add(100, a)
	q.add(200, b)
	q.add(300, c)

	if at := q.sleepUntil(1000); at != 100 {
		t.Fatalf("sleepUntil = %d, want the first due time 100", at)
	}
	if got := q.takeDue(250); len(got) != 2 || got[0] != a || got[1] != b {
		t.Fatalf("takeDue(250) = %v, want a and b in order", got)
	}

	// A job back due later than the loop looks: no wake-up.
	q.sleepUntil(1000)
	a.next = 5000
	q.put(a)
	select {
	case <-q.wake:
		t.Fatal("woken for a job due after the loop's next look")
	default:
	}
	// A job back due before it: the loop is woken once.
	b.next = 250
	q.put(b)
	select {
	case <-q.wake:
	default:
		t.Fatal("not woken for a job due before the loop's next look")
	}

	// A removed job leaves the schedule: when its turn comes, or when its poll
	// in flight ends.
	q.remove([]*job{c})
	if got := q.takeDue(300); len(got) != 1 || got[0] != b {
		t.Fatalf("takeDue(300) = %v, want only b (c was removed)", got)
	}
	q.remove([]*job{b})
	b.next = 400
	q.put(b)
	if got := q.takeDue(10000); len(got) != 1 || got[0] != a {
		t.Fatalf("takeDue(10000) = %v, want only a", got)
	}

	// waitIdle returns once every job taken out is back, or says how many
	// are still out when the grace period ends.
	if n := q.waitIdle(10 * time.Millisecond); n != 1 {
		t.Fatalf("waitIdle with a out = %d, want 1", n)
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		q.put(a)
	}()
	if n := q.waitIdle(10 * time.Second); n != 0 {
		t.Fatalf("waitIdle = %d, want 0 once a is back", n)
	}
}

// BenchmarkSchedule is the schedule's part of one poll at 20,000 jobs: the
// earliest job out, back in one interval later.
func BenchmarkSchedule(b *testing.B) {
	const n, interval = 20000, int64(10 * time.Second)
	var s schedule
	for i := range n {
		s.push(interval*int64(i)/n, &job{})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		at := s[0].at
		j, _ := s.popDue(at)
		s.push(at+interval+int64(i%97)*int64(time.Millisecond), j)
	}
}
