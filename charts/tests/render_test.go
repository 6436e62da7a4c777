package tests

import (
	"encoding/base64"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
)

// Typed accessors for the objects of a rendering.

func deploymentOf(t *testing.T, r *rendering) *appsv1.Deployment {
	t.Helper()
	return typed(t, r.one(t, "Deployment")).(*appsv1.Deployment)
}

func configOf(t *testing.T, r *rendering) map[string]string {
	t.Helper()
	return typed(t, r.one(t, "ConfigMap")).(*corev1.ConfigMap).Data
}

// workerPod is the pod template of the Deployment or of the CronJob's Jobs.
func workerPod(t *testing.T, r *rendering) corev1.PodSpec {
	t.Helper()
	if r.has("CronJob") {
		return typed(t, r.one(t, "CronJob")).(*batchv1.CronJob).Spec.JobTemplate.Spec.Template.Spec
	}
	return deploymentOf(t, r).Spec.Template.Spec
}

func container(t *testing.T, p corev1.PodSpec) corev1.Container {
	t.Helper()
	if len(p.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(p.Containers))
	}
	return p.Containers[0]
}

func volume(p corev1.PodSpec, name string) *corev1.Volume {
	for i := range p.Volumes {
		if p.Volumes[i].Name == name {
			return &p.Volumes[i]
		}
	}
	return nil
}

func mount(c corev1.Container, name string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == name {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

// projectedItems maps each file of the secrets volume to "secret/key".
func projectedItems(t *testing.T, p corev1.PodSpec) map[string]string {
	t.Helper()
	v := volume(p, "secrets")
	if v == nil || v.Projected == nil {
		t.Fatal("no projected volume named secrets")
	}
	out := map[string]string{}
	for _, s := range v.Projected.Sources {
		if s.Secret == nil {
			t.Fatalf("projected source that is not a Secret: %+v", s)
		}
		for _, it := range s.Secret.Items {
			out[it.Path] = s.Secret.Name + "/" + it.Key
		}
	}
	return out
}

func chartSecretData(t *testing.T, r *rendering) map[string]string {
	t.Helper()
	s := typed(t, r.one(t, "Secret")).(*corev1.Secret)
	out := map[string]string{}
	for k, v := range s.Data {
		out[k] = string(v)
	}
	return out
}

func wantEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n  got  %#v\n  want %#v", what, got, want)
	}
}

