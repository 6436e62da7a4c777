// Package admin is the worker's small HTTP port for operators and
// orchestrators: /healthz (liveness), /readyz (readiness), /status (JSON per
// key and version) and /metrics (Prometheus). It serves no configuration and
// never shows a full SDK key.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/statsig-populator/statsig-populator/pkg/leader"
	"github.com/statsig-populator/statsig-populator/pkg/poller"
)

// Source is what the admin port reports on (poller.Poller).
type Source interface {
	Statuses() []poller.Status
	Alive() time.Time
	RedisOK() time.Time
}

// Options configure the handler.
type Options struct {
	Interval time.Duration
	Version  string
	Registry *prometheus.Registry
	// Leader reports the election state; nil when election is off.
	Leader func() leader.State
	// IDLists reports every key's ID-list status; nil when ID lists are off.
	IDLists func() []poller.IDListStatus
}

// LivenessWindow is how long the scheduling loop may go without a round
// before /healthz fails. The loop goes round at least every second.
const LivenessWindow = 10 * time.Second

// Handler returns the admin mux.
func Handler(src Source, opt Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		alive := src.Alive()
		if alive.IsZero() || time.Since(alive) > LivenessWindow {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ok": false, "reason": "scheduling loop not running"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ok, reason := Readiness(src.Statuses(), src.RedisOK(), src.Alive(), time.Now(), opt.Interval)
		if ok && opt.IDLists != nil {
			ok, reason = IDListReadiness(opt.IDLists())
		}
		if !ok {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": reason})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ready": true})
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, status(src, opt, time.Now(), r.URL.Query().Get("key")))
	})
	if opt.Registry != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(opt.Registry, promhttp.HandlerOpts{}))
	}
	return mux
}

// Readiness decides /readyz: this replica is doing its job. Its scheduling
// loop goes round, Redis answered within the last three intervals, and every
// key and version has been confirmed current in Redis at least once since
// start, except keys the CDN refuses: a revoked key is the key owner's
// problem (keys_unauthorized shows it), and holding every replica unready
// for it would stall a rollout. A key that fails after its first success
// leaves the replica ready; oldest_success_age_seconds and keys_failing show
// it.
func Readiness(statuses []poller.Status, redisOK, alive, now time.Time, interval time.Duration) (bool, string) {
	pending, example := 0, ""
	for _, s := range statuses {
		if !s.Confirmed && !s.Unauthorized {
			pending++
			if example == "" {
				example = fmt.Sprintf("%s %s: %s", s.Key, s.Version, orDash(s.LastOutcome))
			}
		}
	}
	switch {
	case len(statuses) == 0:
		return false, "no SDK keys configured"
	case alive.IsZero() || now.Sub(alive) > LivenessWindow:
		return false, "scheduling loop not running"
	case pending > 0:
		return false, fmt.Sprintf("%d of %d key/version pairs not yet confirmed current in Redis (e.g. %s)", pending, len(statuses), example)
	case redisOK.IsZero():
		return false, "Redis has not answered yet"
	case now.Sub(redisOK) > 3*interval:
		return false, fmt.Sprintf("Redis has not answered for %s", now.Sub(redisOK).Round(time.Second))
	}
	return true, ""
}

// IDListReadiness is the ID-list half of /readyz: every key's ID lists have
// been confirmed current in Redis once since start, except keys the CDN
// refuses (as for config specs).
func IDListReadiness(statuses []poller.IDListStatus) (bool, string) {
	pending, example := 0, ""
	for _, s := range statuses {
		if !s.Confirmed && !s.Unauthorized {
			pending++
			if example == "" {
				example = fmt.Sprintf("%s: %s", s.Key, orDash(s.LastOutcome))
			}
		}
	}
	if pending > 0 {
		return false, fmt.Sprintf("the ID lists of %d of %d keys not yet confirmed current in Redis (e.g. %s)", pending, len(statuses), example)
	}
	return true, ""
}

func orDash(s string) string {
	if s == "" {
		return "not polled yet"
	}
	return s
}

// keyStatus is one entry of /status.
type keyStatus struct {
	poller.Status
	LcutAgeSeconds float64 `json:"lcut_age_seconds,omitempty"`
}

// status is /status: one snapshot of every key's status (taken once: it is
// built under the scheduler's lock), filtered to the keys whose redacted name
// starts with keyFilter when that is set.
func status(src Source, opt Options, now time.Time, keyFilter string) map[string]any {
	statuses := src.Statuses()
	redisOK, alive := src.RedisOK(), src.Alive()
	ready, reason := Readiness(statuses, redisOK, alive, now, opt.Interval)
	var idStatuses []poller.IDListStatus
	if opt.IDLists != nil {
		idStatuses = opt.IDLists()
		if ready {
			ready, reason = IDListReadiness(idStatuses)
		}
	}
	keys := make([]keyStatus, 0, len(statuses))
	for _, s := range statuses {
		if keyFilter != "" && !strings.HasPrefix(s.Key, keyFilter) {
			continue
		}
		ks := keyStatus{Status: s}
		if s.Lcut > 0 {
			ks.LcutAgeSeconds = now.Sub(time.UnixMilli(s.Lcut)).Seconds()
		}
		keys = append(keys, ks)
	}
	out := map[string]any{
		"version":       opt.Version,
		"ready":         ready,
		"keys":          keys,
		"redis_ok_at":   redisOK,
		"loop_alive_at": alive,
	}
	if !ready {
		out["not_ready_reason"] = reason
	}
	if opt.IDLists != nil {
		ids := make([]poller.IDListStatus, 0, len(idStatuses))
		for _, s := range idStatuses {
			if keyFilter == "" || strings.HasPrefix(s.Key, keyFilter) {
				ids = append(ids, s)
			}
		}
		out["id_lists"] = ids
	}
	if opt.Leader != nil {
		out["leader"] = opt.Leader()
	} else {
		out["leader"] = leader.State{Enabled: false, Leading: true}
	}
	return out
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Serve listens on addr until ctx ends. The listener is opened before Serve
// returns an error, so a port already in use fails fast.
func Serve(ctx context.Context, addr string, h http.Handler, log zerolog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin server: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info().Str("addr", ln.Addr().String()).Msg("admin server listening")
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error().Err(err).Msg("admin server stopped")
		}
	}()
	return nil
}
