package redisconn

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestParseQuery(t *testing.T) {
	cases := []struct {
		name    string
		raw     string
		tls     bool
		check   func(Query) bool
		wantBad []string // substrings, in order of the messages
	}{
		{"empty", "", false, func(q Query) bool { return q == Query{} }, nil},
		{"db", "db=5", false, func(q Query) bool { return q.HasDB && q.DB == 5 }, nil},
		{"db zero is given", "db=0", false, func(q Query) bool { return q.HasDB && q.DB == 0 }, nil},
		{"empty db means the default", "db=", false, func(q Query) bool { return !q.HasDB }, nil},
		{"durations", "read_timeout=5s&dial_timeout=3&write_timeout=-1", false, func(q Query) bool {
			return q.Tuning.ReadTimeout == 5*time.Second && q.Tuning.DialTimeout == 3*time.Second && q.Tuning.WriteTimeout == -1
		}, nil},
		{"every option", "db=1&protocol=2&client_name=team-a&max_retries=-1&min_retry_backoff=10ms&max_retry_backoff=1s&dial_timeout=2s" +
			"&read_timeout=4s&write_timeout=5s&pool_fifo=true&pool_size=20&pool_timeout=6s&min_idle_conns=1&max_idle_conns=7" +
			"&max_active_conns=30&max_concurrent_dials=3&pipeline_pool_size=-1&pipeline_read_buffer_size=65536" +
			"&pipeline_write_buffer_size=16384&conn_max_idle_time=1m&conn_max_lifetime=1h&conn_max_lifetime_jitter=1m&skip_verify=true", true,
			func(q Query) bool {
				return q.Tuning == Tuning{Protocol: 2, ClientName: "team-a", MaxRetries: -1, MinRetryBackoff: 10 * time.Millisecond,
					MaxRetryBackoff: time.Second, DialTimeout: 2 * time.Second, ReadTimeout: 4 * time.Second, WriteTimeout: 5 * time.Second,
					PoolFIFO: true, PoolSize: 20, PoolTimeout: 6 * time.Second, MinIdleConns: 1, MaxIdleConns: 7, MaxActiveConns: 30,
					MaxConcurrentDials: 3, PipelinePoolSize: -1, PipelineReadBufferSize: 65536, PipelineWriteBufferSize: 16384,
					ConnMaxIdleTime: time.Minute, ConnMaxLifetime: time.Hour, ConnMaxLifetimeJitter: time.Minute} &&
					q.HasDB && q.DB == 1 && q.HasSkipVerify && q.SkipVerify
			}, nil},
		{"older names", "idle_timeout=2m&max_conn_age=3h", false, func(q Query) bool {
			return q.Tuning.ConnMaxIdleTime == 2*time.Minute && q.Tuning.ConnMaxLifetime == 3*time.Hour
		}, nil},
		{"skip_verify false", "skip_verify=false", true, func(q Query) bool { return q.HasSkipVerify && !q.SkipVerify }, nil},

		{"unknown option", "read_timout=5s", false, nil, []string{`unknown option "read_timout"`}},
		{"address options are not options", "addr=x:1&password=hunter2", false, nil, []string{`unknown option "addr"`, `unknown option "password"`}},
		{"every problem at once", "db=x&pool_size=0&read_timeout=soon&pool_fifo=yes&protocol=4&bogus=1", false, nil,
			[]string{"unknown option", "option db:", "option pool_fifo:", "option pool_size:", "option protocol:", "option read_timeout:"}},
		{"negative db", "db=-1", false, nil, []string{"option db: not a whole number from 0 to"}},
		{"absurd db", "db=99999999999999999999", false, nil, []string{"option db"}},
		{"absurd pool", "pool_size=1000000000", false, nil, []string{"option pool_size: not a whole number from 1 to 10000"}},
		{"absurd idle conns", "min_idle_conns=1000000", false, nil, []string{"option min_idle_conns"}},
		{"absurd buffer", "pipeline_read_buffer_size=1073741824", false, nil, []string{"option pipeline_read_buffer_size"}},
		{"absurd retries", "max_retries=1000000", false, nil, []string{"option max_retries"}},
		// 10^10 seconds overflows time.Duration inside go-redis.
		{"absurd bare duration", "dial_timeout=10000000000", false, nil, []string{"option dial_timeout: longer than"}},
		{"absurd duration", "conn_max_lifetime=100000h", false, nil, []string{"option conn_max_lifetime: longer than"}},
		{"protocol 1", "protocol=1", false, nil, []string{"option protocol"}},
		{"client name with a space", "client_name=a%20b", false, nil, []string{"option client_name"}},
		{"repeated", "db=1&db=2", false, nil, []string{"option db is given 2 times"}},
		{"skip_verify without tls", "skip_verify=true", false, nil, []string{"skip_verify applies only with TLS"}},
		{"both names", "conn_max_idle_time=1m&idle_timeout=2m", false, nil, []string{"same setting"}},
		{"jitter without lifetime", "conn_max_lifetime_jitter=1m", false, nil, []string{"needs conn_max_lifetime"}},
		{"bad encoding", "a=%zz", false, nil, []string{"not valid URL encoding"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, bad := ParseQuery(c.raw, c.tls)
			if len(bad) != len(c.wantBad) {
				t.Fatalf("problems %q, want %d like %q", bad, len(c.wantBad), c.wantBad)
			}
			for i, w := range c.wantBad {
				if !strings.Contains(bad[i], w) {
					t.Errorf("problem %d = %q, want one containing %q", i, bad[i], w)
				}
			}
			// Values are never quoted: only option names.
			for _, v := range []string{"hunter2", "soon", "99999999999999999999", "yes"} {
				if strings.Contains(strings.Join(bad, "\n"), v) {
					t.Errorf("problems quote the value %q: %q", v, bad)
				}
			}
			if c.check != nil && !c.check(q) {
				t.Errorf("parsed %+v", q)
			}
		})
	}
}

