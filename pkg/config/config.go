// Package config turns the worker's environment variables into a typed,
// validated Config. Parsing never stops at the first mistake: every problem is
// collected and reported at once, and no message repeats a secret (SDK keys
// appear redacted; Redis URLs, STATSIG_API_URL and passwords not at all).
//
// Only cmd/ imports this package: the packages it configures take plain
// options (redisconn.Options, key lists from pkg/keys), so that they stay
// usable and testable without the environment.
package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
	"github.com/statsig-populator/statsig-populator/pkg/redisconn"
	"github.com/statsig-populator/statsig-populator/pkg/snapshot"
)

// Env is the environment as envconfig reads it. Every setting is text here so
// that Parse can report all problems together; the names are the user
// interface and never change.
type Env struct {
	SDKKeys              string `envconfig:"STATSIG_SERVER_SDK_KEYS" desc:"server secret keys, separated by commas, spaces or newlines"`
	SDKKeysFile          string `envconfig:"STATSIG_SERVER_SDK_KEYS_FILE" desc:"file with one key per line (# comments); merged with STATSIG_SERVER_SDK_KEYS"`
	APIURL               string `envconfig:"STATSIG_API_URL" default:"https://api.statsigcdn.com" desc:"CDN base URL, or file:///path/archive.tar.gz to serve a snapshot archive offline"`
	DCSVersions          string `envconfig:"STATSIG_DCS_VERSIONS" default:"v1,v2" desc:"payload formats to fetch: v1 (legacy SDKs), v2 (server-core SDKs)"`
	PollInterval         string `envconfig:"POLL_INTERVAL" default:"10s" desc:"how often each key is polled (±2% at random)"`
	IDLists              string `envconfig:"STATSIG_ID_LISTS" desc:"keep each key's ID lists current in Redis for the SDKs that read them from their adapter (statsig-node 6, go-sdk, ruby-sdk): true or false. Default true when v1 is in STATSIG_DCS_VERSIONS and REDIS_FORMATS is sfp or string alone"`
	IDListsPollInterval  string `envconfig:"ID_LISTS_POLL_INTERVAL" default:"60s" desc:"how often each key's ID-list manifest is fetched (±2% at random); the SDKs' own default is 60s"`
	PollConcurrency      string `envconfig:"POLL_CONCURRENCY" default:"64" desc:"max CDN requests in flight"`
	FetchTimeout         string `envconfig:"FETCH_TIMEOUT" default:"30s" desc:"timeout of one whole CDN request"`
	CondFetchTimeout     string `envconfig:"CONDITIONAL_FETCH_TIMEOUT" desc:"timeout of a conditional poll (sinceTime set; the answer is a few bytes unless the config changed); FETCH_TIMEOUT bounds full downloads. Default 5s, or FETCH_TIMEOUT when that is shorter"`
	MaxPayloadBytes      string `envconfig:"MAX_PAYLOAD_BYTES" default:"268435456" desc:"larger payloads are rejected, not written"`
	MaxClockSkew         string `envconfig:"MAX_CLOCK_SKEW" default:"1h" desc:"payloads dated further than this ahead of the worker's clock are refused, not written"`
	RedisURL             string `envconfig:"REDIS_URL" default:"redis://127.0.0.1:6379/0" desc:"standalone Redis: redis:// or rediss:// URL; user and password allowed"`
	RedisClusterAddrs    string `envconfig:"REDIS_CLUSTER_ADDRS" desc:"Redis Cluster seed nodes host:port, comma-separated (instead of REDIS_URL)"`
	RedisSentinelAddrs   string `envconfig:"REDIS_SENTINEL_ADDRS" desc:"Sentinel nodes host:port, comma-separated (instead of REDIS_URL)"`
	RedisSentinelMaster  string `envconfig:"REDIS_SENTINEL_MASTER" desc:"master name monitored by the Sentinels"`
	RedisSentinelPass    string `envconfig:"REDIS_SENTINEL_PASSWORD" desc:"password of the Sentinels"`
	RedisSentinelPassF   string `envconfig:"REDIS_SENTINEL_PASSWORD_FILE" desc:"file holding the Sentinels' password"`
	RedisUsername        string `envconfig:"REDIS_USERNAME" desc:"ACL user name (overrides the URL's)"`
	RedisPassword        string `envconfig:"REDIS_PASSWORD" desc:"password (overrides the URL's)"`
	RedisPasswordFile    string `envconfig:"REDIS_PASSWORD_FILE" desc:"file holding the password"`
	RedisDB              string `envconfig:"REDIS_DB" desc:"database number (overrides the URL's; must be 0 on a cluster)"`
	RedisTLS             string `envconfig:"REDIS_TLS" default:"false" desc:"connect with TLS (implied by rediss://)"`
	RedisTLSCAFile       string `envconfig:"REDIS_TLS_CA_FILE" desc:"PEM CA bundle to verify Redis (default: system roots)"`
	RedisTLSCertFile     string `envconfig:"REDIS_TLS_CERT_FILE" desc:"PEM client certificate for mutual TLS"`
	RedisTLSKeyFile      string `envconfig:"REDIS_TLS_KEY_FILE" desc:"PEM client key for mutual TLS"`
	RedisTLSServerName   string `envconfig:"REDIS_TLS_SERVER_NAME" desc:"name to verify in the server certificate (default: the host)"`
	RedisTLSInsecure     string `envconfig:"REDIS_TLS_INSECURE_SKIP_VERIFY" default:"false" desc:"do not verify the server certificate (unsafe)"`
	RedisKeyPrefix       string `envconfig:"REDIS_KEY_PREFIX" desc:"prepended to every key written"`
	RedisKeySchemas      string `envconfig:"REDIS_KEY_SCHEMAS" default:"hashed,prefix" desc:"last key segment: hashed = base64(sha256(key)), prefix = first 20 characters"`
	RedisFormats         string `envconfig:"REDIS_FORMATS" default:"sfp" desc:"layouts to write: sfp (forward-proxy HASH), node-redis (statsig-node-redis HASH), string (plain STRING at the sfp names)"`
	RedisNodeRedisHash   string `envconfig:"REDIS_NODE_REDIS_HASH" default:"statsig-redis" desc:"name of the node-redis HASH (REDIS_KEY_PREFIX is prepended)"`
	RedisKeyTTL          string `envconfig:"REDIS_KEY_TTL" default:"0" desc:"0 = keys never expire; else refreshed after every successful poll, at least twice POLL_INTERVAL"`
	RedisWaitReplicas    string `envconfig:"REDIS_WAIT_REPLICAS" default:"0" desc:"after each write, wait (Redis WAIT) for this many replicas to acknowledge it, at most REDIS_WAIT_TIMEOUT; 0 = don't wait. Narrows the window in which a Sentinel/Cluster failover to a lagging replica can move keys back in time for readers, at the cost of write latency"`
	RedisWaitTimeout     string `envconfig:"REDIS_WAIT_TIMEOUT" default:"100ms" desc:"how long a write waits at most for the REDIS_WAIT_REPLICAS acknowledgements (1ms-5s)"`
	DeleteOnUnauthorized string `envconfig:"DELETE_ON_UNAUTHORIZED" default:"false" desc:"on 401/403 delete that key's entries"`
	UnauthorizedRecheck  string `envconfig:"UNAUTHORIZED_RECHECK" default:"5m" desc:"how often a key answered 401/403 is asked again"`
	UnauthorizedDelete   string `envconfig:"UNAUTHORIZED_DELETE_AFTER" default:"15m" desc:"with DELETE_ON_UNAUTHORIZED, how long a key must be refused without a break (and at least 3 rechecks) before its entries are deleted"`
	DeleteRemovedKeys    string `envconfig:"DELETE_REMOVED_KEYS" default:"false" desc:"delete the entries of keys removed from the keys file"`
	StatsigCAFile        string `envconfig:"STATSIG_CA_FILE" desc:"PEM CA bundle trusted for the CDN in addition to the system roots"`
	AdminAddr            string `envconfig:"ADMIN_ADDR" default:":8080" desc:"admin HTTP server (healthz, readyz, status, metrics); empty disables it"`
	MetricsPerKey        string `envconfig:"METRICS_PER_KEY" default:"false" desc:"add per-key series (redacted key names) to /metrics"`
	LeaderElection       string `envconfig:"LEADER_ELECTION" default:"true" desc:"only the replica holding the Redis lease fetches and writes"`
	LeaderLease          string `envconfig:"LEADER_LEASE" default:"15s" desc:"lease duration; renewed every third of it"`
	LogLevel             string `envconfig:"LOG_LEVEL" default:"info" desc:"trace, debug, info, warn or error"`
	LogFormat            string `envconfig:"LOG_FORMAT" default:"json" desc:"json, or console for humans"`
}