func TestDefaultRendering(t *testing.T) {
	r := mustRender(t, valuesFile(t, "default.yaml"))
	wantEqual(t, "kinds", r.kinds(), []string{"ConfigMap", "Deployment", "Secret", "ServiceAccount", "hook:Pod"})

	d := deploymentOf(t, r)
	wantEqual(t, "replicas", *d.Spec.Replicas, int32(2))
	wantEqual(t, "strategy", d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue(), 0)
	p := d.Spec.Template.Spec
	c := container(t, p)
	wantEqual(t, "args", c.Args, []string{"run"})
	wantEqual(t, "image", c.Image, "ghcr.io/statsig-populator/statsig-populator:0.1.0")
	wantEqual(t, "ports", c.Ports, []corev1.ContainerPort{{Name: "admin", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}})
	if len(c.Env) != 0 {
		t.Errorf("no inline env by default, got %+v", c.Env)
	}
	wantEqual(t, "envFrom", c.EnvFrom[0].ConfigMapRef.Name, "pop-statsig-populator")

	// Hardened by default.
	psc, sc := p.SecurityContext, c.SecurityContext
	wantEqual(t, "pod runAsNonRoot", *psc.RunAsNonRoot, true)
	wantEqual(t, "pod runAsUser", *psc.RunAsUser, int64(65532))
	wantEqual(t, "pod seccomp", psc.SeccompProfile.Type, corev1.SeccompProfileTypeRuntimeDefault)
	wantEqual(t, "runAsNonRoot", *sc.RunAsNonRoot, true)
	wantEqual(t, "allowPrivilegeEscalation", *sc.AllowPrivilegeEscalation, false)
	wantEqual(t, "privileged", *sc.Privileged, false)
	wantEqual(t, "readOnlyRootFilesystem", *sc.ReadOnlyRootFilesystem, true)
	wantEqual(t, "capabilities.drop", sc.Capabilities.Drop, []corev1.Capability{"ALL"})
	wantEqual(t, "seccomp", sc.SeccompProfile.Type, corev1.SeccompProfileTypeRuntimeDefault)
	wantEqual(t, "automountServiceAccountToken", *p.AutomountServiceAccountToken, false)
	wantEqual(t, "serviceAccountName", p.ServiceAccountName, "pop-statsig-populator")

	// Probes: liveness /healthz, readiness /readyz, a startup probe allowing minutes.
	wantEqual(t, "liveness path", c.LivenessProbe.HTTPGet.Path, "/healthz")
	wantEqual(t, "readiness path", c.ReadinessProbe.HTTPGet.Path, "/readyz")
	wantEqual(t, "startup path", c.StartupProbe.HTTPGet.Path, "/healthz")
	for _, pr := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		wantEqual(t, "probe port", pr.HTTPGet.Port.String(), "admin")
	}
	if budget := c.StartupProbe.PeriodSeconds * c.StartupProbe.FailureThreshold; budget < 180 {
		t.Errorf("startup probe allows %ds, want several minutes for a first sync", budget)
	}

	// Resources: requests and a memory limit.
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources: %+v", c.Resources)
	}

	// Checksum of the configuration on the pod template.
	if sum := d.Spec.Template.Annotations["checksum/config"]; len(sum) != 64 {
		t.Errorf("checksum/config annotation = %q", sum)
	}

	// The keys file: a projected Secret volume mounted as a directory (no subPath, so Secret
	// updates reach the running pod).
	wantEqual(t, "projected files", projectedItems(t, p), map[string]string{"sdk-keys": "pop-statsig-populator/sdk-keys"})
	m := mount(c, "secrets")
	wantEqual(t, "secrets mount", *m, corev1.VolumeMount{Name: "secrets", MountPath: "/etc/statsig-populator/secrets", ReadOnly: true})
	wantEqual(t, "keys file", configOf(t, r)["STATSIG_SERVER_SDK_KEYS_FILE"], "/etc/statsig-populator/secrets/sdk-keys")
	wantEqual(t, "secret data", chartSecretData(t, r), map[string]string{"sdk-keys": "secret-testKeyOne0123456789abcdefghij\n"})

	// Soft anti-affinity between the replicas.
	if p.Affinity == nil || len(p.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
		t.Errorf("want a soft pod anti-affinity, got %+v", p.Affinity)
	}

	// The helm test pod runs `check` and is not selected by the Deployment.
	for _, o := range r.Objects {
		if o.Hook {
			pod := typed(t, o).(*corev1.Pod)
			wantEqual(t, "test pod args", pod.Spec.Containers[0].Args, []string{"check"})
			wantEqual(t, "test pod hook", pod.Annotations["helm.sh/hook"], "test")
			if labelsMatch(d.Spec.Selector.MatchLabels, pod.Labels) {
				t.Error("the Deployment's selector matches the helm test pod: its ReplicaSet would adopt it")
			}
		}
	}
}

func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestDefaultEnv pins the whole environment of the default rendering: every setting with a worker
// default is written with that default; nothing else is.
func TestDefaultEnv(t *testing.T) {
	got := configOf(t, mustRender(t, valuesFile(t, "default.yaml")))
	want := map[string]string{
		"STATSIG_SERVER_SDK_KEYS_FILE":   "/etc/statsig-populator/secrets/sdk-keys",
		"STATSIG_API_URL":                "https://api.statsigcdn.com",
		"STATSIG_DCS_VERSIONS":           "v1,v2",
		"POLL_INTERVAL":                  "10s",
		"POLL_CONCURRENCY":               "64",
		"FETCH_TIMEOUT":                  "30s",
		"ID_LISTS_POLL_INTERVAL":         "60s",
		"MAX_PAYLOAD_BYTES":              "268435456",
		"MAX_CLOCK_SKEW":                 "1h",
		"DELETE_ON_UNAUTHORIZED":         "false",
		"UNAUTHORIZED_RECHECK":           "5m",
		"UNAUTHORIZED_DELETE_AFTER":      "15m",
		"DELETE_REMOVED_KEYS":            "false",
		"REDIS_URL":                      "redis://127.0.0.1:6379/0",
		"REDIS_DB":                       "0",
		"REDIS_TLS":                      "false",
		"REDIS_TLS_INSECURE_SKIP_VERIFY": "false",
		"REDIS_KEY_SCHEMAS":              "hashed,prefix",
		"REDIS_FORMATS":                  "sfp",
		"REDIS_NODE_REDIS_HASH":          "statsig-redis",
		"REDIS_KEY_TTL":                  "0",
		"REDIS_WAIT_REPLICAS":            "0",
		"REDIS_WAIT_TIMEOUT":             "100ms",
		"LEADER_ELECTION":                "true",
		"LEADER_LEASE":                   "15s",
		"ADMIN_ADDR":                     ":8080",
		"METRICS_PER_KEY":                "false",
		"LOG_LEVEL":                      "info",
		"LOG_FORMAT":                     "json",
	}
	wantEqual(t, "ConfigMap data", got, want)
}

