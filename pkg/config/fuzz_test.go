package config

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// FuzzParse feeds arbitrary text into the settings most likely to hold typos
// and secrets: parsing must never panic, must report problems as Problems,
// must never echo a Redis password or a whole SDK key, and what it accepts
// must hold its invariants.
func FuzzParse(f *testing.F) {
	f.Add("secret-abcdefghijkl", "v1,v2", "10s", "64", "redis://:pw123456@127.0.0.1:6379/0", "hashed,prefix", "sfp", "0", "true")
	f.Add("client-abcdefghijkl, secret-x", "v3", "10", "-1", "redis://[::1", "djb2", "sfp,string", "forever", "maybe")
	f.Add("", "", "", "", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, keyText, versions, interval, conc, redisURL, schemas, formats, ttl, boolean string) {
		env := Env{
			SDKKeys: keyText, APIURL: "https://api.statsigcdn.com", DCSVersions: versions, PollInterval: interval,
			PollConcurrency: conc, FetchTimeout: "30s", MaxPayloadBytes: "268435456", RedisURL: redisURL,
			RedisKeySchemas: schemas, RedisFormats: formats, RedisNodeRedisHash: "statsig-redis", RedisKeyTTL: ttl,
			RedisTLS: "false", RedisTLSInsecure: "false", DeleteOnUnauthorized: boolean, UnauthorizedRecheck: "5m",
			DeleteRemovedKeys: "false", AdminAddr: ":8080", MetricsPerKey: "false", LeaderElection: "true",
			LeaderLease: "15s", LogLevel: "info", LogFormat: "json",
		}
		c, err := env.Parse(noFile, true)
		if err != nil {
			var p Problems
			if !errors.As(err, &p) || len(p) == 0 {
				t.Fatalf("error is not Problems: %v", err)
			}
			msg := err.Error()
			if u, perr := url.Parse(redisURL); perr == nil {
				if pw, ok := u.User.Password(); ok && len(pw) >= 6 && !strings.Contains(strings.Join([]string{keyText, versions, interval, conc, schemas, formats, ttl, boolean}, " "), pw) && strings.Contains(msg, pw) {
					t.Fatalf("message echoes the Redis password %q:\n%s", pw, msg)
				}
			}
			for _, tok := range splitList(keys.StripComments(keyText)) {
				others := strings.Join([]string{versions, interval, conc, redisURL, schemas, formats, ttl, boolean}, " ")
				if len(tok) >= 12 && !strings.Contains(others, tok) && strings.Contains(msg, tok) {
					t.Fatalf("message echoes a whole key %q:\n%s", tok, msg)
				}
			}
			return
		}
		if len(c.SDKKeys) == 0 || len(c.Versions) == 0 || len(c.Layout.Schemas) == 0 || len(c.Layout.Formats) == 0 ||
			c.PollInterval < 100e6 || c.PollConcurrency < 1 || len(c.Redis.Addrs) == 0 ||
			(c.KeyTTL != 0 && c.KeyTTL < 2*c.PollInterval) || c.ConditionalFetchTimeout > c.FetchTimeout {
			t.Fatalf("accepted an unusable configuration: %+v", c)
		}
		for _, k := range c.SDKKeys {
			if _, err := keys.Parse(k.Reveal()); err != nil {
				t.Fatalf("accepted an invalid key: %v", err)
			}
		}
	})
}