// Config is the validated configuration.
type Config struct {
	SDKKeys     []keys.SDKKey // both sources, merged
	KeysFromEnv []keys.SDKKey // STATSIG_SERVER_SDK_KEYS alone
	SDKKeysFile string
	APIURL      string
	// SnapshotPath is the archive of STATSIG_API_URL=file:///…: the worker
	// serves it to its own clients (snapshot.Source) and APIURL is then
	// snapshot.SourceBaseURL. Empty when the CDN is used.
	SnapshotPath string
	Versions     []keys.Version
	PollInterval time.Duration
	// IDLists is whether ID lists are kept in Redis, every
	// IDListsPollInterval.
	IDLists             bool
	IDListsPollInterval time.Duration
	PollConcurrency     int
	FetchTimeout        time.Duration
	// ConditionalFetchTimeout bounds a poll that sends sinceTime (its answer
	// is a few bytes unless the config changed); never above FetchTimeout.
	ConditionalFetchTimeout time.Duration
	MaxPayloadBytes         int64
	// MaxClockSkew is how far ahead of the worker's clock a payload's time
	// may be; a later one is refused (it would pin the key).
	MaxClockSkew         time.Duration
	Redis                redisconn.Options
	Layout               keys.Layout // prefix, formats, schemas, node-redis hash
	KeyTTL               time.Duration
	WaitReplicas         int           // replicas to acknowledge each write (Redis WAIT); 0 = don't wait
	WaitTimeout          time.Duration // at most this long per write, with WaitReplicas
	DeleteOnUnauthorized bool
	UnauthorizedRecheck  time.Duration
	// UnauthorizedDeleteAfter is how long a key must be refused without a
	// break before DELETE_ON_UNAUTHORIZED deletes its entries.
	UnauthorizedDeleteAfter time.Duration
	DeleteRemovedKeys       bool
	// CDNRootCAs is the system roots plus STATSIG_CA_FILE; nil means the
	// system roots alone.
	CDNRootCAs     *x509.CertPool
	AdminAddr      string
	MetricsPerKey  bool
	LeaderElection bool
	LeaderLease    time.Duration
	LogLevel       zerolog.Level
	LogFormat      string
	// Warnings are settings that work but are probably a mistake or unsafe
	// (say, plain http to a remote CDN mirror); cmd logs each at start.
	Warnings []string
}

