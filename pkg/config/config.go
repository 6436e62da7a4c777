// Package config turns the worker's environment variables into a typed,
// validated Config. Parsing never stops at the first mistake: every problem is
// collected and reported at once, and no message repeats a secret (SDK keys
// appear redacted, Redis URLs and passwords not at all).
package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// Env is the environment as envconfig reads it. Every setting is text here so
// that Parse can report all problems together; the names are the user
// interface and never change.
type Env struct {
	SDKKeys              string `envconfig:"STATSIG_SERVER_SDK_KEYS" desc:"server secret keys, separated by commas, spaces or newlines"`
	SDKKeysFile          string `envconfig:"STATSIG_SERVER_SDK_KEYS_FILE" desc:"file with one key per line (# comments); merged with STATSIG_SERVER_SDK_KEYS"`
	APIURL               string `envconfig:"STATSIG_API_URL" default:"https://api.statsigcdn.com" desc:"CDN base URL"`
	DCSVersions          string `envconfig:"STATSIG_DCS_VERSIONS" default:"v1,v2" desc:"payload formats to fetch: v1 (legacy SDKs), v2 (server-core SDKs)"`
	PollInterval         string `envconfig:"POLL_INTERVAL" default:"10s" desc:"how often each key is polled (±2% at random)"`
	PollConcurrency      string `envconfig:"POLL_CONCURRENCY" default:"64" desc:"max CDN requests in flight"`
	FetchTimeout         string `envconfig:"FETCH_TIMEOUT" default:"30s" desc:"timeout of one whole CDN request"`
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
	RedisKeyTTL          string `envconfig:"REDIS_KEY_TTL" default:"0" desc:"0 = keys never expire; else refreshed after every successful poll"`
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
	SDKKeys         []keys.SDKKey // both sources, merged
	KeysFromEnv     []keys.SDKKey // STATSIG_SERVER_SDK_KEYS alone
	SDKKeysFile     string
	APIURL          string
	Versions        []keys.Version
	PollInterval    time.Duration
	PollConcurrency int
	FetchTimeout    time.Duration
	MaxPayloadBytes int64
	// MaxClockSkew is how far ahead of the worker's clock a payload's time
	// may be; a later one is refused (it would pin the key).
	MaxClockSkew         time.Duration
	Redis                Redis
	Layout               keys.Layout // prefix, formats, schemas, node-redis hash
	KeyTTL               time.Duration
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
// that take them from their own arguments.
func Load(requireKeys bool) (Config, error) {
	var env Env
	if err := processEnv(&env); err != nil {
		return Config{}, err
	}
	return env.Parse(os.ReadFile, requireKeys)
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

// Parse validates env. readFile reads STATSIG_SERVER_SDK_KEYS_FILE (os.ReadFile
// outside tests).
func (env Env) Parse(readFile func(string) ([]byte, error), requireKeys bool) (Config, error) {
	var (
		c    Config
		errs Problems
	)
	add := func(v, format string, args ...any) { errs = append(errs, Problem{v, fmt.Sprintf(format, args...)}) }

	// Keys: both sources, merged, deduplicated, in order of appearance.
	fromEnv, bad := ParseKeys(env.SDKKeys)
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
			fromFile, bad := ParseKeys(string(data))
			for _, msg := range bad {
				add("STATSIG_SERVER_SDK_KEYS_FILE", "%s", msg)
			}
			c.SDKKeys = MergeKeys(fromEnv, fromFile)
		}
	}
	if requireKeys && len(c.SDKKeys) == 0 && !hasProblem(errs, "STATSIG_SERVER_SDK_KEYS") && !hasProblem(errs, "STATSIG_SERVER_SDK_KEYS_FILE") {
		add("STATSIG_SERVER_SDK_KEYS", "no SDK key configured: set STATSIG_SERVER_SDK_KEYS or STATSIG_SERVER_SDK_KEYS_FILE")
	}

	if u, err := url.Parse(env.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		add("STATSIG_API_URL", "%q is not an http(s) base URL such as https://api.statsigcdn.com", env.APIURL)
	} else {
		c.APIURL = strings.TrimRight(env.APIURL, "/")
	}

	c.Versions = list(add, "STATSIG_DCS_VERSIONS", env.DCSVersions, keys.ParseVersion, "v1, v2")

	c.PollInterval = duration(add, "POLL_INTERVAL", env.PollInterval, 100*time.Millisecond, 24*time.Hour)
	c.FetchTimeout = duration(add, "FETCH_TIMEOUT", env.FetchTimeout, 100*time.Millisecond, time.Hour)
	c.PollConcurrency = int(integer(add, "POLL_CONCURRENCY", env.PollConcurrency, 1, 10000))
	c.MaxPayloadBytes = integer(add, "MAX_PAYLOAD_BYTES", env.MaxPayloadBytes, 1024, 4<<30)
	c.MaxClockSkew = duration(add, "MAX_CLOCK_SKEW", env.MaxClockSkew, time.Second, 7*24*time.Hour)

	c.Redis = env.parseRedis(add, readFile)
	c.Layout.Prefix = env.RedisKeyPrefix
	c.Layout.Schemas = list(add, "REDIS_KEY_SCHEMAS", env.RedisKeySchemas, keys.ParseSchema, "hashed, prefix")
	c.Layout.Formats = list(add, "REDIS_FORMATS", env.RedisFormats, keys.ParseFormat, "sfp, node-redis, string")
	if slices.Contains(c.Layout.Formats, keys.SFP) && slices.Contains(c.Layout.Formats, keys.String) {
		add("REDIS_FORMATS", "sfp and string write the same key names (a HASH and a STRING cannot share one); choose one")
	}
	c.Layout.NodeRedisHash = env.RedisNodeRedisHash
	if strings.TrimSpace(env.RedisNodeRedisHash) == "" {
		add("REDIS_NODE_REDIS_HASH", "must not be empty")
	}
	if env.RedisKeyTTL == "0" {
		c.KeyTTL = 0
	} else {
		c.KeyTTL = duration(add, "REDIS_KEY_TTL", env.RedisKeyTTL, time.Second, 365*24*time.Hour)
	}
	c.DeleteOnUnauthorized = boolean(add, "DELETE_ON_UNAUTHORIZED", env.DeleteOnUnauthorized)
	c.UnauthorizedRecheck = duration(add, "UNAUTHORIZED_RECHECK", env.UnauthorizedRecheck, 100*time.Millisecond, 24*time.Hour)
	c.UnauthorizedDeleteAfter = duration(add, "UNAUTHORIZED_DELETE_AFTER", env.UnauthorizedDelete, 100*time.Millisecond, 30*24*time.Hour)
	c.DeleteRemovedKeys = boolean(add, "DELETE_REMOVED_KEYS", env.DeleteRemovedKeys)
	if env.StatsigCAFile != "" {
		c.CDNRootCAs = certPool(add, "STATSIG_CA_FILE", env.StatsigCAFile, readFile)
	}
	c.AdminAddr = env.AdminAddr
	if env.AdminAddr != "" {
		if _, _, err := net.SplitHostPort(env.AdminAddr); err != nil {
			add("ADMIN_ADDR", "%q is not host:port (e.g. :8080)", env.AdminAddr)
		}
	}
	c.MetricsPerKey = boolean(add, "METRICS_PER_KEY", env.MetricsPerKey)
	c.LeaderElection = boolean(add, "LEADER_ELECTION", env.LeaderElection)
	c.LeaderLease = duration(add, "LEADER_LEASE", env.LeaderLease, 300*time.Millisecond, 10*time.Minute)

	if lvl, err := zerolog.ParseLevel(strings.ToLower(env.LogLevel)); err != nil || env.LogLevel == "" {
		add("LOG_LEVEL", "%q is not one of trace, debug, info, warn, error", env.LogLevel)
	} else {
		c.LogLevel = lvl
	}
	switch f := strings.ToLower(env.LogFormat); f {
	case "json", "console":
		c.LogFormat = f
	default:
		add("LOG_FORMAT", "%q is not json or console", env.LogFormat)
	}

	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return varOrder[errs[i].Var] < varOrder[errs[j].Var] })
		return Config{}, errs
	}
	return c, nil
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

