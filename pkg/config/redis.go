package config

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/statsig-populator/statsig-populator/pkg/redisconn"
)

func (env Env) parseRedis(add addFunc, readFile func(string) ([]byte, error)) redisconn.Options {
	var r redisconn.Options
	cluster, sentinel := splitList(env.RedisClusterAddrs), splitList(env.RedisSentinelAddrs)
	useTLS := boolean(add, "REDIS_TLS", env.RedisTLS)

	// REDIS_URL is always parsed: in cluster and sentinel modes it still
	// carries credentials, the database and go-redis query options.
	var (
		serverName string
		pathDB     int
		hasPathDB  bool
		query      redisconn.Query
	)
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
			pathDB, _ = strconv.Atoi(p)
			hasPathDB = true
		}
		useTLS = useTLS || u.Scheme == "rediss"
		// The query is validated here, with every other setting, rather
		// than when connecting: an unknown option or a bad value is a
		// configuration problem like any other, reported together.
		var bad []string
		query, bad = redisconn.ParseQuery(u.RawQuery, useTLS)
		for _, msg := range bad {
			add("REDIS_URL", "%s", msg)
		}
		r.Tuning = query.Tuning
	}

	switch {
	case len(cluster) > 0 && len(sentinel) > 0:
		add("REDIS_CLUSTER_ADDRS", "set either REDIS_CLUSTER_ADDRS or REDIS_SENTINEL_ADDRS, not both")
	case len(cluster) > 0:
		r.Mode, r.Addrs = redisconn.Cluster, addrs(add, "REDIS_CLUSTER_ADDRS", cluster)
		serverName = ""
	case len(sentinel) > 0:
		r.Mode, r.Addrs = redisconn.Sentinel, addrs(add, "REDIS_SENTINEL_ADDRS", sentinel)
		r.SentinelMaster = env.RedisSentinelMaster
		if r.SentinelMaster == "" {
			add("REDIS_SENTINEL_MASTER", "required with REDIS_SENTINEL_ADDRS")
		}
		serverName = ""
	default:
		r.Mode = redisconn.Standalone
	}
	// Read once: go-redis has no credentials hook for Sentinel connections.
	r.SentinelPassword, _ = secret(add, "REDIS_SENTINEL_PASSWORD", env.RedisSentinelPass, env.RedisSentinelPassF, readFile)

	if env.RedisUsername != "" {
		r.Username = env.RedisUsername
	}
	if pw, fromFile := secret(add, "REDIS_PASSWORD", env.RedisPassword, env.RedisPasswordFile, readFile); pw != "" || fromFile {
		if pw != "" {
			r.Password = pw
		}
		if fromFile {
			r.PasswordFile = env.RedisPasswordFile // re-read by redisconn for every new connection
		}
	}

	// The database: REDIS_URL's path or its db option (which go-redis lets
	// win silently; a disagreement is surely a mistake), then REDIS_DB.
	dbVar := "REDIS_URL"
	switch {
	case query.HasDB && hasPathDB && query.DB != pathDB:
		add("REDIS_URL", "its path names database %d and its db option database %d; give one", pathDB, query.DB)
	case query.HasDB:
		r.DB = query.DB
	case hasPathDB:
		r.DB = pathDB
	}
	if env.RedisDB != "" {
		r.DB, dbVar = int(integer(add, "REDIS_DB", env.RedisDB, 0, redisconn.MaxDB)), "REDIS_DB"
	}
	if r.Mode == redisconn.Cluster && r.DB != 0 {
		add(dbVar, "Redis Cluster has only database 0")
	}

	insecure := boolean(add, "REDIS_TLS_INSECURE_SKIP_VERIFY", env.RedisTLSInsecure)
	if query.HasSkipVerify {
		if insecure && !query.SkipVerify {
			add("REDIS_URL", "its skip_verify=false contradicts REDIS_TLS_INSECURE_SKIP_VERIFY=true; give one")
		}
		insecure = insecure || query.SkipVerify
	}
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
			if err1 != nil {
				add("REDIS_TLS_CERT_FILE", "cannot read %s: %v", env.RedisTLSCertFile, unwrapPathError(err1))
			}
			if err2 != nil {
				add("REDIS_TLS_KEY_FILE", "cannot read %s: %v", env.RedisTLSKeyFile, unwrapPathError(err2))
			}
			if err1 == nil && err2 == nil {
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
	if msg := checkPort(u.Port()); u.Port() != "" && msg != "" {
		return msg
	}
	if p := strings.Trim(u.Path, "/"); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > redisconn.MaxDB {
			return "path " + strconv.Quote(u.Path) + " is not a database number (0 to " + strconv.Itoa(redisconn.MaxDB) + ")"
		}
	}
	return ""
}

// checkPort accepts a Redis port: a number from 1 to 65535 (0 cannot be
// connected to).
func checkPort(port string) string {
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "port " + strconv.Quote(port) + " is not a number from 1 to 65535"
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

// addrs checks host:port addresses. An address is named by its position,
// not quoted: a URL with a password pasted into the list would otherwise be
// echoed.
func addrs(add addFunc, v string, list []string) []string {
	for i, a := range list {
		_, port, err := net.SplitHostPort(a)
		switch {
		case err != nil || port == "":
			add(v, "address %d of %d is not host:port", i+1, len(list))
		case checkPort(port) != "":
			add(v, "address %d of %d: %s", i+1, len(list), checkPort(port))
		}
	}
	return list
}

// secret returns a value given directly or in a file (never both), and
// whether it came from a file that was read. File contents lose one
// trailing newline, as written by most tools.
func secret(add addFunc, v, direct, file string, readFile func(string) ([]byte, error)) (string, bool) {
	switch {
	case direct != "" && file != "":
		add(v, "set %s or %s_FILE, not both", v, v)
		return "", false
	case file != "":
		b, err := readFile(file)
		if err != nil {
			add(v+"_FILE", "cannot read %s: %v", file, unwrapPathError(err))
			return "", false
		}
		return redisconn.PasswordFromFile(b), true
	}
	return direct, false
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