// idLists decides STATSIG_ID_LISTS and ID_LISTS_POLL_INTERVAL. ID lists are
// written in the sfp or the string layout, when that is the only one:
// node-redis values are zlib'd whole (every append would rewrite a list of
// megabytes), and with two layouts configured the SDKs reading one of them
// would not find ID lists; asking for ID lists then is a mistake reported at
// start rather than a silent no-op.
func (env Env) idLists(add func(string, string, ...any), versions []keys.Version, formats []keys.Format) (bool, time.Duration) {
	interval := duration(add, "ID_LISTS_POLL_INTERVAL", env.IDListsPollInterval, 100*time.Millisecond, 24*time.Hour)
	usable := len(formats) == 1 && (formats[0] == keys.SFP || formats[0] == keys.String)
	if strings.TrimSpace(env.IDLists) == "" {
		return slices.Contains(versions, keys.V1) && usable, interval
	}
	on := boolean(add, "STATSIG_ID_LISTS", env.IDLists)
	if on && len(formats) > 0 && !usable {
		add("STATSIG_ID_LISTS", "ID lists are written in the sfp or the string layout, alone (REDIS_FORMATS is %s): node-redis would rewrite a whole zlib'd list on every append; set REDIS_FORMATS to sfp or string, or STATSIG_ID_LISTS=false",
			strings.Join(formatNames(formats), ","))
	}
	return on, interval
}