// Every option go-redis's ParseURL accepts is either listed in queryOptions
// (and so copied into Tuning) or knowingly absent: a go-redis upgrade that
// adds one fails here instead of having it reported as unknown by surprise,
// and every listed name is one go-redis really accepts.
func TestQueryKnowsEveryGoRedisOption(t *testing.T) {
	for name, spec := range queryOptions {
		v := "1"
		switch spec.kind {
		case intOpt:
			v = "2" // within every option's bounds, protocol's included
		case nameOpt:
			v = "x"
		}
		if _, err := redis.ParseURL("rediss://localhost/?" + name + "=" + v); err != nil {
			t.Errorf("go-redis does not accept %s=%s: %v", name, v, err)
		}
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/redis/go-redis/v9").Output()
	if err != nil {
		t.Skipf("cannot locate go-redis's source: %v", err)
	}
	src, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "options.go"))
	if err != nil {
		t.Skipf("cannot read go-redis's options.go: %v", err)
	}
	body := string(src)
	start := strings.Index(body, "func setupConnParams(")
	if start < 0 {
		t.Fatal("go-redis's options.go has no setupConnParams: ParseURL changed, review queryOptions")
	}
	body = body[start:]
	if end := strings.Index(body, "\n}\n"); end > 0 {
		body = body[:end]
	}
	var accepted []string
	for _, m := range regexp.MustCompile(`q\.(?:int|duration|bool|string|strings|has)\("([a-z_]+)"\)`).FindAllStringSubmatch(body, -1) {
		if !slices.Contains(accepted, m[1]) {
			accepted = append(accepted, m[1])
		}
	}
	if len(accepted) < 10 {
		t.Fatalf("found only %v in go-redis's setupConnParams: the scan is broken", accepted)
	}
	for _, name := range accepted {
		if _, ok := queryOptions[name]; !ok {
			t.Errorf("go-redis accepts the URL option %s, which queryOptions does not list (add it and copy it into Tuning)", name)
		}
	}
}
