package redisconn

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Tuning is the go-redis client options that REDIS_URL's query may set. A
// zero field leaves go-redis's default (or, for PoolSize, Options.PoolSize).
// Durations follow go-redis's URL rules: a negative value disables the
// timeout or backoff.
type Tuning struct {
	Protocol                int
	ClientName              string
	MaxRetries              int
	MinRetryBackoff         time.Duration
	MaxRetryBackoff         time.Duration
	DialTimeout             time.Duration
	ReadTimeout             time.Duration
	WriteTimeout            time.Duration
	PoolFIFO                bool
	PoolSize                int
	PoolTimeout             time.Duration
	MinIdleConns            int
	MaxIdleConns            int
	MaxActiveConns          int
	MaxConcurrentDials      int
	PipelinePoolSize        int
	PipelineReadBufferSize  int
	PipelineWriteBufferSize int
	ConnMaxIdleTime         time.Duration
	ConnMaxLifetime         time.Duration
	ConnMaxLifetimeJitter   time.Duration
}

// Query is REDIS_URL's query string, read the way go-redis's ParseURL reads
// it. DB and SkipVerify are not connection tuning: the caller folds them into
// Options.DB and Options.TLS, where they meet the URL's path and the REDIS_*
// variables.
type Query struct {
	Tuning        Tuning
	DB            int
	HasDB         bool
	SkipVerify    bool
	HasSkipVerify bool
}

// MaxDB is the highest database number accepted anywhere (path, query,
// REDIS_DB). Redis's own default is 16 databases; the bound only stops
// absurd values.
const MaxDB = 1 << 20

// maxDuration bounds every duration option: a week is more than any
// timeout or connection lifetime needs, and a bare number of seconds above
// it could overflow time.Duration inside go-redis.
const maxDuration = 7 * 24 * time.Hour

type optKind int

const (
	intOpt optKind = iota
	durationOpt
	boolOpt
	nameOpt
)

type optSpec struct {
	kind     optKind
	min, max int // for intOpt
	tlsOnly  bool
}

// queryOptions is every option go-redis v9's ParseURL accepts, with the
// bounds the worker accepts. The list is explicit on purpose: an option that
// a newer go-redis adds is reported as unknown until it is listed here and
// copied into Tuning, rather than parsed and then silently dropped (the
// REDIS_URL=...?db=5 bug). TestQueryKnowsEveryGoRedisOption fails when
// go-redis accepts a name missing here.
var queryOptions = map[string]optSpec{
	"db":                         {kind: intOpt, min: 0, max: MaxDB},
	"protocol":                   {kind: intOpt, min: 2, max: 3},
	"client_name":                {kind: nameOpt},
	"max_retries":                {kind: intOpt, min: -1, max: 100}, // -1: no retries
	"min_retry_backoff":          {kind: durationOpt},
	"max_retry_backoff":          {kind: durationOpt},
	"dial_timeout":               {kind: durationOpt},
	"read_timeout":               {kind: durationOpt},
	"write_timeout":              {kind: durationOpt},
	"pool_fifo":                  {kind: boolOpt},
	"pool_size":                  {kind: intOpt, min: 1, max: 10000},
	"pool_timeout":               {kind: durationOpt},
	"min_idle_conns":             {kind: intOpt, min: 0, max: 10000},
	"max_idle_conns":             {kind: intOpt, min: 0, max: 10000},
	"max_active_conns":           {kind: intOpt, min: 0, max: 10000},
	"max_concurrent_dials":       {kind: intOpt, min: 0, max: 10000},
	"pipeline_pool_size":         {kind: intOpt, min: -1, max: 10000}, // -1: no pipeline pool
	"pipeline_read_buffer_size":  {kind: intOpt, min: 0, max: 16 << 20},
	"pipeline_write_buffer_size": {kind: intOpt, min: 0, max: 16 << 20},
	"conn_max_idle_time":         {kind: durationOpt},
	"idle_timeout":               {kind: durationOpt}, // go-redis's older name of conn_max_idle_time
	"conn_max_lifetime":          {kind: durationOpt},
	"max_conn_age":               {kind: durationOpt}, // go-redis's older name of conn_max_lifetime
	"conn_max_lifetime_jitter":   {kind: durationOpt},
	"skip_verify":                {kind: boolOpt, tlsOnly: true},
}