func formatNames(fs []keys.Format) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = string(f)
	}
	return out
}

// Problem is one thing wrong with the configuration.
type Problem struct {
	Var string // the environment variable
	Msg string
}

// Problems is every thing wrong with the configuration, in variable order.
type Problems []Problem

func (p Problems) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid configuration (%d problem", len(p))
	if len(p) != 1 {
		b.WriteString("s")
	}
	b.WriteString("):")
	for _, pr := range p {
		fmt.Fprintf(&b, "\n  - %s: %s", pr.Var, pr.Msg)
	}
	return b.String()
}

// Load reads the process environment and validates it. A non-nil error is
// Problems (or an envconfig failure, which cannot happen with text fields).
// requireKeys false accepts a configuration without SDK keys, for commands
// that take them from their own arguments. Files are read with
// keys.ReadFile, so none larger than keys.MaxFileSize is accepted.
func Load(requireKeys bool) (Config, error) {
	var env Env
	if err := processEnv(&env); err != nil {
		return Config{}, err
	}
	return env.Parse(keys.ReadFile, requireKeys)
}

func processEnv(env *Env) error { return envconfig.Process("", env) }

// Usage writes a table of every variable with its default and meaning.
func Usage(w io.Writer) error {
	return envconfig.Usagef("", &Env{}, w, usageFormat)
}

const usageFormat = `Environment variables:
{{range .}}  {{usage_key .}}{{if usage_default .}} (default {{usage_default .}}){{end}}
      {{usage_description .}}
{{end}}  GOMAXPROCS (default 1)
      Go's scheduler threads; the worker runs on one unless this is set (it waits on the network nearly all the time)
`

// keepEmpty lists the variables whose empty value means something of its
// own, so that setting them empty does not bring their default back.
var keepEmpty = map[string]bool{
	// ADMIN_ADDR= turns the admin server off (README, "Configuration").
	"ADMIN_ADDR": true,
}

// withDefaults gives every variable that is set but empty its default, as if
// it were unset. envconfig applies a default only to unset variables, and an
// empty value is what a Helm template, a docker-compose file or an env file
// produces for "nothing here": LOG_LEVEL= would otherwise be an error and
// REDIS_KEY_TTL= a failed duration.
func (env Env) withDefaults() Env {
	v := reflect.ValueOf(&env).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		def, ok := f.Tag.Lookup("default")
		if ok && v.Field(i).String() == "" && !keepEmpty[f.Tag.Get("envconfig")] {
			v.Field(i).SetString(def)
		}
	}
	return env
}

// redisPoolSpare is how many Redis connections the pool holds beyond one per
// CDN request in flight: the leader lease renewal, the inspect pipeline of
// the next batch, a key deletion and the admin's checks must not wait behind
// the writes.
const redisPoolSpare = 4

