package poller

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/statsig-populator/statsig-populator/internal/fakecdn"
	"github.com/statsig-populator/statsig-populator/internal/redistest"
	"github.com/statsig-populator/statsig-populator/pkg/fetcher"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
	"github.com/statsig-populator/statsig-populator/pkg/writer"
)

// BenchmarkValidateAndWrite measures what the worker does with a fetched
// payload: validate it, then write it into one Redis key with the monotonic
// script (a new lcut every iteration, so every write really happens).
func BenchmarkValidateAndWrite(b *testing.B) {
	for _, size := range []struct {
		name   string
		filler int
	}{{"1MB", 2000}, {"20MB", 40000}} {
		b.Run(size.name, func(b *testing.B) {
			srv := redistest.Start(b)
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
			defer rdb.Close()
			w := writer.New(rdb, 0)
			body := fakecdn.V2Body(testKey, fakecdn.Project{Lcut: 1, Value: 1, Filler: size.filler})
			hashed := testKey.HashedSDKKeyUsed()
			ctx := context.Background()
			name := keys.Targets("", testKey, keys.V2, []keys.Schema{keys.Hashed})[0]
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				meta, err := fetcher.Validate(body, keys.V2, hashed)
				if err != nil {
					b.Fatal(err)
				}
				res, err := w.Write(ctx, name, &writer.Payload{Body: body, Lcut: meta.Time + int64(i)})
				if err != nil || !res.Written {
					b.Fatalf("write: %+v %v", res, err)
				}
			}
		})
	}
}

// BenchmarkValidate is validation alone, to separate it from Redis.
func BenchmarkValidate(b *testing.B) {
	body := fakecdn.V2Body(testKey, fakecdn.Project{Lcut: 1, Value: 1, Filler: 40000})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := fetcher.Validate(body, keys.V2, testKey.HashedSDKKeyUsed()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSteadyStatePoll is one poll of a key that has not changed: the
// Redis check, the conditional GET answered "no updates", the bookkeeping.
func BenchmarkSteadyStatePoll(b *testing.B) {
	h := newHarness(b, Options{Keys: []keys.SDKKey{testKey}, Versions: []keys.Version{keys.V1}, Interval: time.Hour})
	h.cdn.SetLogLimit(0)
	ctx := context.Background()
	if st := h.poller.Once(ctx); !st[0].Current {
		b.Fatalf("initial sync failed: %+v", st[0])
	}
	j := h.poller.jobs[0]
	done := make(chan *job, 1)
	finished := func(j *job) { done <- j }
	tasks, stop := h.poller.startPollers(ctx, finished)
	defer stop()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.poller.runBatch(ctx, []*job{j}, tasks, finished)
		<-done
	}
	b.StopTimer()
	if st := h.poller.Statuses()[0]; st.LastOutcome != "no_update" || h.cdn.Count("full") != 1 {
		b.Fatalf("steady state was not steady: %+v, %d full payloads", st, h.cdn.Count("full"))
	}
}
