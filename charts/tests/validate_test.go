package tests

import (
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/lint/support"
	networkingv1 "k8s.io/api/networking/v1"
)

const oneKey = "sdkKeys: [secret-testKeyOne0123456789abcdefghij]\n"

// TestSchemaRejects: values.schema.json refuses wrong types, unknown keys and out-of-range values
// before any template runs.
func TestSchemaRejects(t *testing.T) {
	cases := []struct {
		name, values, want string
	}{
		{"unknown mode", "mode: daemonset", "/mode"},
		{"negative replicas", "replicaCount: -1", "/replicaCount"},
		{"replicas as a string", `replicaCount: "2"`, "/replicaCount"},
		{"unknown top-level key", "replicas: 2", "replicas"},
		{"misspelt nested key", "redis: {hots: redis}", "hots"},
		{"sdkKeys not a list", "sdkKeys: secret-testKeyOne0123456789abcdefghij", "/sdkKeys"},
		{"empty key in the list", `sdkKeys: [""]`, "/sdkKeys/0"},
		{"poll interval without unit", "statsig: {pollInterval: '10'}", "/statsig/pollInterval"},
		{"poll interval as a number", "statsig: {pollInterval: 10}", "/statsig/pollInterval"},
		{"concurrency zero", "statsig: {pollConcurrency: 0}", "/statsig/pollConcurrency"},
		{"payload limit too small", "statsig: {maxPayloadBytes: 10}", "/statsig/maxPayloadBytes"},
		{"unknown DCS version", "statsig: {dcsVersions: [v3]}", "/statsig/dcsVersions/0"},
		{"no DCS version", "statsig: {dcsVersions: []}", "/statsig/dcsVersions"},
		{"API URL not http", "statsig: {apiUrl: 'ftp://cdn'}", "/statsig/apiUrl"},
		{"conditional timeout without unit", "statsig: {conditionalFetchTimeout: '5'}", "/statsig/conditionalFetchTimeout"},
		{"conditional timeout as a number", "statsig: {conditionalFetchTimeout: 5}", "/statsig/conditionalFetchTimeout"},
		{"boolean as a string", `statsig: {deleteOnUnauthorized: "yes"}`, "/statsig/deleteOnUnauthorized"},
		{"port out of range", "redis: {port: 70000}", "/redis/port"},
		{"port as a string", `redis: {port: "6379"}`, "/redis/port"},
		{"negative db", "redis: {db: -1}", "/redis/db"},
		{"host with credentials", "redis: {host: 'user:pw@redis'}", "/redis/host"},
		{"cluster address without port", "redis: {cluster: {addrs: [redis-0]}}", "/redis/cluster/addrs/0"},
		{"unknown format", "redis: {formats: [json]}", "/redis/formats/0"},
		{"unknown schema", "redis: {keySchemas: [sha1]}", "/redis/keySchemas/0"},
		{"bad TTL", "redis: {keyTTL: forever}", "/redis/keyTTL"},
		{"too many wait replicas", "redis: {waitReplicas: 17}", "/redis/waitReplicas"},
		{"negative wait replicas", "redis: {waitReplicas: -1}", "/redis/waitReplicas"},
		{"wait replicas as a string", `redis: {waitReplicas: "1"}`, "/redis/waitReplicas"},
		{"wait timeout without unit", "redis: {waitTimeout: '100'}", "/redis/waitTimeout"},
		{"empty wait timeout", `redis: {waitTimeout: ""}`, "/redis/waitTimeout"},
		{"TLS flag as a string", `redis: {tls: {enabled: "true"}}`, "/redis/tls/enabled"},
		{"unknown log level", "log: {level: verbose}", "/log/level"},
		{"unknown log format", "log: {format: text}", "/log/format"},
		{"bad lease", "leaderElection: {lease: soon}", "/leaderElection/lease"},
		{"bad pull policy", "image: {pullPolicy: Sometimes}", "/image/pullPolicy"},
		{"bad digest", "image: {digest: latest}", "/image/digest"},
		{"bad anti-affinity preset", "podAntiAffinityPreset: medium", "/podAntiAffinityPreset"},
		{"bad concurrency policy", "cronjob: {concurrencyPolicy: Sometimes}", "/cronjob/concurrencyPolicy"},
		{"bad CIDR", "networkPolicy: {cdn: {cidrs: [anywhere]}}", "/networkPolicy/cdn/cidrs/0"},
		{"bad peer", "networkPolicy: {redis: {to: [{hostname: redis}]}}", "hostname"},
		{"pod annotations not strings", "podAnnotations: {a: 1}", "/podAnnotations/a"},
		{"resources not an object", "resources: 1Gi", "/resources"},
		{"probe threshold zero", "startupProbe: {failureThreshold: 0}", "/startupProbe/failureThreshold"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := render(t, oneKey, c.values)
			if err == nil {
				t.Fatalf("values accepted:\n%s", c.values)
			}
			msg := err.Error()
			if !strings.Contains(msg, "values don't meet the specifications of the schema") {
				t.Errorf("want a schema error, got: %v", err)
			}
			if !strings.Contains(msg, c.want) {
				t.Errorf("the error should point at %q, got: %v", c.want, err)
			}
		})
	}
}