// Parse validates env. readFile reads STATSIG_SERVER_SDK_KEYS_FILE, the
// *_FILE secrets and the PEM files (keys.ReadFile in Load). Variables that
// are set but empty take their default (see withDefaults).
func (env Env) Parse(readFile func(string) ([]byte, error), requireKeys bool) (Config, error) {
	env = env.withDefaults()
	var (
		c    Config
		errs Problems
	)
	add := func(v, format string, args ...any) { errs = append(errs, Problem{v, fmt.Sprintf(format, args...)}) }

	// Keys: both sources, merged, deduplicated, in order of appearance.
	fromEnv, bad := keys.ParseList(env.SDKKeys)
	for _, msg := range bad {
		add("STATSIG_SERVER_SDK_KEYS", "%s", msg)
	}
	c.KeysFromEnv = fromEnv
	c.SDKKeys = fromEnv
	if env.SDKKeysFile != "" {
		c.SDKKeysFile = env.SDKKeysFile
		data, err := readFile(env.SDKKeysFile)
		if err != nil {
			add("STATSIG_SERVER_SDK_KEYS_FILE", "cannot read %s: %v", env.SDKKeysFile, unwrapPathError(err))
		} else {
			fromFile, bad := keys.ParseList(string(data))
			for _, msg := range bad {
				add("STATSIG_SERVER_SDK_KEYS_FILE", "%s", msg)
			}
			c.SDKKeys = keys.Merge(fromEnv, fromFile)
		}
	}
	if requireKeys && len(c.SDKKeys) == 0 && !hasProblem(errs, "STATSIG_SERVER_SDK_KEYS") && !hasProblem(errs, "STATSIG_SERVER_SDK_KEYS_FILE") {
		add("STATSIG_SERVER_SDK_KEYS", "no SDK key configured: set STATSIG_SERVER_SDK_KEYS or STATSIG_SERVER_SDK_KEYS_FILE")
	}

	if path, ok, msg := snapshotPath(env.APIURL); ok {
		if msg != "" {
			add("STATSIG_API_URL", "%s", msg)
		}
		c.SnapshotPath = path
		env.APIURL = snapshot.SourceBaseURL
	}
	apiURL, apiProblems, apiWarning := checkAPIURL(env.APIURL)
	for _, msg := range apiProblems {
		add("STATSIG_API_URL", "%s", msg)
	}
	c.APIURL = apiURL
	if apiWarning != "" && c.SnapshotPath == "" {
		c.Warnings = append(c.Warnings, apiWarning)
	}

	c.Versions = list(add, "STATSIG_DCS_VERSIONS", env.DCSVersions, keys.ParseVersion, "v1, v2")

	c.PollInterval = duration(add, "POLL_INTERVAL", env.PollInterval, 100*time.Millisecond, 24*time.Hour)
	c.FetchTimeout = duration(add, "FETCH_TIMEOUT", env.FetchTimeout, 100*time.Millisecond, time.Hour)
	c.ConditionalFetchTimeout = env.conditionalFetchTimeout(add, c.FetchTimeout, hasProblem(errs, "FETCH_TIMEOUT"))
	c.PollConcurrency = int(integer(add, "POLL_CONCURRENCY", env.PollConcurrency, 1, 10000))
	c.MaxPayloadBytes = integer(add, "MAX_PAYLOAD_BYTES", env.MaxPayloadBytes, 1024, 4<<30)
	c.MaxClockSkew = duration(add, "MAX_CLOCK_SKEW", env.MaxClockSkew, time.Second, 7*24*time.Hour)

	c.Redis = env.parseRedis(add, readFile)
	if !hasProblem(errs, "POLL_CONCURRENCY") {
		c.Redis.PoolSize = c.PollConcurrency + redisPoolSpare
	}
	c.Layout.Prefix = env.RedisKeyPrefix
	c.Layout.Schemas = list(add, "REDIS_KEY_SCHEMAS", env.RedisKeySchemas, keys.ParseSchema, "hashed, prefix")
	// The key set as a whole: with the prefix schema, no two keys may share
	// their first 20 characters. The environment's keys come first in the
	// merged set, so the first messages are about them alone.
	envSet := keys.CheckSet(fromEnv, c.Layout.Schemas)
	for i, msg := range keys.CheckSet(c.SDKKeys, c.Layout.Schemas) {
		v := "STATSIG_SERVER_SDK_KEYS_FILE"
		if i < len(envSet) {
			v = "STATSIG_SERVER_SDK_KEYS"
		}
		add(v, "%s", msg)
	}
	c.Layout.Formats = list(add, "REDIS_FORMATS", env.RedisFormats, keys.ParseFormat, "sfp, node-redis, string")
	if slices.Contains(c.Layout.Formats, keys.SFP) && slices.Contains(c.Layout.Formats, keys.String) {
		add("REDIS_FORMATS", "sfp and string write the same key names (a HASH and a STRING cannot share one); choose one")
	}
	c.Layout.NodeRedisHash = env.RedisNodeRedisHash
	if strings.TrimSpace(env.RedisNodeRedisHash) == "" {
		add("REDIS_NODE_REDIS_HASH", "must not be empty")
	}
	// 0 in any spelling (0, 0s, 0h) means no expiry; anything else must be
	// a real TTL.
	if d, err := time.ParseDuration(env.RedisKeyTTL); err == nil && d == 0 {
		c.KeyTTL = 0
	} else {
		c.KeyTTL = duration(add, "REDIS_KEY_TTL", env.RedisKeyTTL, time.Second, 365*24*time.Hour)
		// A TTL must outlive the gap between two successful polls (one
		// interval, +2% jitter, plus a fetch), or keys expire under readers
		// while the worker is healthy.
		if !hasProblem(errs, "REDIS_KEY_TTL") && !hasProblem(errs, "POLL_INTERVAL") && c.KeyTTL < 2*c.PollInterval {
			add("REDIS_KEY_TTL", "%s is shorter than two poll intervals (POLL_INTERVAL is %s): keys would expire between successful polls; use at least %s, or 0 for keys that never expire",
				c.KeyTTL, c.PollInterval, 2*c.PollInterval)
		}
	}
	c.IDLists, c.IDListsPollInterval = env.idLists(add, c.Versions, c.Layout.Formats)
	c.WaitReplicas = int(integer(add, "REDIS_WAIT_REPLICAS", env.RedisWaitReplicas, 0, 16))
	c.WaitTimeout = duration(add, "REDIS_WAIT_TIMEOUT", env.RedisWaitTimeout, time.Millisecond, 5*time.Second)
	c.DeleteOnUnauthorized = boolean(add, "DELETE_ON_UNAUTHORIZED", env.DeleteOnUnauthorized)
	c.UnauthorizedRecheck = duration(add, "UNAUTHORIZED_RECHECK", env.UnauthorizedRecheck, 100*time.Millisecond, 24*time.Hour)
	c.UnauthorizedDeleteAfter = duration(add, "UNAUTHORIZED_DELETE_AFTER", env.UnauthorizedDelete, 100*time.Millisecond, 30*24*time.Hour)
	c.DeleteRemovedKeys = boolean(add, "DELETE_REMOVED_KEYS", env.DeleteRemovedKeys)
	if env.StatsigCAFile != "" {
		c.CDNRootCAs = certPool(add, "STATSIG_CA_FILE", env.StatsigCAFile, readFile)
	}
	c.AdminAddr = env.AdminAddr
	if env.AdminAddr != "" {
		// net.Listen would take ":http" or a port above 65535 only to fail
		// or surprise later; ask for a number here, where every problem is
		// reported together.
		if _, port, err := net.SplitHostPort(env.AdminAddr); err != nil {
			add("ADMIN_ADDR", "%q is not host:port (e.g. :8080); leave it empty to turn the admin server off", env.AdminAddr)
		} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			add("ADMIN_ADDR", "port %q is not a number from 0 to 65535", port)
		}
	}
	c.MetricsPerKey = boolean(add, "METRICS_PER_KEY", env.MetricsPerKey)
	c.LeaderElection = boolean(add, "LEADER_ELECTION", env.LeaderElection)
	c.LeaderLease = duration(add, "LEADER_LEASE", env.LeaderLease, 300*time.Millisecond, 10*time.Minute)

	// Only the documented levels: zerolog also parses "disabled", "fatal",
	// "panic" and numbers, which would silence every problem report.
	switch lvl := strings.ToLower(env.LogLevel); lvl {
	case "trace", "debug", "info", "warn", "error":
		c.LogLevel, _ = zerolog.ParseLevel(lvl)
	default:
		add("LOG_LEVEL", "%q is not one of trace, debug, info, warn, error", env.LogLevel)
	}
	switch f := strings.ToLower(env.LogFormat); f {
	case "json", "console":
		c.LogFormat = f
	default:
		add("LOG_FORMAT", "%q is not json or console", env.LogFormat)
	}

	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return varOrder[errs[i].Var] < varOrder[errs[j].Var] })
		// A safety net under the messages, which are written not to quote
		// secrets: should a value still carry a password (say pasted into
		// a go-redis option of REDIS_URL), it is masked.
		for i := range errs {
			errs[i].Msg = mask(errs[i].Msg, env.passwords(readFile)...)
		}
		return Config{}, errs
	}
	return c, nil
}