// ParseKeys reads a list of SDK keys separated by commas, white space or
// newlines, where '#' starts a comment. It returns the valid keys, without
// duplicates, and a message per invalid one (redacted).
func ParseKeys(text string) ([]keys.SDKKey, []string) {
	var (
		out  []keys.SDKKey
		bad  []string
		seen = map[string]bool{}
	)
	for i, raw := range splitList(StripComments(text)) {
		k, err := keys.Parse(raw)
		if err != nil {
			bad = append(bad, fmt.Sprintf("key %d: %v", i+1, err))
			continue
		}
		if !seen[raw] {
			seen[raw] = true
			out = append(out, k)
		}
	}
	return out, bad
}

// MergeKeys concatenates key lists, dropping duplicates, in order.
func MergeKeys(lists ...[]keys.SDKKey) []keys.SDKKey {
	var out []keys.SDKKey
	seen := map[string]bool{}
	for _, l := range lists {
		for _, k := range l {
			if !seen[k.Reveal()] {
				seen[k.Reveal()] = true
				out = append(out, k)
			}
		}
	}
	return out
}

// StripComments removes everything from a '#' to the end of its line.
func StripComments(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if j := strings.IndexByte(l, '#'); j >= 0 {
			lines[i] = l[:j]
		}
	}
	return strings.Join(lines, "\n")
}

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
