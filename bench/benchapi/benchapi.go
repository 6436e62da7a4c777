// Package benchapi is what the benchmark's fake CDN (bench/cmd/fakecdn)
// answers on its /_bench/ endpoints, shared by the fake and the programs that
// read it (bench/cmd/bench, bench/cmd/inproc).
package benchapi

// Stats is what the fake's /_bench/stats answers: the window since the last
// reset.
type Stats struct {
	WindowSeconds float64 `json:"window_seconds"`
	Requests      int64   `json:"requests"` // DCS requests for known keys (polls)
	Full          int64   `json:"full"`
	NoUpdate      int64   `json:"no_update"`
	Other         int64   `json:"other"`
	BytesOut      int64   `json:"bytes_out"`
	Pairs         int     `json:"pairs"`
	// Gap percentiles in ms between consecutive requests of one pair.
	Gaps      int     `json:"gaps"`
	GapP50    int32   `json:"gap_p50_ms"`
	GapP99    int32   `json:"gap_p99_ms"`
	GapMax    int32   `json:"gap_max_ms"`
	SlipP50   int32   `json:"slip_p50_ms"` // max(0, gap − 1.1 × interval)
	SlipP99   int32   `json:"slip_p99_ms"`
	SlipP999  int32   `json:"slip_p999_ms"`
	SlipMax   int32   `json:"slip_max_ms"`
	LateGaps  int     `json:"late_gaps"` // gaps longer than 1.1 × interval + 1 s
	LateFrac  float64 `json:"late_frac"`
	Unpolled  int     `json:"unpolled_pairs"`   // pairs with no request in the window (versions asked for only)
	MissedInt int     `json:"missed_intervals"` // pairs whose largest gap exceeds 2 × interval
	Changes   int     `json:"changes"`
	// OtherPaths counts requests that were not a DCS request for a known key.
	OtherPaths map[string]int64 `json:"other_paths,omitempty"`
}