// defaultConditionalFetchTimeout is CONDITIONAL_FETCH_TIMEOUT when unset
// (capped at FETCH_TIMEOUT).
const defaultConditionalFetchTimeout = 5 * time.Second

// conditionalFetchTimeout parses CONDITIONAL_FETCH_TIMEOUT: 100ms up to
// FETCH_TIMEOUT (up to an hour when FETCH_TIMEOUT itself is invalid). Unset or
// empty, it is 5s, or FETCH_TIMEOUT when that is shorter; that is why Env has
// no default tag for it: a fixed default of 5s would turn every configuration
// with FETCH_TIMEOUT below 5s, valid until now, into a problem.
func (env Env) conditionalFetchTimeout(add addFunc, fetchTimeout time.Duration, fetchBad bool) time.Duration {
	if env.CondFetchTimeout == "" {
		if fetchBad {
			return defaultConditionalFetchTimeout
		}
		return min(defaultConditionalFetchTimeout, fetchTimeout)
	}
	bad := false
	d := duration(func(v, format string, args ...any) { bad = true; add(v, format, args...) },
		"CONDITIONAL_FETCH_TIMEOUT", env.CondFetchTimeout, 100*time.Millisecond, time.Hour)
	if !bad && !fetchBad && d > fetchTimeout {
		add("CONDITIONAL_FETCH_TIMEOUT", "%s is longer than FETCH_TIMEOUT (%s), which bounds every request; use at most %s", d, fetchTimeout, fetchTimeout)
	}
	return d
}

