// Package metrics defines the worker's Prometheus metrics, all named
// statsig_populator_*. No label ever carries an SDK key; per-key series exist
// only when PerKey is enabled, and then only under the redacted key name.
package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const ns = "statsig_populator"

// Metrics holds every collector. A nil *Metrics is valid and records nothing,
// so units can run without a registry.
type Metrics struct {
	Registry *prometheus.Registry

	// hot caches the series recorded on every poll, so that a poll does not
	// hash its labels again each time.
	hotMu sync.RWMutex
	hot   map[hotKey]*hotSeries

	fetches         *prometheus.CounterVec
	fetchDuration   *prometheus.HistogramVec
	writes          *prometheus.CounterVec
	payloadBytes    *prometheus.HistogramVec
	writtenBytes    *prometheus.CounterVec
	propagation     *prometheus.HistogramVec
	invalidPayloads *prometheus.CounterVec
	lcutMismatch    *prometheus.CounterVec
	redisErrors     *prometheus.CounterVec
	leader          prometheus.Gauge
	keysConfigured  prometheus.Gauge
	perKeyLcut      *prometheus.GaugeVec // nil unless per-key series are enabled

	idListManifests  *prometheus.CounterVec
	idListDownloads  *prometheus.CounterVec
	idListDownloaded prometheus.Counter
	idListWritten    *prometheus.CounterVec
	idListKeys       prometheus.Gauge
}

// IDListWriteModes are the values of id_list_written_bytes_total's mode
// label.
var IDListWriteModes = []string{"append", "replace"}

// RedisOps are the values of redis_errors_total's op label.
var RedisOps = []string{"inspect", "write", "touch", "delete", "id_lists"}

// New registers every collector (plus the Go and process collectors) on a new
// registry. perKey adds statsig_populator_key_lcut_seconds{key,version} with
// redacted key names.
func New(perKey bool) *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: r,
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "fetches_total",
			Help: "CDN fetches by payload version and outcome (updated, no_update, unauthorized, or an error class)."},
			[]string{"version", "outcome"}),
		fetchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "fetch_duration_seconds",
			Help:    "Duration of CDN fetches, body download and validation included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"version"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "writes_total",
			Help: "Payload writes per Redis key by outcome: written, unchanged (Redis already current), stale_skipped (Redis held a newer or equal lcut), not_leader, error."},
			[]string{"version", "outcome"}),
		payloadBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "payload_bytes",
			Help:    "Size of complete payloads received (decompressed).",
			Buckets: prometheus.ExponentialBuckets(1024, 4, 10)}, []string{"version"}),
		writtenBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "written_bytes_total",
			Help: "Payload bytes written to Redis."}, []string{"version"}),
		propagation: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "propagation_delay_seconds",
			Help:    "Time from a config change (its lcut) to its write into Redis.",
			Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 15, 20, 30, 60, 120, 300}}, []string{"version"}),
		invalidPayloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "invalid_payloads_total",
			Help: "Responses refused before anything was written, by reason."}, []string{"version", "reason"}),
		lcutMismatch: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "lcut_header_mismatch_total",
			Help: "Full payloads whose x-since-time header differs from the body time."}, []string{"version"}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "redis_errors_total",
			Help: "Failed Redis operations by operation."}, []string{"op"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "leader",
			Help: "1 while this replica holds the writer lease (or leader election is off), else 0."}),
		keysConfigured: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "keys_configured",
			Help: "SDK keys currently configured."}),
	}
	m.idListManifests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "id_list_manifest_fetches_total",
		Help: "ID-list manifest fetches by outcome (updated, unauthorized, or an error class)."}, []string{"outcome"})
	m.idListDownloads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "id_list_downloads_total",
		Help: "ID-list file downloads (whole files or appended ranges) by outcome (ok, bad_chunk, or an error class)."}, []string{"outcome"})
	m.idListDownloaded = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "id_list_downloaded_bytes_total",
		Help: "ID-list file bytes downloaded (the new bytes only, for an append)."})
	m.idListWritten = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "id_list_written_bytes_total",
		Help: "ID-list bytes written to Redis, per copy (schema), by mode: append (new bytes added to a list) or replace (a whole list)."}, []string{"mode"})
	m.idListKeys = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "id_list_keys",
		Help: "SDK keys whose ID lists are kept in Redis (0 when ID lists are off)."})
	for _, mode := range IDListWriteModes {
		m.idListWritten.WithLabelValues(mode)
	}
	// The series an alert or a dashboard rate() needs exist from the start.
	m.idListManifests.WithLabelValues("updated")
	m.idListDownloads.WithLabelValues("ok")
	r.MustRegister(m.idListManifests, m.idListDownloads, m.idListDownloaded, m.idListWritten, m.idListKeys)
	// Every operation's series exists from the start at 0, so that an alert
	// on its increase sees the first error.
	for _, op := range RedisOps {
		m.redisErrors.WithLabelValues(op)
	}
	r.MustRegister(m.fetches, m.fetchDuration, m.writes, m.payloadBytes, m.writtenBytes, m.propagation,
		m.invalidPayloads, m.lcutMismatch, m.redisErrors, m.leader, m.keysConfigured)
	if perKey {
		m.perKeyLcut = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "key_lcut_seconds",
			Help: "lcut held in Redis per key (redacted) and version, as a Unix time."}, []string{"key", "version"})
		r.MustRegister(m.perKeyLcut)
	}
	return m
}

