package config

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Mode is the Redis topology.
type Mode string

const (
	Standalone Mode = "standalone"
	Cluster    Mode = "cluster"
	Sentinel   Mode = "sentinel"
)

// Redis is how to reach Redis. Secrets (passwords) are kept here but never
// printed by this package.
type Redis struct {
	Mode Mode
	// Addrs: one host:port for standalone, the seed nodes for a cluster, the
	// Sentinels for sentinel.
	Addrs            []string
	SentinelMaster   string
	SentinelPassword string
	Username         string
	Password         string
	DB               int
	// TLS is nil for plain TCP.
	TLS *tls.Config
	// InsecureSkipVerify is set when REDIS_TLS_INSECURE_SKIP_VERIFY is on,
	// so that start-up can warn about it.
	InsecureSkipVerify bool
	// URLQuery holds go-redis options given in REDIS_URL's query (timeouts,
	// pool sizes), applied to every topology.
	URLQuery string
}

// Describe names the target without credentials, for logs.
func (r Redis) Describe() string {
	scheme := "redis"
	if r.TLS != nil {
		scheme = "rediss"
	}
	switch r.Mode {
	case Cluster:
		return "cluster " + scheme + "://" + strings.Join(r.Addrs, ",")
	case Sentinel:
		return "sentinel " + scheme + "://" + strings.Join(r.Addrs, ",") + " master " + r.SentinelMaster + "/" + strconv.Itoa(r.DB)
	}
	return scheme + "://" + r.Addrs[0] + "/" + strconv.Itoa(r.DB)
}

func (env Env) parseRedis(add addFunc, readFile func(string) ([]byte, error)) Redis {
	var r Redis
	cluster, sentinel := splitList(env.RedisClusterAddrs), splitList(env.RedisSentinelAddrs)
	useTLS := boolean(add, "REDIS_TLS", env.RedisTLS)

	// REDIS_URL is always parsed: in cluster and sentinel modes it still
	// carries credentials, the database and go-redis query options.
	serverName := ""
	if u, err := url.Parse(env.RedisURL); err != nil {
		add("REDIS_URL", "not a valid URL (its text is not shown: it may contain a password)")
	} else if msg := checkRedisURL(u); msg != "" {
		add("REDIS_URL", "%s", msg)
	} else {
		r.Addrs = []string{hostPort(u)}
		serverName = u.Hostname()
		r.Username = u.User.Username()
		r.Password, _ = u.User.Password()
		if p := strings.Trim(u.Path, "/"); p != "" {
			r.DB, _ = strconv.Atoi(p)
		}
		useTLS = useTLS || u.Scheme == "rediss"
		r.URLQuery = u.RawQuery
	}

	switch {
	case len(cluster) > 0 && len(sentinel) > 0:
		add("REDIS_CLUSTER_ADDRS", "set either REDIS_CLUSTER_ADDRS or REDIS_SENTINEL_ADDRS, not both")
	case len(cluster) > 0:
		r.Mode, r.Addrs = Cluster, addrs(add, "REDIS_CLUSTER_ADDRS", cluster)
		serverName = ""
	case len(sentinel) > 0:
		r.Mode, r.Addrs = Sentinel, addrs(add, "REDIS_SENTINEL_ADDRS", sentinel)
		r.SentinelMaster = env.RedisSentinelMaster
		if r.SentinelMaster == "" {
			add("REDIS_SENTINEL_MASTER", "required with REDIS_SENTINEL_ADDRS")
		}
		serverName = ""
	default:
		r.Mode = Standalone
	}
	r.SentinelPassword = secret(add, "REDIS_SENTINEL_PASSWORD", env.RedisSentinelPass, env.RedisSentinelPassF, readFile)

	if env.RedisUsername != "" {
		r.Username = env.RedisUsername
	}
	if pw := secret(add, "REDIS_PASSWORD", env.RedisPassword, env.RedisPasswordFile, readFile); pw != "" {
		r.Password = pw
	}
	if env.RedisDB != "" {
		r.DB = int(integer(add, "REDIS_DB", env.RedisDB, 0, 1<<20))
	}
	if r.Mode == Cluster && r.DB != 0 {
		add("REDIS_DB", "Redis Cluster has only database 0")
	}

	insecure := boolean(add, "REDIS_TLS_INSECURE_SKIP_VERIFY", env.RedisTLSInsecure)
	anyTLSFile := env.RedisTLSCAFile != "" || env.RedisTLSCertFile != "" || env.RedisTLSKeyFile != "" || env.RedisTLSServerName != ""
	if !useTLS && (anyTLSFile || insecure) {
		add("REDIS_TLS", "TLS settings are given but TLS is off: set REDIS_TLS=true or use rediss://")
	}
	if useTLS {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName, InsecureSkipVerify: insecure}
		if env.RedisTLSServerName != "" {
			cfg.ServerName = env.RedisTLSServerName
		}
		if env.RedisTLSCAFile != "" {
			cfg.RootCAs = certPool(add, "REDIS_TLS_CA_FILE", env.RedisTLSCAFile, readFile)
		}
		switch {
		case (env.RedisTLSCertFile == "") != (env.RedisTLSKeyFile == ""):
			add("REDIS_TLS_CERT_FILE", "REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together")
		case env.RedisTLSCertFile != "":
			certPEM, err1 := readFile(env.RedisTLSCertFile)
			keyPEM, err2 := readFile(env.RedisTLSKeyFile)
			switch {
			case err1 != nil:
				add("REDIS_TLS_CERT_FILE", "cannot read %s: %v", env.RedisTLSCertFile, unwrapPathError(err1))
			case err2 != nil:
				add("REDIS_TLS_KEY_FILE", "cannot read %s: %v", env.RedisTLSKeyFile, unwrapPathError(err2))
			default:
				pair, err := tls.X509KeyPair(certPEM, keyPEM)
				if err != nil {
					add("REDIS_TLS_CERT_FILE", "certificate and key do not form a pair: %v", err)
				}
				cfg.Certificates = []tls.Certificate{pair}
			}
		}
		r.TLS, r.InsecureSkipVerify = cfg, insecure
	}
	return r
}

// checkRedisURL validates a parsed Redis URL without quoting it.
func checkRedisURL(u *url.URL) string {
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return "scheme " + strconv.Quote(u.Scheme) + " is not redis:// or rediss://"
	}
	if u.Host == "" {
		return "no host"
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 0 {
			return "path " + strconv.Quote(u.Path) + " is not a database number"
		}
	}
	return ""
}

func hostPort(u *url.URL) string {
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "6379"
	}
	return net.JoinHostPort(host, port)
}

func addrs(add addFunc, v string, list []string) []string {
	for _, a := range list {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			add(v, "%q is not host:port", a)
		}
	}
	return list
}

// secret returns a value given directly or in a file (never both). File
// contents lose one trailing newline, as written by most tools.
func secret(add addFunc, v, direct, file string, readFile func(string) ([]byte, error)) string {
	switch {
	case direct != "" && file != "":
		add(v, "set %s or %s_FILE, not both", v, v)
		return ""
	case file != "":
		b, err := readFile(file)
		if err != nil {
			add(v+"_FILE", "cannot read %s: %v", file, unwrapPathError(err))
			return ""
		}
		return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	}
	return direct
}

// certPool is the system roots plus the PEM certificates in file.
func certPool(add addFunc, v, file string, readFile func(string) ([]byte, error)) *x509.CertPool {
	b, err := readFile(file)
	if err != nil {
		add(v, "cannot read %s: %v", file, unwrapPathError(err))
		return nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(b) {
		add(v, "%s holds no PEM certificate", file)
	}
	return pool
}