func TestExistingSecrets(t *testing.T) {
	r := mustRender(t, valuesFile(t, "existing-secret.yaml"))
	if r.has("Secret") {
		t.Error("no Secret may be created when every secret comes from an existing one")
	}
	p := workerPod(t, r)
	wantEqual(t, "projected files", projectedItems(t, p), map[string]string{
		"sdk-keys":       "statsig-keys/keys.txt",
		"redis-password": "redis/redis-password",
	})
	env := configOf(t, r)
	wantEqual(t, "REDIS_PASSWORD_FILE", env["REDIS_PASSWORD_FILE"], "/etc/statsig-populator/secrets/redis-password")
	wantEqual(t, "REDIS_USERNAME", env["REDIS_USERNAME"], "populator")
	wantEqual(t, "REDIS_URL", env["REDIS_URL"], "redis://redis-master.redis.svc.cluster.local:6379/0")
	if _, ok := env["REDIS_SENTINEL_PASSWORD_FILE"]; ok {
		t.Error("REDIS_SENTINEL_PASSWORD_FILE without Sentinels")
	}
	if !strings.Contains(r.Notes, "(statsig-keys)") {
		t.Errorf("NOTES should name the existing Secret:\n%s", r.Notes)
	}
}

func TestCluster(t *testing.T) {
	r := mustRender(t, valuesFile(t, "cluster.yaml"))
	env := configOf(t, r)
	wantEqual(t, "REDIS_CLUSTER_ADDRS", env["REDIS_CLUSTER_ADDRS"],
		"redis-cluster-0.redis-cluster-headless:6379,redis-cluster-1.redis-cluster-headless:6379,redis-cluster-2.redis-cluster-headless:6380")
	wantEqual(t, "REDIS_URL keeps options, no credentials", env["REDIS_URL"], "redis://127.0.0.1:6379/0?pool_size=20&read_timeout=5s")
	wantEqual(t, "REDIS_FORMATS", env["REDIS_FORMATS"], "string,node-redis")
	wantEqual(t, "REDIS_KEY_PREFIX", env["REDIS_KEY_PREFIX"], "statsig:")
	wantEqual(t, "REDIS_KEY_TTL", env["REDIS_KEY_TTL"], "24h")
	wantEqual(t, "REDIS_PASSWORD_FILE", env["REDIS_PASSWORD_FILE"], "/etc/statsig-populator/secrets/redis-password")
	wantEqual(t, "secret data", chartSecretData(t, r), map[string]string{
		"sdk-keys":       "secret-testKeyOne0123456789abcdefghij\nsecret-testKeyTwo0123456789abcdefghij\n",
		"redis-password": "redis-pass-Zq9",
	})
	wantEqual(t, "projected files", projectedItems(t, workerPod(t, r)), map[string]string{
		"sdk-keys":       "pop-statsig-populator/sdk-keys",
		"redis-password": "pop-statsig-populator/redis-password",
	})
	if !strings.Contains(r.Notes, "cluster redis-cluster-0") {
		t.Errorf("NOTES should name the cluster:\n%s", r.Notes)
	}
}

func TestSentinel(t *testing.T) {
	r := mustRender(t, valuesFile(t, "sentinel.yaml"))
	env := configOf(t, r)
	wantEqual(t, "REDIS_SENTINEL_ADDRS", env["REDIS_SENTINEL_ADDRS"], "sentinel-0.sentinel:26379,sentinel-1.sentinel:26379,sentinel-2.sentinel:26379")
	wantEqual(t, "REDIS_SENTINEL_MASTER", env["REDIS_SENTINEL_MASTER"], "mymaster")
	wantEqual(t, "REDIS_SENTINEL_PASSWORD_FILE", env["REDIS_SENTINEL_PASSWORD_FILE"], "/etc/statsig-populator/secrets/redis-sentinel-password")
	wantEqual(t, "REDIS_DB", env["REDIS_DB"], "2")
	wantEqual(t, "REDIS_URL", env["REDIS_URL"], "redis://127.0.0.1:6379/2")
	wantEqual(t, "REDIS_WAIT_REPLICAS", env["REDIS_WAIT_REPLICAS"], "1")
	wantEqual(t, "REDIS_WAIT_TIMEOUT", env["REDIS_WAIT_TIMEOUT"], "250ms")
	wantEqual(t, "secret data", chartSecretData(t, r), map[string]string{
		"sdk-keys":                "secret-testKeyOne0123456789abcdefghij\n",
		"redis-password":          "redis-pass-Zq9",
		"redis-sentinel-password": "sentinel-pass-Xw7",
	})

	// Sentinel password from an existing Secret.
	r = mustRender(t, valuesFile(t, "sentinel.yaml"), `
redis:
  password: ""
  existingSecret: bitnami-redis
  sentinel: {password: "", existingSecretKey: redis-password}
`)
	wantEqual(t, "projected files", projectedItems(t, workerPod(t, r)), map[string]string{
		"sdk-keys":                "pop-statsig-populator/sdk-keys",
		"redis-password":          "bitnami-redis/redis-password",
		"redis-sentinel-password": "bitnami-redis/redis-password",
	})
}