// ParseQuery reads REDIS_URL's raw query. tls says whether the connection
// uses TLS (skip_verify needs it). It returns one message per problem, all of
// them at once; messages name options but never quote a value, which could
// be a password pasted into the wrong place.
func ParseQuery(raw string, tls bool) (Query, []string) {
	var q Query
	if raw == "" {
		return q, nil
	}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return q, []string{"the query is not valid URL encoding (its text is not shown: it may contain a password)"}
	}
	var bad []string
	names := make([]string, 0, len(vals))
	for name := range vals {
		names = append(names, name)
	}
	slices.Sort(names)
	given := func(name string) bool { return len(vals[name]) > 0 && vals[name][len(vals[name])-1] != "" }
	for _, name := range names {
		spec, ok := queryOptions[name]
		if !ok {
			bad = append(bad, fmt.Sprintf("unknown option %s (go-redis options such as read_timeout, pool_size, db)", quoteName(name)))
			continue
		}
		vs := vals[name]
		if len(vs) > 1 {
			bad = append(bad, fmt.Sprintf("option %s is given %d times; give it once", name, len(vs)))
			continue
		}
		v := vs[0]
		if v == "" {
			continue // go-redis: an empty value means the default
		}
		if spec.tlsOnly && !tls {
			bad = append(bad, fmt.Sprintf("option %s applies only with TLS (rediss:// or REDIS_TLS=true)", name))
			continue
		}
		if msg := checkValue(spec, v); msg != "" {
			bad = append(bad, fmt.Sprintf("option %s: %s", name, msg))
		}
	}
	for _, pair := range [][2]string{{"conn_max_idle_time", "idle_timeout"}, {"conn_max_lifetime", "max_conn_age"}} {
		if given(pair[0]) && given(pair[1]) {
			bad = append(bad, fmt.Sprintf("options %s and %s are the same setting; give one", pair[0], pair[1]))
		}
	}
	// go-redis clamps the jitter to the lifetime: without a lifetime it
	// would be dropped without a word.
	if given("conn_max_lifetime_jitter") && !given("conn_max_lifetime") && !given("max_conn_age") {
		bad = append(bad, "option conn_max_lifetime_jitter needs conn_max_lifetime")
	}
	if len(bad) > 0 {
		return q, bad
	}

	// Every option is known and valid: let go-redis read them, so that
	// values mean exactly what they mean to go-redis (a bare number of
	// seconds, a negative duration disabling a timeout).
	scheme := "redis"
	if tls {
		scheme = "rediss"
	}
	o, err := redis.ParseURL(scheme + "://localhost/?" + raw)
	if err != nil {
		return q, []string{"go-redis refused the options: " + strings.TrimPrefix(err.Error(), "redis: ")}
	}
	q.Tuning = Tuning{
		Protocol:                o.Protocol,
		ClientName:              o.ClientName,
		MaxRetries:              o.MaxRetries,
		MinRetryBackoff:         o.MinRetryBackoff,
		MaxRetryBackoff:         o.MaxRetryBackoff,
		DialTimeout:             o.DialTimeout,
		ReadTimeout:             o.ReadTimeout,
		WriteTimeout:            o.WriteTimeout,
		PoolFIFO:                o.PoolFIFO,
		PoolSize:                o.PoolSize,
		PoolTimeout:             o.PoolTimeout,
		MinIdleConns:            o.MinIdleConns,
		MaxIdleConns:            o.MaxIdleConns,
		MaxActiveConns:          o.MaxActiveConns,
		MaxConcurrentDials:      o.MaxConcurrentDials,
		PipelinePoolSize:        o.PipelinePoolSize,
		PipelineReadBufferSize:  o.PipelineReadBufferSize,
		PipelineWriteBufferSize: o.PipelineWriteBufferSize,
		ConnMaxIdleTime:         o.ConnMaxIdleTime,
		ConnMaxLifetime:         o.ConnMaxLifetime,
		ConnMaxLifetimeJitter:   o.ConnMaxLifetimeJitter,
	}
	q.DB, q.HasDB = o.DB, given("db")
	if given("skip_verify") && o.TLSConfig != nil {
		q.SkipVerify, q.HasSkipVerify = o.TLSConfig.InsecureSkipVerify, true
	}
	return q, nil
}

// checkValue validates one option's value as go-redis would read it, plus
// the worker's bounds; it returns "" when the value is fine.
func checkValue(spec optSpec, v string) string {
	switch spec.kind {
	case intOpt:
		n, err := strconv.Atoi(v)
		if err != nil || n < spec.min || n > spec.max {
			return fmt.Sprintf("not a whole number from %d to %d", spec.min, spec.max)
		}
	case durationOpt:
		// go-redis reads a bare number as seconds, else a Go duration; zero
		// or less disables.
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			if n > int64(maxDuration/time.Second) {
				return "longer than " + maxDuration.String()
			}
			return ""
		}
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			return "not a duration such as 500ms or 5s (a bare number is seconds; 0 or less disables)"
		case d > maxDuration:
			return "longer than " + maxDuration.String()
		}
	case boolOpt:
		switch v {
		case "true", "false", "1", "0":
		default:
			return "not true, false, 1 or 0"
		}
	case nameOpt:
		// Redis refuses CLIENT SETNAME with spaces or control characters,
		// which would fail every connection.
		for _, c := range []byte(v) {
			if c <= ' ' || c > '~' {
				return "must be printable ASCII without spaces"
			}
		}
	}
	return ""
}

// quoteName quotes an unknown option name, shortened: it is text from the
// URL the user did not mean as an option, so keep it to a recognisable
// stub.
func quoteName(s string) string {
	if len(s) > 24 {
		s = s[:24] + "..."
	}
	return strconv.Quote(s)
}
