package wiring

import (
	"reflect"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/config"
	"github.com/statsig-populator/statsig-populator/pkg/keys"
)

// Every setting that has a counterpart in the options reaches it: a field
// that stays at its zero value here was forgotten in the mapping.
func TestEverySettingReachesItsOptions(t *testing.T) {
	cfg := config.Config{
		SDKKeys: []keys.SDKKey{keys.MustParse("secret-wiring-0000000000000")}, Versions: []keys.Version{keys.V1},
		APIURL: "https://cdn.example", FetchTimeout: 3 * time.Second, ConditionalFetchTimeout: time.Second, MaxPayloadBytes: 1234, PollConcurrency: 7,
		MaxClockSkew: 7 * time.Minute, PollInterval: 11 * time.Second, DeleteOnUnauthorized: true,
		UnauthorizedRecheck: 13 * time.Second, UnauthorizedDeleteAfter: 17 * time.Minute, DeleteRemovedKeys: true,
		Layout: keys.Layout{Prefix: "p:", Formats: []keys.Format{keys.SFP}, Schemas: []keys.Schema{keys.Hashed}},
	}
	f := FetcherOptions(cfg, "ua")
	p := PollerOptions(cfg, nil)
	for name, o := range map[string]any{"fetcher": f, "poller": p} {
		v := reflect.ValueOf(o)
		for i := range v.NumField() {
			field := v.Type().Field(i)
			switch field.Name {
			case "Gate", "Now", "BatchWindow", "RedisTimeout", "ShutdownGrace", "SlowAfter":
				continue // not configuration: defaults or test hooks
			}
			if v.Field(i).IsZero() {
				t.Errorf("%s option %s is not set from the configuration", name, field.Name)
			}
		}
	}
}