func TestTLS(t *testing.T) {
	r := mustRender(t, valuesFile(t, "tls.yaml"))
	env := configOf(t, r)
	for k, v := range map[string]string{
		"REDIS_TLS":                 "true",
		"REDIS_TLS_CA_FILE":         "/etc/statsig-populator/redis-tls/ca.crt",
		"REDIS_TLS_CERT_FILE":       "/etc/statsig-populator/redis-tls/tls.crt",
		"REDIS_TLS_KEY_FILE":        "/etc/statsig-populator/redis-tls/tls.key",
		"REDIS_TLS_SERVER_NAME":     "redis.example.internal",
		"REDIS_URL":                 "redis://redis.example.internal:6380/0",
		"STATSIG_CA_FILE":           "/etc/statsig-populator/statsig-ca/ca.crt",
		"HTTPS_PROXY":               "http://proxy.internal:3128",
		"NO_PROXY":                  ".cluster.local,10.0.0.0/8",
		"CONDITIONAL_FETCH_TIMEOUT": "3s",
	} {
		wantEqual(t, k, env[k], v)
	}
	p := workerPod(t, r)
	c := container(t, p)
	tlsVol := volume(p, "redis-tls")
	if tlsVol == nil || tlsVol.Secret == nil || tlsVol.Secret.SecretName != "populator-redis-tls" {
		t.Fatalf("redis-tls volume: %+v", tlsVol)
	}
	wantEqual(t, "tls items", tlsVol.Secret.Items, []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}, {Key: "tls.crt", Path: "tls.crt"}, {Key: "tls.key", Path: "tls.key"}})
	wantEqual(t, "tls mount", mount(c, "redis-tls").MountPath, "/etc/statsig-populator/redis-tls")
	caVol := volume(p, "statsig-ca")
	if caVol == nil || caVol.ConfigMap == nil || caVol.ConfigMap.Name != "corporate-ca" {
		t.Fatalf("statsig-ca volume: %+v", caVol)
	}
	wantEqual(t, "ca items", caVol.ConfigMap.Items, []corev1.KeyToPath{{Key: "ca-bundle.pem", Path: "ca.crt"}})
	wantEqual(t, "ca mount", mount(c, "statsig-ca").MountPath, "/etc/statsig-populator/statsig-ca")

	// TLS with the system roots: no Secret, no files.
	r = mustRender(t, valuesFile(t, "default.yaml"), "redis: {host: my.cache.amazonaws.com, tls: {enabled: true}}")
	env = configOf(t, r)
	wantEqual(t, "REDIS_TLS", env["REDIS_TLS"], "true")
	for _, k := range []string{"REDIS_TLS_CA_FILE", "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE"} {
		if _, ok := env[k]; ok {
			t.Errorf("%s set without a TLS Secret", k)
		}
	}
	if volume(workerPod(t, r), "redis-tls") != nil {
		t.Error("redis-tls volume without a TLS Secret")
	}

	// CA only (no client certificate), from a Secret.
	r = mustRender(t, valuesFile(t, "default.yaml"), "redis: {tls: {enabled: true, existingSecret: redis-ca}}")
	env = configOf(t, r)
	wantEqual(t, "REDIS_TLS_CA_FILE", env["REDIS_TLS_CA_FILE"], "/etc/statsig-populator/redis-tls/ca.crt")
	if _, ok := env["REDIS_TLS_CERT_FILE"]; ok {
		t.Error("REDIS_TLS_CERT_FILE without certKey")
	}
	wantEqual(t, "ca-only items", volume(workerPod(t, r), "redis-tls").Secret.Items, []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}})
}

