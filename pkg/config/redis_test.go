package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/statsig-populator/statsig-populator/pkg/redisconn"
)

func files(m map[string]string) func(string) ([]byte, error) {
	return func(p string) ([]byte, error) {
		if v, ok := m[p]; ok {
			return []byte(v), nil
		}
		return nil, fs.ErrNotExist
	}
}

func TestRedisTopologies(t *testing.T) {
	base := defaults(t)
	base.SDKKeys = keyA

	env := base
	env.RedisClusterAddrs = "10.0.0.1:6379, 10.0.0.2:6379,10.0.0.3:6379"
	env.RedisURL = "redis://populator@ignored:1"
	env.RedisPasswordFile = "/run/secrets/redis"
	c, err := env.Parse(files(map[string]string{"/run/secrets/redis": "s3cret\n"}), true)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Redis
	if r.Mode != redisconn.Cluster || len(r.Addrs) != 3 || r.Addrs[1] != "10.0.0.2:6379" || r.Username != "populator" || r.Password != "s3cret" {
		t.Fatalf("cluster: %+v", r)
	}
	if d := r.Describe(); strings.Contains(d, "s3cret") || !strings.Contains(d, "cluster") {
		t.Errorf("Describe() = %q", d)
	}

	env = base
	env.RedisSentinelAddrs = "s1:26379,s2:26379"
	env.RedisSentinelMaster = "mymaster"
	env.RedisSentinelPass = "sentinel-pw"
	env.RedisDB = "2"
	c, err = env.Parse(noFile, true)
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Redis; r.Mode != redisconn.Sentinel || r.SentinelMaster != "mymaster" || r.SentinelPassword != "sentinel-pw" || r.DB != 2 {
		t.Fatalf("sentinel: %+v", r)
	}
}

func TestRedisProblems(t *testing.T) {
	base := defaults(t)
	base.SDKKeys = keyA
	cases := []struct {
		name string
		mod  func(*Env)
		want []string // variables with problems
	}{
		{"both topologies", func(e *Env) { e.RedisClusterAddrs, e.RedisSentinelAddrs = "a:1", "b:2" }, []string{"REDIS_CLUSTER_ADDRS"}},
		{"sentinel without master", func(e *Env) { e.RedisSentinelAddrs = "b:2" }, []string{"REDIS_SENTINEL_MASTER"}},
		{"bad address", func(e *Env) { e.RedisClusterAddrs = "nohost" }, []string{"REDIS_CLUSTER_ADDRS"}},
		{"password twice", func(e *Env) { e.RedisPassword, e.RedisPasswordFile = "a", "/x" }, []string{"REDIS_PASSWORD"}},
		{"password file missing", func(e *Env) { e.RedisPasswordFile = "/missing" }, []string{"REDIS_PASSWORD_FILE"}},
		{"db on a cluster", func(e *Env) { e.RedisClusterAddrs, e.RedisDB = "a:1", "3" }, []string{"REDIS_DB"}},
		{"tls files without tls", func(e *Env) { e.RedisTLSCAFile = "/ca.pem" }, []string{"REDIS_TLS"}},
		{"cert without key", func(e *Env) { e.RedisTLS, e.RedisTLSCertFile = "true", "/c.pem" }, []string{"REDIS_TLS_CERT_FILE"}},
		{"unreadable CA", func(e *Env) { e.RedisTLS, e.RedisTLSCAFile = "true", "/missing.pem" }, []string{"REDIS_TLS_CA_FILE"}},
		{"CA without certificates", func(e *Env) { e.RedisTLS, e.RedisTLSCAFile = "true", "/x" }, []string{"REDIS_TLS_CA_FILE"}},
		{"statsig CA missing", func(e *Env) { e.StatsigCAFile = "/missing.pem" }, []string{"STATSIG_CA_FILE"}},
		{"bad admin address", func(e *Env) { e.AdminAddr = "8080" }, []string{"ADMIN_ADDR"}},
		{"lease too short", func(e *Env) { e.LeaderLease = "10ms" }, []string{"LEADER_LEASE"}},
	}
	for _, c := range cases {
		env := base
		c.mod(&env)
		_, err := env.Parse(files(map[string]string{"/x": "not pem"}), true)
		var p Problems
		if !errors.As(err, &p) {
			t.Errorf("%s: error %v, want problems with %v", c.name, err, c.want)
			continue
		}
		var got []string
		for _, pr := range p {
			got = append(got, pr.Var)
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%s: problems with %v, want %v\n%v", c.name, got, c.want, err)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: message shows a password", c.name)
		}
	}
}

