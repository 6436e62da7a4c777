package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
	"github.com/statsig-populator/statsig-populator/pkg/redisconn"
)

const (
	keyA = "secret-aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	keyB = "secret-bbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	keyC = "secret-cccccccccccccccccccccccccccc"
)

// defaults is Env as envconfig fills it from an empty environment.
func defaults(t *testing.T) Env {
	t.Helper()
	et := reflect.TypeOf(Env{})
	for i := 0; i < et.NumField(); i++ {
		v := et.Field(i).Tag.Get("envconfig")
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	var env Env
	_, err := Load(true)
	var p Problems
	if !errors.As(err, &p) || len(p) != 1 || p[0].Var != "STATSIG_SERVER_SDK_KEYS" {
		t.Fatalf("empty environment: %v, want only the missing-key problem", err)
	}
	t.Setenv("STATSIG_SERVER_SDK_KEYS", keyA)
	c, err := Load(true)
	if err != nil {
		t.Fatal(err)
	}
	if c.APIURL != "https://api.statsigcdn.com" || c.PollInterval != 10*time.Second || c.PollConcurrency != 64 ||
		c.FetchTimeout != 30*time.Second || c.ConditionalFetchTimeout != 5*time.Second || c.MaxPayloadBytes != 268435456 ||
		c.WaitReplicas != 0 || c.WaitTimeout != 100*time.Millisecond ||
		!reflect.DeepEqual(c.Redis, redisconn.Options{Mode: redisconn.Standalone, Addrs: []string{"127.0.0.1:6379"}, PoolSize: 64 + redisPoolSpare}) ||
		c.Warnings != nil || c.MaxClockSkew != time.Hour || c.UnauthorizedDeleteAfter != 15*time.Minute ||
		c.AdminAddr != ":8080" || !c.LeaderElection || c.LeaderLease != 15*time.Second || c.MetricsPerKey ||
		c.DeleteRemovedKeys || c.CDNRootCAs != nil || c.UnauthorizedRecheck != 5*time.Minute ||
		c.Layout.Prefix != "" || c.Layout.NodeRedisHash != "statsig-redis" ||
		!reflect.DeepEqual(c.Layout.Formats, []keys.Format{keys.SFP}) || c.KeyTTL != 0 || c.DeleteOnUnauthorized || c.LogLevel != zerolog.InfoLevel || c.LogFormat != "json" ||
		!reflect.DeepEqual(c.Versions, []keys.Version{keys.V1, keys.V2}) ||
		!reflect.DeepEqual(c.Layout.Schemas, []keys.Schema{keys.Hashed, keys.Prefix}) {
		t.Fatalf("defaults differ from the documented ones: %+v", c)
	}
	os.Unsetenv("STATSIG_SERVER_SDK_KEYS")
	if err := processEnv(&env); err != nil {
		t.Fatal(err)
	}
	return env
}

func noFile(string) ([]byte, error) { return nil, fs.ErrNotExist }

func TestKeysFromBothSourcesMerged(t *testing.T) {
	env := defaults(t)
	env.SDKKeys = keyA + ", " + keyB + "\n" + keyA
	env.SDKKeysFile = "/keys"
	file := "# production keys\n" + keyC + "   # team c\n\n" + keyB + "\n"
	c, err := env.Parse(func(p string) ([]byte, error) {
		if p != "/keys" {
			t.Fatalf("read %q", p)
		}
		return []byte(file), nil
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, k := range c.SDKKeys {
		got = append(got, k.Reveal())
	}
	if want := []string{keyA, keyB, keyC}; !reflect.DeepEqual(got, want) {
		t.Fatalf("keys = %v, want %v (merged, deduplicated, in order)", got, want)
	}
}

func TestEveryProblemAtOnce(t *testing.T) {
	env := defaults(t)
	env.SDKKeys = "client-abcdefghijklmnopqrstuvwxyz," + keyA + " console-zyxwvutsrqponmlkjihgfedcba"
	env.SDKKeysFile = "/nope"
	env.APIURL = "ftp://example.com"
	env.DCSVersions = "v1,v3"
	env.PollInterval = "10"
	env.PollConcurrency = "0"
	env.FetchTimeout = "soon"
	env.MaxPayloadBytes = "lots"
	env.RedisURL = "redis://user:hunter2@[::1"
	env.RedisKeySchemas = "hashed,djb2"
	env.RedisFormats = "sfp,string"
	env.RedisNodeRedisHash = " "
	env.RedisKeyTTL = "forever"
	env.DeleteOnUnauthorized = "maybe"
	env.LogLevel = "loud"
	env.LogFormat = "xml"
	_, err := env.Parse(noFile, true)
	var p Problems
	if !errors.As(err, &p) {
		t.Fatalf("error = %v, want Problems", err)
	}
	wantVars := []string{"STATSIG_SERVER_SDK_KEYS", "STATSIG_SERVER_SDK_KEYS", "STATSIG_SERVER_SDK_KEYS_FILE", "STATSIG_API_URL",
		"STATSIG_DCS_VERSIONS", "POLL_INTERVAL", "POLL_CONCURRENCY", "FETCH_TIMEOUT", "MAX_PAYLOAD_BYTES", "REDIS_URL",
		"REDIS_KEY_SCHEMAS", "REDIS_FORMATS", "REDIS_NODE_REDIS_HASH", "REDIS_KEY_TTL", "DELETE_ON_UNAUTHORIZED", "LOG_LEVEL", "LOG_FORMAT"}
	var gotVars []string
	for _, pr := range p {
		gotVars = append(gotVars, pr.Var)
	}
	if !reflect.DeepEqual(gotVars, wantVars) {
		t.Fatalf("problems for %v\nwant %v\n%v", gotVars, wantVars, err)
	}
	msg := err.Error()
	for _, secret := range []string{"abcdefghijklmnop", "zyxwvutsrqponmlk", "hunter2", keyA} {
		if strings.Contains(msg, secret) {
			t.Errorf("message echoes a secret (%s):\n%s", secret, msg)
		}
	}
	for _, hint := range []string{"client key", "console API key", "cannot read /nope", "v3", `"10" is not a duration`, "djb2", "choose one"} {
		if !strings.Contains(msg, hint) {
			t.Errorf("message lacks %q:\n%s", hint, msg)
		}
	}
}

func TestEmptyKeysFile(t *testing.T) {
	env := defaults(t)
	env.SDKKeysFile = filepath.Join(t.TempDir(), "keys")
	os.WriteFile(env.SDKKeysFile, []byte("# none yet\n"), 0o600)
	_, err := env.Parse(os.ReadFile, true)
	if err == nil || !strings.Contains(err.Error(), "no SDK key configured") {
		t.Fatalf("error = %v", err)
	}
}

func TestValues(t *testing.T) {
	env := defaults(t)
	env.SDKKeys = keyA
	env.APIURL = "http://127.0.0.1:8080/"
	env.DCSVersions = "V2"
	env.PollInterval = "500ms"
	env.RedisURL = "rediss://:pw@redis.internal:6380/3?read_timeout=5s"
	env.RedisKeySchemas = "prefix"
	env.RedisFormats = "node-redis, string"
	env.RedisKeyPrefix = "team-a:"
	env.RedisKeyTTL = "24h"
	env.DeleteOnUnauthorized = "true"
	env.LogLevel = "DEBUG"
	env.LogFormat = "console"
	c, err := env.Parse(noFile, true)
	if err != nil {
		t.Fatal(err)
	}
	if c.APIURL != "http://127.0.0.1:8080" || !reflect.DeepEqual(c.Versions, []keys.Version{keys.V2}) ||
		c.PollInterval != 500*time.Millisecond || !reflect.DeepEqual(c.Layout, keys.Layout{Prefix: "team-a:", NodeRedisHash: "statsig-redis", Formats: []keys.Format{keys.NodeRedis, keys.String}, Schemas: []keys.Schema{keys.Prefix}}) ||
		c.KeyTTL != 24*time.Hour || c.Redis.Password != "pw" || c.Redis.DB != 3 || c.Redis.Addrs[0] != "redis.internal:6380" ||
		c.Redis.TLS == nil || c.Redis.TLS.ServerName != "redis.internal" || c.Redis.Tuning != (redisconn.Tuning{ReadTimeout: 5 * time.Second}) || !c.DeleteOnUnauthorized || c.LogLevel != zerolog.DebugLevel || c.LogFormat != "console" {
		t.Fatalf("parsed %+v", c)
	}
}