type hotKey struct{ version, outcome string }

type hotSeries struct {
	fetches  prometheus.Counter
	duration prometheus.Observer
}

// Fetch records one fetch.
func (m *Metrics) Fetch(version, outcome string, seconds float64) {
	if m == nil {
		return
	}
	k := hotKey{version, outcome}
	m.hotMu.RLock()
	hs := m.hot[k]
	m.hotMu.RUnlock()
	if hs == nil {
		hs = &hotSeries{fetches: m.fetches.WithLabelValues(version, outcome), duration: m.fetchDuration.WithLabelValues(version)}
		m.hotMu.Lock()
		if m.hot == nil {
			m.hot = map[hotKey]*hotSeries{}
		}
		m.hot[k] = hs
		m.hotMu.Unlock()
	}
	hs.fetches.Inc()
	hs.duration.Observe(seconds)
}

// Payload records a received complete payload.
func (m *Metrics) Payload(version string, size int) {
	if m == nil {
		return
	}
	m.payloadBytes.WithLabelValues(version).Observe(float64(size))
}

// Write records the outcome of one Redis key write; bytes > 0 when written.
func (m *Metrics) Write(version, outcome string, bytes int) {
	if m == nil {
		return
	}
	m.writes.WithLabelValues(version, outcome).Inc()
	if bytes > 0 {
		m.writtenBytes.WithLabelValues(version).Add(float64(bytes))
	}
}

// Propagation records the delay from lcut to write.
func (m *Metrics) Propagation(version string, seconds float64) {
	if m == nil {
		return
	}
	m.propagation.WithLabelValues(version).Observe(seconds)
}

// Invalid records a refused response.
func (m *Metrics) Invalid(version, reason string) {
	if m == nil {
		return
	}
	m.invalidPayloads.WithLabelValues(version, reason).Inc()
}

// LcutMismatch records an x-since-time/body time disagreement.
func (m *Metrics) LcutMismatch(version string) {
	if m == nil {
		return
	}
	m.lcutMismatch.WithLabelValues(version).Inc()
}

// RedisError records a failed Redis operation.
func (m *Metrics) RedisError(op string) {
	if m == nil {
		return
	}
	m.redisErrors.WithLabelValues(op).Inc()
}

// SetLeader sets the leader gauge.
func (m *Metrics) SetLeader(leader bool) {
	if m == nil {
		return
	}
	v := 0.0
	if leader {
		v = 1
	}
	m.leader.Set(v)
}

// SetKeys sets the number of configured keys.
func (m *Metrics) SetKeys(n int) {
	if m == nil {
		return
	}
	m.keysConfigured.Set(float64(n))
}

// KeyLcut sets the per-key lcut gauge when per-key series are enabled.
func (m *Metrics) KeyLcut(redactedKey, version string, lcutMillis int64) {
	if m == nil || m.perKeyLcut == nil {
		return
	}
	m.perKeyLcut.WithLabelValues(redactedKey, version).Set(float64(lcutMillis) / 1000)
}

// ForgetKey removes a key's per-key series.
func (m *Metrics) ForgetKey(redactedKey, version string) {
	if m == nil || m.perKeyLcut == nil {
		return
	}
	m.perKeyLcut.DeleteLabelValues(redactedKey, version)
}

// IDListManifest records one ID-list manifest fetch.
func (m *Metrics) IDListManifest(outcome string) {
	if m == nil {
		return
	}
	m.idListManifests.WithLabelValues(outcome).Inc()
}

// IDListDownload records one list download and the bytes it brought.
func (m *Metrics) IDListDownload(outcome string, bytes int64) {
	if m == nil {
		return
	}
	m.idListDownloads.WithLabelValues(outcome).Inc()
	if bytes > 0 {
		m.idListDownloaded.Add(float64(bytes))
	}
}

// IDListWritten records list bytes written to one Redis copy.
func (m *Metrics) IDListWritten(mode string, bytes int64) {
	if m == nil || bytes <= 0 {
		return
	}
	m.idListWritten.WithLabelValues(mode).Add(float64(bytes))
}

// SetIDListKeys sets the number of keys whose ID lists are kept.
func (m *Metrics) SetIDListKeys(n int) {
	if m == nil {
		return
	}
	m.idListKeys.Set(float64(n))
}

// KeyHealth is what the health gauges report, computed at scrape time from
// one snapshot of every key's status.
type KeyHealth struct {
	// Unauthorized counts the SDK keys the CDN refuses (401/403).
	Unauthorized int
	// Failing counts the key/version pairs whose last poll failed, by the
	// outcome of that poll; unauthorized keys are counted above instead.
	Failing map[string]int
	// OldestSuccessAge is the longest time, in seconds, any authorized
	// key/version pair polled by this replica has gone without a successful
	// poll (since start for one that never had one).
	OldestSuccessAge float64
	// OldestLcutAge is the age, in seconds, of the oldest lcut held in Redis.
	OldestLcutAge float64
}

