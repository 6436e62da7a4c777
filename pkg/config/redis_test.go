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
	if r.Mode != Cluster || len(r.Addrs) != 3 || r.Addrs[1] != "10.0.0.2:6379" || r.Username != "populator" || r.Password != "s3cret" {
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
	if r := c.Redis; r.Mode != Sentinel || r.SentinelMaster != "mymaster" || r.SentinelPassword != "sentinel-pw" || r.DB != 2 {
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