func TestCronjob(t *testing.T) {
	r := mustRender(t, valuesFile(t, "cronjob.yaml"))
	wantEqual(t, "kinds", r.kinds(), []string{"ConfigMap", "CronJob", "Secret", "ServiceAccount", "hook:Pod"})
	cj := typed(t, r.one(t, "CronJob")).(*batchv1.CronJob)
	wantEqual(t, "schedule", cj.Spec.Schedule, "*/10 * * * *")
	wantEqual(t, "timeZone", *cj.Spec.TimeZone, "Etc/UTC")
	wantEqual(t, "concurrencyPolicy", cj.Spec.ConcurrencyPolicy, batchv1.ForbidConcurrent)
	p := cj.Spec.JobTemplate.Spec.Template.Spec
	c := container(t, p)
	wantEqual(t, "args", c.Args, []string{"once"})
	wantEqual(t, "restartPolicy", p.RestartPolicy, corev1.RestartPolicyNever)
	if c.LivenessProbe != nil || c.ReadinessProbe != nil || c.StartupProbe != nil {
		t.Error("a CronJob's pod has no probes")
	}
	if p.Affinity != nil {
		t.Errorf("no anti-affinity for a single Job pod: %+v", p.Affinity)
	}
	wantEqual(t, "readOnlyRootFilesystem", *c.SecurityContext.ReadOnlyRootFilesystem, true)
	if cj.Spec.JobTemplate.Spec.Template.Annotations["checksum/config"] == "" {
		t.Error("checksum/config missing on the Job pods")
	}
	if !strings.Contains(r.Notes, "create job pop-statsig-populator-manual --from=cronjob/pop-statsig-populator") {
		t.Errorf("NOTES:\n%s", r.Notes)
	}

	// A long release name still gives a valid CronJob name (52 characters at most).
	r = mustRender(t, valuesFile(t, "cronjob.yaml"), "fullnameOverride: "+strings.Repeat("x", 70))
	if n := r.one(t, "CronJob").Name; len(n) > 52 {
		t.Errorf("CronJob name %q is longer than 52 characters", n)
	}
}

func TestPodMonitorAndPDB(t *testing.T) {
	r := mustRender(t, valuesFile(t, "podmonitor.yaml"))
	pm := typed(t, r.one(t, "PodMonitor")).(*monitoringv1.PodMonitor)
	wantEqual(t, "labels", pm.Labels["release"], "kube-prometheus-stack")
	wantEqual(t, "endpoint port", *pm.Spec.PodMetricsEndpoints[0].Port, "admin")
	wantEqual(t, "endpoint path", pm.Spec.PodMetricsEndpoints[0].Path, "/metrics")
	d := deploymentOf(t, r)
	wantEqual(t, "selector", pm.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels)
	if r.has("Service") {
		t.Error("a PodMonitor needs no Service")
	}
	wantEqual(t, "METRICS_PER_KEY", configOf(t, r)["METRICS_PER_KEY"], "true")

	pdb := typed(t, r.one(t, "PodDisruptionBudget")).(*policyv1.PodDisruptionBudget)
	wantEqual(t, "maxUnavailable", pdb.Spec.MaxUnavailable.IntValue(), 1)
	wantEqual(t, "unhealthyPodEvictionPolicy", *pdb.Spec.UnhealthyPodEvictionPolicy, policyv1.AlwaysAllow)
	wantEqual(t, "pdb selector", pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels)

	r = mustRender(t, valuesFile(t, "podmonitor.yaml"), `podDisruptionBudget: {minAvailable: "50%", unhealthyPodEvictionPolicy: ""}`)
	pdb = typed(t, r.one(t, "PodDisruptionBudget")).(*policyv1.PodDisruptionBudget)
	if pdb.Spec.MaxUnavailable != nil || pdb.Spec.MinAvailable.String() != "50%" || pdb.Spec.UnhealthyPodEvictionPolicy != nil {
		t.Errorf("pdb spec: %+v", pdb.Spec)
	}
}