var (
	keysUnauthorizedDesc = prometheus.NewDesc(ns+"_keys_unauthorized",
		"SDK keys the CDN currently refuses (401/403).", nil, nil)
	keysFailingDesc = prometheus.NewDesc(ns+"_keys_failing",
		"Key/version pairs whose last poll failed, by the outcome of that poll (unauthorized keys excluded).", []string{"outcome"}, nil)
	oldestSuccessDesc = prometheus.NewDesc(ns+"_oldest_success_age_seconds",
		"Longest time any authorized key/version pair polled by this replica has gone without a successful poll (0 on a follower).", nil, nil)
	oldestLcutDesc = prometheus.NewDesc(ns+"_oldest_lcut_age_seconds",
		"Age of the oldest lcut held in Redis across keys and versions (0 before the first poll): the last config change, not the last refresh.", nil, nil)
)

// scrapeCollector reports gauges computed at every scrape by collect, from
// one snapshot of the worker's state: descs are what it may emit.
type scrapeCollector struct {
	descs   []*prometheus.Desc
	collect func(ch chan<- prometheus.Metric)
}

func (c scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c scrapeCollector) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// RegisterHealth adds the health gauges (keys_unauthorized, keys_failing,
// oldest_success_age_seconds, oldest_lcut_age_seconds), computed by read at
// every scrape.
func (m *Metrics) RegisterHealth(read func() KeyHealth) {
	if m == nil {
		return
	}
	m.Registry.MustRegister(scrapeCollector{
		descs: []*prometheus.Desc{keysUnauthorizedDesc, keysFailingDesc, oldestSuccessDesc, oldestLcutDesc},
		collect: func(ch chan<- prometheus.Metric) {
			h := read()
			ch <- gauge(keysUnauthorizedDesc, float64(h.Unauthorized))
			for outcome, n := range h.Failing {
				ch <- gauge(keysFailingDesc, float64(n), outcome)
			}
			ch <- gauge(oldestSuccessDesc, h.OldestSuccessAge)
			ch <- gauge(oldestLcutDesc, h.OldestLcutAge)
		},
	})
}

// IDListHealth is what the ID-list gauges report, computed at scrape time
// from one snapshot of every key's ID-list status.
type IDListHealth struct {
	// Lists and Bytes are the lists (and their bytes) held in Redis, per
	// the last sync of each key.
	Lists int
	Bytes int64
	// Failing counts the keys whose last ID-list sync failed (refused keys
	// excluded).
	Failing int
	// OldestSuccessAge is the longest time, in seconds, any authorized key
	// has gone without a successful ID-list sync (since start for one that
	// never had one).
	OldestSuccessAge float64
}

var (
	idListsHeldDesc = prometheus.NewDesc(ns+"_id_lists_held",
		"ID lists held in Redis across keys (one schema's copy), per the last sync of each key.", nil, nil)
	idListBytesHeldDesc = prometheus.NewDesc(ns+"_id_list_bytes_held",
		"Bytes of the ID lists held in Redis across keys (one schema's copy).", nil, nil)
	idListKeysFailingDesc = prometheus.NewDesc(ns+"_id_list_keys_failing",
		"Keys whose last ID-list sync failed (unauthorized keys excluded).", nil, nil)
	idListOldestSuccessDesc = prometheus.NewDesc(ns+"_id_list_oldest_success_age_seconds",
		"Longest time any authorized key has gone without a successful ID-list sync (0 on a follower).", nil, nil)
)

// RegisterIDListHealth adds the ID-list gauges (id_lists_held,
// id_list_bytes_held, id_list_keys_failing,
// id_list_oldest_success_age_seconds), computed by read at every scrape.
func (m *Metrics) RegisterIDListHealth(read func() IDListHealth) {
	if m == nil {
		return
	}
	m.Registry.MustRegister(scrapeCollector{
		descs: []*prometheus.Desc{idListsHeldDesc, idListBytesHeldDesc, idListKeysFailingDesc, idListOldestSuccessDesc},
		collect: func(ch chan<- prometheus.Metric) {
			h := read()
			ch <- gauge(idListsHeldDesc, float64(h.Lists))
			ch <- gauge(idListBytesHeldDesc, float64(h.Bytes))
			ch <- gauge(idListKeysFailingDesc, float64(h.Failing))
			ch <- gauge(idListOldestSuccessDesc, h.OldestSuccessAge)
		},
	})
}

// RegisterReady adds statsig_populator_ready: 1 while /readyz would answer
// 200, computed by ready at every scrape, so that an alert sees what the
// readiness probe sees.
func (m *Metrics) RegisterReady(ready func() bool) {
	if m == nil {
		return
	}
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "ready",
		Help: "1 while this replica is ready (/readyz answers 200), else 0."}, func() float64 {
		if ready() {
			return 1
		}
		return 0
	}))
}