// passwords lists every Redis password the environment gives, for mask.
func (env Env) passwords(readFile func(string) ([]byte, error)) []string {
	out := []string{env.RedisPassword, env.RedisSentinelPass}
	if u, err := url.Parse(env.RedisURL); err == nil {
		pw, _ := u.User.Password()
		out = append(out, pw)
	}
	for _, f := range []string{env.RedisPasswordFile, env.RedisSentinelPassF} {
		if f == "" {
			continue
		}
		if b, err := readFile(f); err == nil {
			out = append(out, redisconn.PasswordFromFile(b))
		}
	}
	return out
}

// mask replaces every occurrence of each non-empty secret in msg.
func mask(msg string, secrets ...string) string {
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "***")
		}
	}
	return msg
}

// checkAPIURL validates STATSIG_API_URL and returns it without trailing
// slashes. Its messages describe what is wrong without quoting any part of
// the URL: userinfo would be a credential, and a path or query pasted from
// a browser may hold an SDK key (the CDN takes the key in the path). The
// warning is for plain http to another machine, where every request carries
// a secret key in clear text.
func checkAPIURL(s string) (clean string, problems []string, warning string) {
	const example = "a base URL such as https://api.statsigcdn.com is expected"
	u, err := url.Parse(s)
	if err != nil {
		return "", []string{"not a valid URL (its text is not shown: it may contain credentials or a key); " + example}, ""
	}
	// One message for "not an http(s) URL with a host": a missing scheme
	// also leaves the host empty, and two messages for one typo are noise.
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		problems = append(problems, "is not an http:// or https:// URL with a host; "+example)
	}
	if u.User != nil {
		problems = append(problems, "must not contain credentials (user:password@ before the host): the CDN needs none, and the URL is logged at start")
	}
	if port := u.Port(); u.Host != "" && port != "" {
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			problems = append(problems, "its port is not a number from 1 to 65535")
		}
	}
	if u.RawQuery != "" || u.ForceQuery {
		problems = append(problems, "must not have a query (?...): the worker appends the path and its own query")
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		problems = append(problems, "must not have a fragment (#...)")
	}
	if len(problems) > 0 {
		return "", problems, ""
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		warning = "STATSIG_API_URL uses plain http to a host other than this machine: every request carries a server secret key in its path, readable by anyone on the network; use https"
	}
	return strings.TrimRight(s, "/"), nil, warning
}