func TestServiceMonitor(t *testing.T) {
	r := mustRender(t, valuesFile(t, "servicemonitor.yaml"))
	sm := typed(t, r.one(t, "ServiceMonitor")).(*monitoringv1.ServiceMonitor)
	svc := typed(t, r.one(t, "Service")).(*corev1.Service)
	d := deploymentOf(t, r)
	wantEqual(t, "ServiceMonitor namespace", sm.Namespace, "monitoring")
	wantEqual(t, "namespaceSelector", sm.Spec.NamespaceSelector.MatchNames, []string{namespace})
	wantEqual(t, "interval", string(sm.Spec.Endpoints[0].Interval), "15s")
	wantEqual(t, "endpoint port", sm.Spec.Endpoints[0].Port, "admin")
	wantEqual(t, "metricRelabelings", len(sm.Spec.Endpoints[0].MetricRelabelConfigs), 1)
	wantEqual(t, "service port name", svc.Spec.Ports[0].Name, "admin")
	wantEqual(t, "service targetPort", svc.Spec.Ports[0].TargetPort.String(), "admin")
	wantEqual(t, "service selector", svc.Spec.Selector, d.Spec.Selector.MatchLabels)
	if !labelsMatch(sm.Spec.Selector.MatchLabels, svc.Labels) {
		t.Errorf("the ServiceMonitor selector %v does not match the Service labels %v", sm.Spec.Selector.MatchLabels, svc.Labels)
	}
}

func TestNetworkPolicy(t *testing.T) {
	r := mustRender(t, valuesFile(t, "network-policy.yaml"))
	np := typed(t, r.one(t, "NetworkPolicy")).(*networkingv1.NetworkPolicy)
	wantEqual(t, "policyTypes", np.Spec.PolicyTypes, []networkingv1.PolicyType{"Ingress", "Egress"})
	if !labelsMatch(np.Spec.PodSelector.MatchLabels, deploymentOf(t, r).Spec.Template.Labels) {
		t.Error("the NetworkPolicy does not select the worker pods")
	}
	for _, o := range r.Objects {
		if o.Hook && !labelsMatch(np.Spec.PodSelector.MatchLabels, typed(t, o).(*corev1.Pod).Labels) {
			t.Error("the NetworkPolicy does not select the helm test pod, which needs the same egress")
		}
	}

	ports := func(r networkingv1.NetworkPolicyEgressRule) []string {
		var out []string
		for _, p := range r.Ports {
			out = append(out, fmt.Sprintf("%s/%s", *p.Protocol, p.Port.String()))
		}
		return out
	}
	eg := np.Spec.Egress
	if len(eg) != 3 {
		t.Fatalf("want 3 egress rules (DNS, CDN, Redis), got %d", len(eg))
	}
	wantEqual(t, "DNS ports", ports(eg[0]), []string{"UDP/53", "TCP/53"})
	wantEqual(t, "DNS peer", eg[0].To[0].PodSelector.MatchLabels, map[string]string{"k8s-app": "kube-dns"})
	wantEqual(t, "CDN ports", ports(eg[1]), []string{"TCP/443"})
	wantEqual(t, "CDN ipBlock", *eg[1].To[0].IPBlock, networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}})
	wantEqual(t, "Redis ports (host port and Sentinel ports)", ports(eg[2]), []string{"TCP/6379", "TCP/26379"})
	wantEqual(t, "Redis peer", eg[2].To[0].NamespaceSelector.MatchLabels, map[string]string{"kubernetes.io/metadata.name": "redis"})
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].Ports) != 1 || np.Spec.Ingress[0].Ports[0].Port.String() != "admin" {
		t.Errorf("ingress must open the admin port only: %+v", np.Spec.Ingress)
	}
	wantEqual(t, "ingress from", np.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels, map[string]string{"kubernetes.io/metadata.name": "monitoring"})

	// Cluster ports are derived too, deduplicated; explicit ports win.
	r = mustRender(t, valuesFile(t, "cluster.yaml"), "networkPolicy: {enabled: true}")
	np = typed(t, r.one(t, "NetworkPolicy")).(*networkingv1.NetworkPolicy)
	wantEqual(t, "cluster ports", ports(np.Spec.Egress[2]), []string{"TCP/6379", "TCP/6380"})
	if np.Spec.Egress[2].To != nil {
		t.Error("without redis.to the Redis rule allows any destination on the Redis ports")
	}
	r = mustRender(t, valuesFile(t, "cluster.yaml"), "networkPolicy: {enabled: true, redis: {ports: [7000]}}")
	np = typed(t, r.one(t, "NetworkPolicy")).(*networkingv1.NetworkPolicy)
	wantEqual(t, "explicit ports", ports(np.Spec.Egress[2]), []string{"TCP/7000"})
}

