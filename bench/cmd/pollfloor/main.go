// Command pollfloor is the polling floor: the least a program can do to poll
// every (SDK key, version) once per interval. One conditional GET each
// (sinceTime from the last x-since-time), the body discarded; no validation,
// no Redis, no metrics, no logs. Requests are spread evenly over the
// interval, at most -concurrency in flight, on keep-alive connections with the
// same net/http transport settings as the worker.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type job struct {
	url    string
	cursor int64
}

func main() {
	keysFile := flag.String("keys", "", "file with one SDK key per line")
	api := flag.String("api", "", "CDN base URL (loopback)")
	vers := flag.String("versions", "v1,v2", "payload versions")
	interval := flag.Duration("interval", 10*time.Second, "poll interval")
	conc := flag.Int("concurrency", 64, "requests in flight at most")
	flag.Parse()
	if !strings.HasPrefix(*api, "http://127.") && !strings.HasPrefix(*api, "http://localhost") {
		log.Fatalf("-api must be a loopback URL")
	}

	f, err := os.Open(*keysFile)
	if err != nil {
		log.Fatal(err)
	}
	var jobs []*job
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k := strings.TrimSpace(sc.Text())
		if k == "" || strings.HasPrefix(k, "#") {
			continue
		}
		for _, v := range strings.Split(*vers, ",") {
			jobs = append(jobs, &job{url: *api + "/" + v + "/download_config_specs/" + k + ".json"})
		}
	}
	f.Close()

	client := &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        *conc,
		MaxIdleConnsPerHost: *conc,
		IdleConnTimeout:     90 * time.Second,
	}, Timeout: 30 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	sem := make(chan struct{}, *conc)
	fmt.Printf("polling %d jobs every %s\n", len(jobs), *interval)

	// Job i is due at start + i·interval/len(jobs) + r·interval in round r. The
	// loop sleeps until the next job is due and then starts every job due
	// within the batch window (the worker's: min(interval/100, 100ms)).
	start := time.Now()
	window := min(*interval/100, 100*time.Millisecond) // the worker's batch window
	due := func(n int) time.Time {
		round, i := n/len(jobs), n%len(jobs)
		return start.Add(time.Duration(round)*(*interval) + time.Duration(int64(*interval)*int64(i)/int64(len(jobs))))
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	next := 0 // the next job to start, counted over all rounds
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		horizon := time.Now().Add(window)
		for !due(next).After(horizon) {
			j := jobs[next%len(jobs)]
			next++
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				poll(ctx, client, j)
			}()
		}
		timer.Reset(time.Until(due(next)))
	}
}

func poll(ctx context.Context, c *http.Client, j *job) {
	u := j.url
	if j.cursor > 0 {
		u += "?sinceTime=" + strconv.FormatInt(j.cursor, 10)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return
	}
	resp, err := c.Do(req)
	if err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n, err := strconv.ParseInt(resp.Header.Get("X-Since-Time"), 10, 64); err == nil && n > 0 {
		j.cursor = n
	}
}