// snapshotPath reads STATSIG_API_URL=file:///path/archive.tar.gz: ok is
// true for a file URL, path is the archive, msg says what is wrong with it.
// The file need not exist yet: the worker serves it once it appears (and is
// not ready before).
func snapshotPath(s string) (path string, ok bool, msg string) {
	if !strings.HasPrefix(strings.ToLower(s), "file:") {
		return "", false, ""
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "", true, "not a valid file URL; file:///absolute/path/archive.tar.gz is expected"
	case u.Host != "" && u.Host != "localhost":
		return "", true, "a file URL names a file on this machine: file:///absolute/path/archive.tar.gz (no host)"
	case u.RawQuery != "" || u.Fragment != "":
		return "", true, "a file URL must not have a query or fragment"
	case !filepath.IsAbs(u.Path) || filepath.Clean(u.Path) != u.Path || u.Path == "/":
		return "", true, "the archive's path must be absolute and clean, and name a file: file:///absolute/path/archive.tar.gz"
	case len(u.Path) > 4096:
		return "", true, "the archive's path is longer than 4096 bytes (PATH_MAX)"
	}
	return u.Path, true, ""
}

// isLoopback: localhost, 127.0.0.0/8 and ::1, where plain http does not
// leave the machine.
func isLoopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// varOrder sorts problems in the order of Env's fields.
var varOrder = func() map[string]int {
	m := map[string]int{}
	t := reflect.TypeOf(Env{})
	for i := 0; i < t.NumField(); i++ {
		m[t.Field(i).Tag.Get("envconfig")] = i
	}
	return m
}()

// splitList splits on commas and any white space, dropping empty items.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t'
	})
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		s = strings.ToLower(s)
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func hasProblem(p Problems, v string) bool {
	for _, pr := range p {
		if pr.Var == v {
			return true
		}
	}
	return false
}

type addFunc func(v, format string, args ...any)

// list parses a list of distinct values separated by commas or spaces,
// reporting each bad one, and an empty list when nothing bad was reported.
func list[T any](add addFunc, v, text string, parse func(string) (T, error), choices string) []T {
	var out []T
	bad := false
	for _, s := range dedupe(splitList(text)) {
		x, err := parse(s)
		if err != nil {
			add(v, "%v", err)
			bad = true
			continue
		}
		out = append(out, x)
	}
	if len(out) == 0 && !bad {
		add(v, "at least one of %s is needed", choices)
	}
	return out
}

func duration(add addFunc, v, s string, min, max time.Duration) time.Duration {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		add(v, "%q is not a duration (examples: 500ms, 10s, 5m)", s)
	case d < min || d > max:
		add(v, "%s is outside %s…%s", d, min, max)
	}
	return d
}

func integer(add addFunc, v, s string, min, max int64) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case err != nil:
		add(v, "%q is not a whole number", s)
	case n < min || n > max:
		add(v, "%d is outside %d…%d", n, min, max)
	}
	return n
}

func boolean(add addFunc, v, s string) bool {
	b, err := strconv.ParseBool(s)
	if err != nil {
		add(v, "%q is not true or false", s)
	}
	return b
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