func TestImageAndScheduling(t *testing.T) {
	r := mustRender(t, valuesFile(t, "default.yaml"), `
image: {tag: "1.2.3"}
podAntiAffinityPreset: hard
replicaCount: 3
imagePullSecrets: [{name: ghcr}]
podAnnotations: {example.com/team: flags}
priorityClassName: high
`)
	d := deploymentOf(t, r)
	p := d.Spec.Template.Spec
	wantEqual(t, "image", container(t, p).Image, "ghcr.io/statsig-populator/statsig-populator:1.2.3")
	wantEqual(t, "version label", d.Labels["app.kubernetes.io/version"], "1.2.3")
	wantEqual(t, "replicas", *d.Spec.Replicas, int32(3))
	wantEqual(t, "pull secrets", p.ImagePullSecrets, []corev1.LocalObjectReference{{Name: "ghcr"}})
	wantEqual(t, "pod annotation", d.Spec.Template.Annotations["example.com/team"], "flags")
	wantEqual(t, "priorityClassName", p.PriorityClassName, "high")
	if p.Affinity == nil || len(p.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 1 {
		t.Errorf("want a hard anti-affinity: %+v", p.Affinity)
	}

	digest := "sha256:" + strings.Repeat("ab", 32)
	r = mustRender(t, valuesFile(t, "default.yaml"), "image: {digest: "+digest+"}\naffinity: {nodeAffinity: {}}")
	p = deploymentOf(t, r).Spec.Template.Spec
	wantEqual(t, "image by digest", container(t, p).Image, "ghcr.io/statsig-populator/statsig-populator@"+digest)
	if p.Affinity.PodAntiAffinity != nil {
		t.Error("affinity replaces the preset")
	}

	r = mustRender(t, valuesFile(t, "default.yaml"), `podAntiAffinityPreset: ""`)
	if deploymentOf(t, r).Spec.Template.Spec.Affinity != nil {
		t.Error("no affinity with an empty preset")
	}

	r = mustRender(t, valuesFile(t, "default.yaml"), "livenessProbe: {httpGet: null, exec: {command: [/populator, healthcheck]}}\nreadinessProbe: {enabled: false}")
	c := container(t, deploymentOf(t, r).Spec.Template.Spec)
	if c.LivenessProbe.HTTPGet != nil || !slices.Equal(c.LivenessProbe.Exec.Command, []string{"/populator", "healthcheck"}) {
		t.Errorf("exec liveness probe: %+v", c.LivenessProbe)
	}
	if c.ReadinessProbe != nil {
		t.Error("readiness probe disabled")
	}
}

// TestChecksum: a configuration change changes checksum/config (so pods roll); SDK keys do not
// change it (they live in the Secret, covered by checksum/secret: see TestSecretChecksum).
func TestChecksum(t *testing.T) {
	sum := func(extra ...string) string {
		t.Helper()
		vals := append([]string{valuesFile(t, "default.yaml")}, extra...)
		return deploymentOf(t, mustRender(t, vals...)).Spec.Template.Annotations["checksum/config"]
	}
	base := sum()
	wantEqual(t, "same values, same checksum", sum(), base)
	if sum("statsig: {pollInterval: 30s}") == base {
		t.Error("checksum/config did not change with statsig.pollInterval")
	}
	if sum("redis: {host: other}") == base {
		t.Error("checksum/config did not change with redis.host")
	}
	wantEqual(t, "checksum with other keys", sum("sdkKeys: [secret-testKeyTwo0123456789abcdefghij]"), base)
}

// TestSecretChecksum: a change of the chart's own Secret (sdkKeys, redis.password,
// redis.sentinel.password) changes the pod template, so pods roll; an existingSecret is not the
// chart's to watch, so there is no checksum/secret then.
func TestSecretChecksum(t *testing.T) {
	sum := func(vals ...string) string {
		t.Helper()
		return deploymentOf(t, mustRender(t, vals...)).Spec.Template.Annotations["checksum/secret"]
	}
	base := sum(valuesFile(t, "default.yaml"))
	if len(base) != 64 {
		t.Fatalf("checksum/secret = %q, want a sha256 in hex", base)
	}
	wantEqual(t, "same values, same checksum", sum(valuesFile(t, "default.yaml")), base)
	if sum(valuesFile(t, "default.yaml"), "sdkKeys: [secret-testKeyTwo0123456789abcdefghij]") == base {
		t.Error("checksum/secret did not change with sdkKeys")
	}
	if sum(valuesFile(t, "default.yaml"), "redis: {password: redis-pass-Zq9}") == base {
		t.Error("checksum/secret did not change with redis.password")
	}
	if sum(valuesFile(t, "sentinel.yaml")) == sum(valuesFile(t, "sentinel.yaml"), "redis: {sentinel: {password: sentinel-pass-Xw7-2}}") {
		t.Error("checksum/secret did not change with redis.sentinel.password")
	}
	if got := sum(valuesFile(t, "existing-secret.yaml")); got != "" {
		t.Errorf("with an existing Secret: checksum/secret = %q, want none", got)
	}
}

func TestExtraEnvAndVolumes(t *testing.T) {
	r := mustRender(t, valuesFile(t, "default.yaml"), `
extraEnv:
  - name: HTTPS_PROXY
    valueFrom: {secretKeyRef: {name: proxy, key: url}}
  - name: GOMEMLIMIT
    value: 400MiB
extraVolumes: [{name: scratch, emptyDir: {}}]
extraVolumeMounts: [{name: scratch, mountPath: /scratch}]
`)
	p := deploymentOf(t, r).Spec.Template.Spec
	c := container(t, p)
	wantEqual(t, "env names", []string{c.Env[0].Name, c.Env[1].Name}, []string{"HTTPS_PROXY", "GOMEMLIMIT"})
	wantEqual(t, "secretKeyRef", c.Env[0].ValueFrom.SecretKeyRef.Name, "proxy")
	if volume(p, "scratch") == nil || mount(c, "scratch") == nil {
		t.Error("extra volume or mount missing")
	}
}

// allCombinations is every values file plus a few inline variations.
func allCombinations(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, f := range valuesFiles(t) {
		out[f] = []string{valuesFile(t, f)}
	}
	out["sentinel+existing"] = []string{valuesFile(t, "sentinel.yaml"), "redis: {password: '', existingSecret: r, sentinel: {password: '', existingSecretKey: s}}"}
	out["cronjob+networkpolicy"] = []string{valuesFile(t, "cronjob.yaml"), valuesFile(t, "network-policy.yaml"), "mode: cronjob"}
	out["tls+monitor"] = []string{valuesFile(t, "tls.yaml"), "serviceMonitor: {enabled: true}\npodDisruptionBudget: {enabled: true}"}
	return out
}

// TestAllObjectsDecodeStrictly decodes every rendered object of every combination into its Go
// type, rejecting unknown and duplicate fields, and checks the names Kubernetes requires.
func TestAllObjectsDecodeStrictly(t *testing.T) {
	for name, vals := range allCombinations(t) {
		t.Run(name, func(t *testing.T) {
			r := mustRender(t, vals...)
			for _, o := range r.Objects {
				typed(t, o)
				if o.Name == "" || len(o.Name) > 63 {
					t.Errorf("%s has an invalid name %q", o.Kind, o.Name)
				}
				ns, _ := dig(o.U, "metadata", "namespace").(string)
				if ns == "" {
					t.Errorf("%s %s has no namespace", o.Kind, o.Name)
				}
			}
		})
	}
}

// TestNoSecretInPodSpec: SDK keys and passwords reach the pods only as files. No rendered object
// other than the chart's Secret contains one, in clear or in base64, and no container gets a
// secret variable.
func TestNoSecretInPodSpec(t *testing.T) {
	for name, vals := range allCombinations(t) {
		t.Run(name, func(t *testing.T) {
			r := mustRender(t, vals...)
			for _, o := range r.Objects {
				if o.Kind == "Secret" {
					continue
				}
				for _, s := range secretsInTestValues {
					if strings.Contains(o.Doc, s) || strings.Contains(o.Doc, base64.StdEncoding.EncodeToString([]byte(s))) {
						t.Errorf("%s %s contains a secret from the values", o.Kind, o.Name)
					}
				}
				if strings.Contains(o.Doc, "subPath") {
					t.Errorf("%s %s uses subPath: mounted Secrets would never update", o.Kind, o.Name)
				}
			}
			for _, s := range secretsInTestValues {
				if strings.Contains(r.Notes, s) {
					t.Error("NOTES contain a secret")
				}
			}
			c := container(t, workerPod(t, r))
			for _, e := range c.Env {
				switch e.Name {
				case "STATSIG_SERVER_SDK_KEYS", "REDIS_PASSWORD", "REDIS_SENTINEL_PASSWORD":
					t.Errorf("secret variable %s in the pod spec", e.Name)
				}
			}
			for k, v := range configOf(t, r) {
				switch k {
				case "STATSIG_SERVER_SDK_KEYS", "REDIS_PASSWORD", "REDIS_SENTINEL_PASSWORD":
					t.Errorf("secret variable %s in the ConfigMap", k)
				case "REDIS_URL":
					if strings.Contains(v, "@") {
						t.Errorf("REDIS_URL carries credentials: %q", v)
					}
				}
			}
		})
	}
}
