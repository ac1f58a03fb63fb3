package storeopen

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/families"
	"github.com/hsmca/hsmca/store/redisstore"
)

// maxSecretFile bounds a password file: a larger one is not a password.
const maxSecretFile = 4096

// RedisConn turns the configuration into the store's connection: it reads
// the password files (or HSMCA_REDIS_PASSWORD, HSMCA_REDIS_SENTINEL_PASSWORD)
// and the TLS files. Errors name files, never their contents.
func RedisConn(cfg *config.Config) (redisstore.Conn, error) {
	r := cfg.Store.Redis
	c := redisstore.Conn{
		Mode:             redisstore.Mode(cfg.RedisMode()),
		URL:              cfg.RedisURL(),
		Addrs:            r.Addrs,
		MasterName:       r.MasterName,
		DB:               r.DB,
		Username:         r.Username,
		SentinelUsername: r.SentinelUsername,
	}
	var err error
	if c.Password, err = secret(r.PasswordFile, "HSMCA_REDIS_PASSWORD", "redis password"); err != nil {
		return c, err
	}
	if c.SentinelPassword, err = secret(r.SentinelPasswordFile, "HSMCA_REDIS_SENTINEL_PASSWORD", "redis sentinel password"); err != nil {
		return c, err
	}
	if cfg.RedisTLS() {
		if c.TLS, err = redisTLS(cfg); err != nil {
			return c, err
		}
	}
	return c, nil
}

// secret reads a password from its file (first line), else from the
// environment variable; "" when neither is set.
func secret(file, env, what string) (string, error) {
	if file == "" {
		return strings.TrimRight(os.Getenv(env), "\r\n"), nil
	}
	fi, err := os.Stat(file)
	if err != nil {
		return "", fmt.Errorf("%s file: %w", what, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxSecretFile {
		return "", fmt.Errorf("%s file %s: not a regular file of at most %d bytes", what, file, maxSecretFile)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s file: %w", what, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	clear(b)
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%s file %s is empty", what, file)
	}
	return line, nil
}

// redisTLS is the TLS configuration towards Redis: TLS 1.2 or later, the
// CA bundle (default: the system's roots), the client certificate.
func redisTLS(cfg *config.Config) (*tls.Config, error) {
	t := cfg.Store.Redis.TLS
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis TLS CA file %s: no PEM certificate in it", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			// LoadX509KeyPair's errors quote no key material.
			return nil, fmt.Errorf("redis TLS client certificate %s: %w", t.CertFile, err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// RedisOptions are the redisstore options of cfg.
func RedisOptions(cfg *config.Config) redisstore.Options {
	r := cfg.Store.Redis
	opts := redisstore.Options{Indexes: families.Indexes(), WaitTimeout: r.WaitTimeout}
	if r.WaitReplicas != nil {
		opts.WaitReplicas = *r.WaitReplicas
		if *r.WaitReplicas == 0 {
			opts.WaitReplicas = redisstore.NoWait
		}
	}
	return opts
}