// TestSchemaAccepts: values of the right types that the schema must not refuse.
func TestSchemaAccepts(t *testing.T) {
	for _, v := range []string{
		"redis: {keyTTL: 0}",
		"redis: {keyTTL: 1h30m}",
		"redis: {waitReplicas: 16, waitTimeout: 5s}",
		"statsig: {conditionalFetchTimeout: 500ms}",
		`statsig: {conditionalFetchTimeout: ""}`,
		"redis: {options: {pool_size: 20, read_timeout: 5s, pool_fifo: true}}",
		"redis: {host: 'fd00::1'}",
		`podDisruptionBudget: {enabled: true, maxUnavailable: "50%"}`,
		"podDisruptionBudget: {enabled: true, minAvailable: 1}",
		"replicaCount: 0",
		"global: {imageRegistry: example.com}",
		"livenessProbe: {httpGet: null, exec: {command: [/populator, healthcheck]}}",
		"networkPolicy: {enabled: true, dns: {to: [{ipBlock: {cidr: 169.254.20.10/32}}]}, cdn: {cidrs: ['::/0', 0.0.0.0/0]}}",
	} {
		if _, err := render(t, oneKey, v); err != nil {
			t.Errorf("values refused:\n%s\n%v", v, err)
		}
	}
	// Exceptions apply to the CIDRs of their own IP family only.
	r := mustRender(t, oneKey, "networkPolicy: {enabled: true, cdn: {cidrs: [0.0.0.0/0, '::/0'], except: [10.0.0.0/8, 'fd00::/8']}}")
	np := typed(t, r.one(t, "NetworkPolicy")).(*networkingv1.NetworkPolicy)
	wantEqual(t, "IPv4 block", *np.Spec.Egress[1].To[0].IPBlock, networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8"}})
	wantEqual(t, "IPv6 block", *np.Spec.Egress[1].To[1].IPBlock, networkingv1.IPBlock{CIDR: "::/0", Except: []string{"fd00::/8"}})

	// An IPv6 host is bracketed in REDIS_URL.
	env := configOf(t, mustRender(t, oneKey, "redis: {host: 'fd00::1', options: {dial_timeout: 3s}}"))
	wantEqual(t, "REDIS_URL", env["REDIS_URL"], "redis://[fd00::1]:6379/0?dial_timeout=3s")
}

// TestTemplateChecks: combinations the schema cannot express fail with a message naming the
// value to change, and never quote a secret.
func TestTemplateChecks(t *testing.T) {
	cases := []struct {
		name   string
		values []string
		want   string
	}{
		{"no SDK key", []string{""}, "no SDK key: set sdkKeys"},
		{"keys and existingSecret", []string{oneKey, "existingSecret: keys"}, "set sdkKeys or existingSecret, not both"},
		{"client key", []string{"sdkKeys: [client-abcDEF123456789]"}, "sdkKeys[0] is a client key"},
		{"console key", []string{"sdkKeys: [secret-testKeyOne0123456789abcdefghij, console-abcDEF123456789]"}, "sdkKeys[1] is a console API key"},
		{"malformed key", []string{"sdkKeys: ['secret-has space']"}, "sdkKeys[0] is not a server secret key"},
		{"password and existingSecret", []string{oneKey, "redis: {password: redis-pass-Zq9, existingSecret: r}"}, "set redis.password or redis.existingSecret, not both"},
		{"sentinel key without secret", []string{oneKey, "redis: {sentinel: {addrs: ['s:26379'], master: m, existingSecretKey: k}}"}, "redis.sentinel.existingSecretKey needs redis.existingSecret"},
		{"sentinel password with existing secret", []string{oneKey, "redis: {existingSecret: r, sentinel: {addrs: ['s:26379'], master: m, password: sentinel-pass-Xw7}}"}, "redis.sentinel.existingSecretKey instead"},
		{"sentinel password without sentinels", []string{oneKey, "redis: {sentinel: {password: sentinel-pass-Xw7}}"}, "redis.sentinel.addrs is empty"},
		{"cluster and sentinel", []string{oneKey, "redis: {cluster: {addrs: ['a:1']}, sentinel: {addrs: ['b:2'], master: m}}"}, "not both"},
		{"sentinel without master", []string{oneKey, "redis: {sentinel: {addrs: ['b:2']}}"}, "redis.sentinel.master is required"},
		{"cluster with db", []string{oneKey, "redis: {db: 1, cluster: {addrs: ['a:1']}}"}, "redis.db must be 0"},
		{"tls settings without tls", []string{oneKey, "redis: {tls: {existingSecret: t}}"}, "redis.tls.enabled is false"},
		{"cert without key", []string{oneKey, "redis: {tls: {enabled: true, existingSecret: t, certKey: tls.crt}}"}, "go together"},
		{"cert without secret", []string{oneKey, "redis: {tls: {enabled: true, certKey: tls.crt, keyKey: tls.key}}"}, "needs redis.tls.existingSecret"},
		{"sfp and string", []string{oneKey, "redis: {formats: [sfp, string]}"}, "sfp and string"},
		{"two CA sources", []string{oneKey, "statsig: {caBundle: {existingSecret: a, existingConfigMap: b}}"}, "not both"},
		{"cronjob with PDB", []string{oneKey, "mode: cronjob\npodDisruptionBudget: {enabled: true}"}, "podDisruptionBudget.enabled applies to mode deployment only"},
		{"cronjob with PodMonitor", []string{oneKey, "mode: cronjob\npodMonitor: {enabled: true}"}, "podMonitor.enabled applies to mode deployment only"},
		{"cronjob with ServiceMonitor", []string{oneKey, "mode: cronjob\nserviceMonitor: {enabled: true}"}, "serviceMonitor.enabled applies"},
		{"both monitors", []string{oneKey, "podMonitor: {enabled: true}\nserviceMonitor: {enabled: true}"}, "scraped twice"},
		{"plain secret in extraEnv", []string{oneKey, "extraEnv: [{name: REDIS_PASSWORD, value: redis-pass-Zq9}]"}, "extraEnv REDIS_PASSWORD"},
		{"plain keys in extraEnv", []string{oneKey, "extraEnv: [{name: STATSIG_SERVER_SDK_KEYS, value: secret-testKeyTwo0123456789abcdefghij}]"}, "extraEnv STATSIG_SERVER_SDK_KEYS"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := render(t, c.values...)
			if err == nil {
				t.Fatal("values accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("want %q in the error, got: %v", c.want, err)
			}
			for _, s := range append(secretsInTestValues, "client-abcDEF123456789", "console-abcDEF123456789", "has space") {
				if strings.Contains(err.Error(), s) {
					t.Errorf("the error quotes a secret: %v", err)
				}
			}
		})
	}

	// Several problems are reported together.
	_, err := render(t, "redis: {formats: [sfp, string], db: 1, cluster: {addrs: ['a:1']}}")
	if err == nil || strings.Count(err.Error(), "\n  - ") != 3 {
		t.Errorf("want three problems in one error, got: %v", err)
	}
}

// TestLint runs `helm lint --strict` on the chart with every values file.
func TestLint(t *testing.T) {
	for _, f := range valuesFiles(t) {
		t.Run(f, func(t *testing.T) {
			l := action.NewLint()
			l.Strict = true
			l.Namespace = namespace
			res := l.Run([]string{chartDir}, parseValues(t, valuesFile(t, f)))
			for _, m := range res.Messages {
				// An icon is a matter for a chart repository, not for this chart.
				if m.Severity == support.InfoSev && strings.Contains(m.Err.Error(), "icon is recommended") {
					continue
				}
				t.Errorf("lint: %s", m)
			}
			for _, e := range res.Errors {
				t.Errorf("lint error: %v", e)
			}
		})
	}

}