func TestRedisTLSFiles(t *testing.T) {
	certPEM, keyPEM := selfSigned(t)
	env := defaults(t)
	env.SDKKeys = keyA
	env.RedisTLS = "true"
	env.RedisTLSCAFile, env.RedisTLSCertFile, env.RedisTLSKeyFile = "/ca.pem", "/c.pem", "/k.pem"
	env.RedisTLSServerName = "redis.example"
	c, err := env.Parse(files(map[string]string{"/ca.pem": certPEM, "/c.pem": certPEM, "/k.pem": keyPEM}), true)
	if err != nil {
		t.Fatal(err)
	}
	tc := c.Redis.TLS
	if tc == nil || tc.ServerName != "redis.example" || len(tc.Certificates) != 1 || tc.RootCAs == nil || tc.InsecureSkipVerify {
		t.Fatalf("tls config %+v", tc)
	}
	env.RedisTLSKeyFile = "/ca.pem" // a certificate is not a key
	if _, err := env.Parse(files(map[string]string{"/ca.pem": certPEM, "/c.pem": certPEM}), true); err == nil || !strings.Contains(err.Error(), "pair") {
		t.Fatalf("mismatched pair: %v", err)
	}
}

func selfSigned(t *testing.T) (string, string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

// REDIS_URL's query: every go-redis option applies or is a problem; the db
// option is honoured (it used to be dropped, leaving database 0).
func TestRedisURLOptions(t *testing.T) {
	base := defaults(t)
	base.SDKKeys = keyA
	cases := []struct {
		name  string
		mod   func(*Env)
		want  []string // variables with problems
		check func(redisconn.Options) bool
	}{
		{"db in the query", func(e *Env) { e.RedisURL = "redis://host:6379?db=5" }, nil,
			func(r redisconn.Options) bool { return r.DB == 5 && r.Addrs[0] == "host:6379" }},
		{"db in the query after a slash", func(e *Env) { e.RedisURL = "redis://host:6379/?db=5" }, nil,
			func(r redisconn.Options) bool { return r.DB == 5 }},
		{"path and query agree", func(e *Env) { e.RedisURL = "redis://host/5?db=5" }, nil,
			func(r redisconn.Options) bool { return r.DB == 5 }},
		{"path and query disagree", func(e *Env) { e.RedisURL = "redis://host/0?db=5" }, []string{"REDIS_URL"}, nil},
		{"REDIS_DB overrides both", func(e *Env) { e.RedisURL, e.RedisDB = "redis://host/3?db=3", "7" }, nil,
			func(r redisconn.Options) bool { return r.DB == 7 }},
		{"db on a cluster from the query", func(e *Env) { e.RedisURL, e.RedisClusterAddrs = "redis://x?db=2", "a:1,b:2" }, []string{"REDIS_URL"}, nil},
		{"db on a cluster from the path", func(e *Env) { e.RedisURL, e.RedisClusterAddrs = "redis://x/2", "a:1,b:2" }, []string{"REDIS_URL"}, nil},
		{"db 0 on a cluster", func(e *Env) { e.RedisURL, e.RedisClusterAddrs = "redis://x/0?db=0", "a:1,b:2" }, nil, nil},
		{"db on a sentinel master", func(e *Env) {
			e.RedisURL, e.RedisSentinelAddrs, e.RedisSentinelMaster = "redis://x?db=4", "s:26379", "m"
		}, nil, func(r redisconn.Options) bool { return r.DB == 4 && r.Mode == redisconn.Sentinel }},
		{"options reach the client", func(e *Env) {
			e.RedisURL = "redis://host?read_timeout=5s&pool_size=20&client_name=team-a&max_retries=-1"
		}, nil, func(r redisconn.Options) bool {
			return r.Tuning.ReadTimeout == 5*time.Second && r.Tuning.PoolSize == 20 && r.Tuning.ClientName == "team-a" &&
				r.Tuning.MaxRetries == -1 && r.PoolSize == 64+redisPoolSpare
		}},
		{"options apply to a cluster", func(e *Env) { e.RedisURL, e.RedisClusterAddrs = "redis://x?dial_timeout=2", "a:1" }, nil,
			func(r redisconn.Options) bool {
				return r.Tuning.DialTimeout == 2*time.Second && r.Mode == redisconn.Cluster
			}},
		{"skip_verify with rediss", func(e *Env) { e.RedisURL = "rediss://host?skip_verify=true" }, nil,
			func(r redisconn.Options) bool {
				return r.InsecureSkipVerify && r.TLS != nil && r.TLS.InsecureSkipVerify
			}},
		{"skip_verify with REDIS_TLS", func(e *Env) { e.RedisURL, e.RedisTLS = "redis://host?skip_verify=true", "true" }, nil,
			func(r redisconn.Options) bool { return r.InsecureSkipVerify && r.TLS.InsecureSkipVerify }},
		{"skip_verify false keeps verifying", func(e *Env) { e.RedisURL = "rediss://host?skip_verify=false" }, nil,
			func(r redisconn.Options) bool { return !r.InsecureSkipVerify && !r.TLS.InsecureSkipVerify }},
		{"skip_verify without TLS", func(e *Env) { e.RedisURL = "redis://host?skip_verify=true" }, []string{"REDIS_URL"}, nil},
		{"skip_verify contradicting", func(e *Env) { e.RedisURL, e.RedisTLSInsecure = "rediss://host?skip_verify=false", "true" }, []string{"REDIS_URL"}, nil},
		{"unknown option", func(e *Env) { e.RedisURL = "redis://host?readtimeout=5s" }, []string{"REDIS_URL"}, nil},
		{"every bad option at once", func(e *Env) { e.RedisURL = "redis://host?pool_size=lots&read_timeout=soon&bogus=1" },
			[]string{"REDIS_URL", "REDIS_URL", "REDIS_URL"}, nil},
		{"absurd pool size", func(e *Env) { e.RedisURL = "redis://host?pool_size=100000000" }, []string{"REDIS_URL"}, nil},
		{"absurd db in the query", func(e *Env) { e.RedisURL = "redis://host?db=99999999" }, []string{"REDIS_URL"}, nil},
		{"absurd db in the path", func(e *Env) { e.RedisURL = "redis://host/99999999" }, []string{"REDIS_URL"}, nil},
		{"negative db", func(e *Env) { e.RedisURL = "redis://host?db=-1" }, []string{"REDIS_URL"}, nil},
		{"port too big", func(e *Env) { e.RedisURL = "redis://host:99999" }, []string{"REDIS_URL"}, nil},
		{"port 65535", func(e *Env) { e.RedisURL = "redis://host:65535" }, nil, func(r redisconn.Options) bool { return r.Addrs[0] == "host:65535" }},
		{"port 0", func(e *Env) { e.RedisURL = "redis://host:0" }, []string{"REDIS_URL"}, nil},
		{"cluster port too big", func(e *Env) { e.RedisClusterAddrs = "a:6379,b:70000" }, []string{"REDIS_CLUSTER_ADDRS"}, nil},
		{"cluster port name", func(e *Env) { e.RedisClusterAddrs = "a:redis" }, []string{"REDIS_CLUSTER_ADDRS"}, nil},
		{"sentinel port too big", func(e *Env) { e.RedisSentinelAddrs, e.RedisSentinelMaster = "s:265379", "m" }, []string{"REDIS_SENTINEL_ADDRS"}, nil},
		{"sentinel port 0", func(e *Env) { e.RedisSentinelAddrs, e.RedisSentinelMaster = "s:0", "m" }, []string{"REDIS_SENTINEL_ADDRS"}, nil},
		{"password file kept for rotation", func(e *Env) { e.RedisPasswordFile = "/run/secrets/redis" }, nil,
			func(r redisconn.Options) bool {
				return r.PasswordFile == "/run/secrets/redis" && r.Password == "s3cret"
			}},
		{"password variable is not rotated", func(e *Env) { e.RedisPassword = "direct" }, nil,
			func(r redisconn.Options) bool { return r.PasswordFile == "" && r.Password == "direct" }},
		{"empty password file keeps the URL's", func(e *Env) { e.RedisURL, e.RedisPasswordFile = "redis://:urlpw@host", "/empty" }, nil,
			func(r redisconn.Options) bool { return r.PasswordFile == "/empty" && r.Password == "urlpw" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := base
			c.mod(&env)
			cfg, err := env.Parse(files(map[string]string{"/run/secrets/redis": "s3cret\n", "/empty": ""}), true)
			if got := problemVars(t, err); strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Fatalf("problems with %v, want %v\n%v", got, c.want, err)
			}
			if err == nil && c.check != nil && !c.check(cfg.Redis) {
				t.Errorf("parsed %+v", cfg.Redis)
			}
			if err != nil {
				for _, v := range []string{"lots", "soon", "s3cret"} {
					if strings.Contains(err.Error(), v) {
						t.Errorf("message quotes %q:\n%v", v, err)
					}
				}
			}
		})
	}
}

// Whatever the messages quote, a configured password never shows: here one
// pasted as an option name of REDIS_URL, and an address list holding a URL.
func TestRedisMessagesMaskPasswords(t *testing.T) {
	env := defaults(t)
	env.SDKKeys = keyA
	env.RedisURL = "redis://:Hunter2Secret@host?Hunter2Secret"
	env.RedisSentinelAddrs, env.RedisSentinelMaster = "redis://admin:OtherSecret9@s:26379", "m"
	_, err := env.Parse(noFile, true)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, s := range []string{"Hunter2Secret", "OtherSecret9"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("message shows %q:\n%v", s, err)
		}
	}
}

// Both unreadable halves of a client certificate are reported, not just the
// first.
func TestRedisTLSBothFilesMissing(t *testing.T) {
	env := defaults(t)
	env.SDKKeys = keyA
	env.RedisTLS = "true"
	env.RedisTLSCertFile, env.RedisTLSKeyFile = "/missing-cert.pem", "/missing-key.pem"
	_, err := env.Parse(noFile, true)
	if got := problemVars(t, err); strings.Join(got, ",") != "REDIS_TLS_CERT_FILE,REDIS_TLS_KEY_FILE" {
		t.Fatalf("problems with %v\n%v", got, err)
	}
}
