// Package config loads hsmcad's configuration: one YAML file, then
// HSMCA_* environment variables on top, then defaults. Secrets (the PIN) are
// never values here: only the file or variable they are read from.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the daemon's whole configuration.
type Config struct {
	ListenAddr string `yaml:"listen_addr"`
	DataDir    string `yaml:"data_dir"`
	LogLevel   string `yaml:"log_level"`

	Store struct {
		Backend  string `yaml:"backend"` // bolt | redis
		BoltPath string `yaml:"bolt_path"`
		// RedisURL is the standalone Redis (the short form of
		// redis.url).
		RedisURL string `yaml:"redis_url"`
		Redis    Redis  `yaml:"redis"`
	} `yaml:"store"`

	PKCS11 struct {
		Module     string `yaml:"module"`
		TokenLabel string `yaml:"token_label"`
		Slot       *uint  `yaml:"slot"`
		PINFile    string `yaml:"pin_file"`
		// PINEnv names the environment variable holding the PIN when no
		// file is used (default HSMCA_PIN).
		PINEnv   string `yaml:"pin_env"`
		PoolSize int    `yaml:"pool_size"`
		// CallTimeout bounds each PKCS#11 call (default 5s); past it the
		// request answers 503 at once.
		CallTimeout time.Duration `yaml:"call_timeout"`
		// KeygenTimeout bounds key generation (default 60s).
		KeygenTimeout time.Duration `yaml:"keygen_timeout"`
		// BreakerThreshold is how many calls in a row may pass their
		// deadline before no more work is sent to the token until a probe
		// answers (default 3).
		BreakerThreshold int `yaml:"breaker_threshold"`
		// SessionCopies: keys sign through session copies of their
		// private key objects: auto (SoftHSM2 only, the default), on or
		// off.
		SessionCopies string `yaml:"session_copies"`
	} `yaml:"pkcs11"`

	TLS struct {
		Cert     string `yaml:"cert"`
		Key      string `yaml:"key"`
		ClientCA string `yaml:"client_ca"`
		// TrustedProxy accepts the X-APP-CERTIFICATE header as an admin
		// credential. Only safe behind a proxy that strips it from clients.
		TrustedProxy bool `yaml:"trusted_proxy"`
	} `yaml:"tls"`

	HTTP struct {
		ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
		ReadTimeout       time.Duration `yaml:"read_timeout"`
		WriteTimeout      time.Duration `yaml:"write_timeout"`
		IdleTimeout       time.Duration `yaml:"idle_timeout"`
		ShutdownTimeout   time.Duration `yaml:"shutdown_timeout"`
		MaxBodyBytes      int64         `yaml:"max_body_bytes"`
		// MaxHeaderBytes bounds the request line and headers together
		// (plus Go's 4 KiB allowance): beyond it the server answers 431.
		MaxHeaderBytes int `yaml:"max_header_bytes"`
	} `yaml:"http"`

	// RateLimit bounds each credential's request rate (every API token and
	// administrator certificate on its own; shared by replicas on Redis).
	// requests_per_second 0 disables it. The public_ settings bound the
	// unauthenticated routes that do work (CRLs, the OpenAPI document) per
	// client address, in each replica's memory.
	RateLimit struct {
		RequestsPerSecond       *float64 `yaml:"requests_per_second"`
		Burst                   int      `yaml:"burst"`
		PublicRequestsPerSecond *float64 `yaml:"public_requests_per_second"`
		PublicBurst             int      `yaml:"public_burst"`
	} `yaml:"rate_limit"`

	// OAuth configures the client-credentials token endpoint.
	OAuth struct {
		// AccessTokenTTL is how long an access token lives (default 1h,
		// 1 minute to 24 hours).
		AccessTokenTTL time.Duration `yaml:"access_token_ttl"`
	} `yaml:"oauth"`

	// OCSP configures the OCSP responder (GET /ocsp/..., POST /ocsp).
	OCSP struct {
		// Signer is which key signs the answers of a CA whose OCSP is
		// switched on from now on: delegated (default; a responder key
		// and certificate of the CA's, rotated before they expire) or ca
		// (the CA's own key).
		Signer string `yaml:"signer"`
		// FreshRequestsPerSecond is how many answers signed for one
		// request alone (a nonce, an unknown serial number) each client
		// address may get per second, in bursts of FreshBurst (default 1
		// and 10); shared by replicas on Redis.
		FreshRequestsPerSecond float64 `yaml:"fresh_requests_per_second"`
		FreshBurst             int     `yaml:"fresh_burst"`
	} `yaml:"ocsp"`

	// ACME configures the ACME servers' validator and limits.
	ACME struct {
		// HTTP01Port is the port http-01 validation fetches from, and the
		// only port an http redirect may name (default 80).
		HTTP01Port int `yaml:"http01_port"`
		// HTTPSPort is the only port an https redirect of http-01 may
		// name (default 443).
		HTTPSPort int `yaml:"https_port"`
		// TLSALPN01Port is the port tls-alpn-01 validation connects to
		// (default 443).
		TLSALPN01Port int `yaml:"tls_alpn01_port"`
		// Resolver is the DNS server (host:port) the validator asks;
		// empty: the system's resolver.
		Resolver string `yaml:"resolver"`
		// ValidationTimeout bounds one validation (default 10s).
		ValidationTimeout time.Duration `yaml:"validation_timeout"`
		// OrdersPerHour and OrderBurst limit each account's new orders
		// (default 300 an hour, bursts of 50).
		OrdersPerHour float64 `yaml:"orders_per_hour"`
		OrderBurst    int64   `yaml:"order_burst"`
		// OpenOrdersPerAccount bounds the orders an account holds open
		// (pending, ready, processing; default 100).
		OpenOrdersPerAccount int `yaml:"open_orders_per_account"`
	} `yaml:"acme"`

	// Quotas are per-tenant limits by resource (signer.Quota* names);
	// a resource not listed keeps its default.
	Quotas map[string]int64 `yaml:"quotas"`

	// IssuerAltName is the IssuerAlternativeName of DTS root CA
	// certificates: a URI (https://...) or an email address.
	IssuerAltName string `yaml:"issuer_alt_name"`

	// PublicBaseURL is the daemon's URL as clients and relying parties
	// reach it (https://ca.example.com): an absolute http(s) URL (scheme,
	// host, optional port and path prefix; no query or fragment), kept
	// without a trailing slash. Set, the certificates the daemon signs
	// under a CA name that CA's CRL and certificate under it. Unless
	// IssuerAltName is set, it is the IssuerAlternativeName of DTS root CA
	// certificates. Empty: certificates name no such URL, and URLs the
	// daemon reports are derived from each request instead.
	PublicBaseURL string `yaml:"public_base_url"`

	// InventoryInterval is how often the quota-use and CA-expiry gauges
	// are recomputed from the store.
	InventoryInterval time.Duration `yaml:"inventory_interval"`

	// AdminSocket is the unix socket the ops CLI uses to write the store
	// while the daemon holds it. Empty disables it.
	AdminSocket string `yaml:"admin_socket"`

	// IdleOneProc runs Go's scheduler on one processor while the daemon
	// serves one request at a time and little else (nil: on with the
	// Redis store, off with bolt; see the README's Benchmarks). Ignored
	// when GOMAXPROCS is set in the environment.
	IdleOneProc *bool `yaml:"idle_one_proc"`

	// OverlapCredentialCheck lets signing, verification and issuance from
	// a CSR run beside the check of an API token found valid at its last
	// check through this daemon, instead of after it (nil: on with the
	// Redis store, where the check is a round trip; off with bolt). The
	// answer and every write still wait for the check.
	OverlapCredentialCheck *bool `yaml:"overlap_credential_check"`

	// Events configures the event log's checkpoints and its export.
	Events Events `yaml:"events"`
}

// Events configures the event log beyond the store (events:).
type Events struct {
	// CheckpointInterval is how often every chain that moved is
	// checkpointed (signed in the HSM); default 5m, at least 10s.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// ExportPollInterval is how often a sink that has every record looks
	// for new ones (default 500ms).
	ExportPollInterval time.Duration `yaml:"export_poll_interval"`
	// Export lists the sinks the records are streamed to.
	Export []ExportSink `yaml:"export"`
}

// ExportSink is one receiver of the event records.
type ExportSink struct {
	// Name identifies the sink: its cursor in the store (shared by the
	// replicas of one store) and the sink label of its metrics.
	Name string `yaml:"name"`
	Type string `yaml:"type"` // syslog | file
	// Address is the syslog receiver's host:port (TCP).
	Address string `yaml:"address"`
	TLS     struct {
		Enabled    bool   `yaml:"enabled"`
		CAFile     string `yaml:"ca_file"`
		CertFile   string `yaml:"cert_file"`
		KeyFile    string `yaml:"key_file"`
		ServerName string `yaml:"server_name"`
	} `yaml:"tls"`
	// Hostname is the HOSTNAME of the syslog messages (default the
	// machine's host name).
	Hostname string `yaml:"hostname"`
	// Settle is how long a syslog message must have been sent on a
	// connection still open before it counts as delivered (default 2s).
	Settle time.Duration `yaml:"settle"`
	// Path is the file sink's JSON-lines file.
	Path string `yaml:"path"`
}

// exportSink returns the sink named name, adding one of typ if none.
func (c *Config) exportSink(name, typ string) *ExportSink {
	for i := range c.Events.Export {
		if c.Events.Export[i].Name == name {
			return &c.Events.Export[i]
		}
	}
	c.Events.Export = append(c.Events.Export, ExportSink{Name: name, Type: typ})
	return &c.Events.Export[len(c.Events.Export)-1]
}

// Redis is how the daemon reaches Redis (store.redis). Passwords are not
// values here: they are read from the files named (or from
// HSMCA_REDIS_PASSWORD and HSMCA_REDIS_SENTINEL_PASSWORD) when the store
// is opened.
type Redis struct {
	// Mode is standalone (default), sentinel or cluster.
	Mode string `yaml:"mode"`
	// URL is the standalone server, redis://[user@]host:port/db or
	// rediss://... (TLS); store.redis_url is the same setting.
	URL string `yaml:"url"`
	// Addrs are the sentinels (sentinel) or some of the cluster's nodes
	// (cluster), host:port each.
	Addrs []string `yaml:"addrs"`
	// MasterName is the name the sentinels know the master by.
	MasterName string `yaml:"master_name"`
	// DB is the database number in sentinel mode.
	DB int `yaml:"db"`
	// Username and PasswordFile log in to the Redis servers (an ACL
	// user; no username: the default user, as with requirepass).
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// SentinelUsername and SentinelPasswordFile log in to the sentinels.
	SentinelUsername     string `yaml:"sentinel_username"`
	SentinelPasswordFile string `yaml:"sentinel_password_file"`
	// WaitReplicas is how many replicas must have a write before it is
	// acknowledged (Redis WAIT); unset: in sentinel and cluster modes
	// every online replica of the write's master, at least one, when
	// there are replicas (see redisstore's pickWait); 0: off.
	WaitReplicas *int `yaml:"wait_replicas"`
	// WaitTimeout bounds that wait (default 500ms); a write too few
	// replicas confirm in time answers 503.
	WaitTimeout time.Duration `yaml:"wait_timeout"`
	TLS         struct {
		// Enabled speaks TLS to every server (sentinel and cluster; a
		// standalone server is reached with TLS by a rediss:// URL).
		Enabled bool `yaml:"enabled"`
		// CAFile is the PEM bundle the servers' certificates are checked
		// against (default: the system's roots).
		CAFile string `yaml:"ca_file"`
		// CertFile and KeyFile are a client certificate and its key, for
		// servers that ask for one (tls-auth-clients).
		CertFile string `yaml:"cert_file"`
		KeyFile  string `yaml:"key_file"`
		// ServerName is the name the servers' certificates must carry
		// (default: the host each is dialled at).
		ServerName string `yaml:"server_name"`
	} `yaml:"tls"`
}

// RedisMode is the Redis mode in effect (standalone when unset).
func (c *Config) RedisMode() string {
	if c.Store.Redis.Mode == "" {
		return "standalone"
	}
	return c.Store.Redis.Mode
}

// RedisURL is the standalone URL in effect: store.redis.url or
// store.redis_url.
func (c *Config) RedisURL() string {
	if c.Store.Redis.URL != "" {
		return c.Store.Redis.URL
	}
	return c.Store.RedisURL
}

// RedisTLS says whether the daemon speaks TLS to Redis: a rediss:// URL
// or store.redis.tls.enabled.
func (c *Config) RedisTLS() bool {
	return c.Store.Redis.TLS.Enabled || strings.HasPrefix(strings.ToLower(c.RedisURL()), "rediss://")
}

// Env lists every environment override, for the README and `--help`.
var Env = []struct{ Name, Field, Help string }{
	{"HSMCA_LISTEN_ADDR", "listen_addr", "address of the HTTP(S) listener (default 127.0.0.1:8080)"},
	{"HSMCA_DATA_DIR", "data_dir", "directory for the bolt file, the admin socket and the dev token (default ./.data)"},
	{"HSMCA_LOG_LEVEL", "log_level", "debug, info, warn or error (default info)"},
	{"HSMCA_STORE", "store.backend", "bolt (default) or redis"},
	{"HSMCA_BOLT_PATH", "store.bolt_path", "bolt file (default $HSMCA_DATA_DIR/hsmca.db)"},
	{"HSMCA_REDIS_MODE", "store.redis.mode", "standalone (default), sentinel or cluster"},
	{"HSMCA_REDIS_URL", "store.redis_url", "standalone: redis://[user@]host:port/db or rediss://... (TLS)"},
	{"HSMCA_REDIS_ADDRS", "store.redis.addrs", "sentinel: the sentinels; cluster: some of its nodes (host:port, comma-separated)"},
	{"HSMCA_REDIS_MASTER_NAME", "store.redis.master_name", "sentinel: the name the sentinels monitor the master under"},
	{"HSMCA_REDIS_DB", "store.redis.db", "sentinel: the database number (default 0)"},
	{"HSMCA_REDIS_USERNAME", "store.redis.username", "ACL user on the Redis servers (default: the default user)"},
	{"HSMCA_REDIS_PASSWORD_FILE", "store.redis.password_file", "file holding the Redis password (first line)"},
	{"HSMCA_REDIS_PASSWORD", "", "the Redis password, when no password file is set"},
	{"HSMCA_REDIS_SENTINEL_USERNAME", "store.redis.sentinel_username", "ACL user on the sentinels"},
	{"HSMCA_REDIS_SENTINEL_PASSWORD_FILE", "store.redis.sentinel_password_file", "file holding the sentinels' password (first line)"},
	{"HSMCA_REDIS_SENTINEL_PASSWORD", "", "the sentinels' password, when no file is set"},
	{"HSMCA_REDIS_WAIT_REPLICAS", "store.redis.wait_replicas", "replicas that must have a write before it is acknowledged (default in sentinel and cluster modes: every online replica of the master, at least one; 0: off)"},
	{"HSMCA_REDIS_WAIT_TIMEOUT", "store.redis.wait_timeout", "how long a write waits for them before it answers 503 (default 500ms)"},
	{"HSMCA_REDIS_TLS", "store.redis.tls.enabled", "true: TLS to the sentinels and the cluster (standalone: use rediss://)"},
	{"HSMCA_REDIS_TLS_CA", "store.redis.tls.ca_file", "CA bundle the Redis servers' certificates are checked against (default: the system's)"},
	{"HSMCA_REDIS_TLS_CERT", "store.redis.tls.cert_file", "client certificate for Redis servers that ask for one"},
	{"HSMCA_REDIS_TLS_KEY", "store.redis.tls.key_file", "its private key"},
	{"HSMCA_REDIS_TLS_SERVER_NAME", "store.redis.tls.server_name", "name the Redis servers' certificates must carry (default: the host dialled)"},
	{"HSMCA_PKCS11_MODULE", "pkcs11.module", "PKCS#11 library (default: SoftHSM2's, found in the usual places)"},
	{"HSMCA_TOKEN_LABEL", "pkcs11.token_label", "label of the token holding the keys (default hsmca)"},
	{"HSMCA_SLOT", "pkcs11.slot", "slot id, when the token is chosen by slot instead of label"},
	{"HSMCA_PIN_FILE", "pkcs11.pin_file", "file holding the user PIN (first line)"},
	{"HSMCA_PIN_ENV", "pkcs11.pin_env", "name of the variable holding the PIN when no file is set (default HSMCA_PIN)"},
	{"HSMCA_POOL_SIZE", "pkcs11.pool_size", "PKCS#11 sessions kept open (default 16; fewer if the token allows fewer)"},
	{"HSMCA_PKCS11_CALL_TIMEOUT", "pkcs11.call_timeout", "deadline of each PKCS#11 call; past it the request answers 503 (default 5s)"},
	{"HSMCA_PKCS11_KEYGEN_TIMEOUT", "pkcs11.keygen_timeout", "deadline of a key generation (default 60s)"},
	{"HSMCA_PKCS11_BREAKER_THRESHOLD", "pkcs11.breaker_threshold", "calls in a row past their deadline before the circuit opens (default 3)"},
	{"HSMCA_PKCS11_SESSION_COPIES", "pkcs11.session_copies", "sign through session copies of the keys made inside the token: auto (SoftHSM2 only), on, off (default auto)"},
	{"HSMCA_TLS_CERT", "tls.cert", "server certificate PEM; with HSMCA_TLS_KEY, serve HTTPS (TLS 1.2+)"},
	{"HSMCA_TLS_KEY", "tls.key", "server private key PEM"},
	{"HSMCA_CLIENT_CA", "tls.client_ca", "CA bundle for admin client certificates (TLS client auth, optional)"},
	{"HSMCA_TRUSTED_PROXY", "tls.trusted_proxy", "true to accept X-APP-CERTIFICATE from a fronting proxy"},
	{"HSMCA_ISSUER_ALT_NAME", "issuer_alt_name", "IssuerAlternativeName (URI or email) of DTS root CA certificates (default public_base_url)"},
	{"HSMCA_PUBLIC_BASE_URL", "public_base_url", "the daemon's public URL, an absolute http(s) URL such as https://ca.example.com ; unset, certificates name no CRL or issuer URL and CCM crl_dis_point is derived from each request"},
	{"HSMCA_IDLE_ONE_PROC", "idle_one_proc", "true: one Go processor while one request at a time is served, all of them from the second concurrent request or when work waits for the one; false: always all (default: true with the redis store, false with bolt; off when GOMAXPROCS is set)"},
	{"HSMCA_OVERLAP_CREDENTIAL_CHECK", "overlap_credential_check", "true: signing, verification and issuance from a CSR with an API token found valid at its last check run beside the token's check, their answers and writes waiting for it; false: after it (default: true with the redis store, false with bolt)"},
	{"HSMCA_INVENTORY_INTERVAL", "inventory_interval", "how often quota-use and CA-expiry gauges are recomputed (default 30s)"},
	{"HSMCA_RATE_LIMIT_RPS", "rate_limit.requests_per_second", "requests per second per API token or admin certificate (default 100; 0 disables)"},
	{"HSMCA_RATE_LIMIT_BURST", "rate_limit.burst", "requests a credential may make at once (default twice the rate)"},
	{"HSMCA_RATE_LIMIT_PUBLIC_RPS", "rate_limit.public_requests_per_second", "requests per second per client address to public routes such as CRLs (default 20; 0 disables)"},
	{"HSMCA_RATE_LIMIT_PUBLIC_BURST", "rate_limit.public_burst", "requests a client address may make at once to public routes (default twice the rate)"},
	{"HSMCA_MAX_HEADER_BYTES", "http.max_header_bytes", "bytes of request line and headers a request may send (default 16384; 431 beyond)"},
	{"HSMCA_OAUTH_ACCESS_TOKEN_TTL", "oauth.access_token_ttl", "lifetime of access tokens from POST /oauth/token (default 1h; 1m to 24h)"},
	{"HSMCA_ADMIN_SOCKET", "admin_socket", "unix socket for the ops CLI (default $HSMCA_DATA_DIR/admin.sock; \"off\" disables)"},
	{"HSMCA_OCSP_SIGNER", "ocsp.signer", "key signing OCSP answers of CAs switched on from now on: delegated (default) or ca"},
	{"HSMCA_OCSP_FRESH_RPS", "ocsp.fresh_requests_per_second", "OCSP answers signed for one request alone (nonce, unknown serial) per client address per second (default 1)"},
	{"HSMCA_OCSP_FRESH_BURST", "ocsp.fresh_burst", "such answers a client address may get at once (default 10)"},
	{"HSMCA_EVENTS_CHECKPOINT_INTERVAL", "events.checkpoint_interval", "how often every event chain that moved is checkpointed, signed in the HSM (default 5m, at least 10s)"},
	{"HSMCA_EVENTS_EXPORT_POLL_INTERVAL", "events.export_poll_interval", "how often an export sink that has every record looks for new ones (default 500ms)"},
	{"HSMCA_EVENTS_EXPORT_FILE", "events.export[name=file].path", "append the event records to this JSON-lines file (the sink named file)"},
	{"HSMCA_EVENTS_EXPORT_SYSLOG", "events.export[name=syslog].address", "send the event records to this syslog receiver, host:port over TCP (the sink named syslog)"},
	{"HSMCA_EVENTS_EXPORT_SYSLOG_TLS", "events.export[name=syslog].tls.enabled", "true: TLS to the syslog receiver"},
	{"HSMCA_EVENTS_EXPORT_SYSLOG_TLS_CA", "events.export[name=syslog].tls.ca_file", "CA bundle the receiver's certificate is checked against (default: the system's)"},
	{"HSMCA_EVENTS_EXPORT_SYSLOG_TLS_CERT", "events.export[name=syslog].tls.cert_file", "client certificate for a receiver that asks for one"},
	{"HSMCA_EVENTS_EXPORT_SYSLOG_TLS_KEY", "events.export[name=syslog].tls.key_file", "its private key"},
	{"HSMCA_ACME_HTTP01_PORT", "acme.http01_port", "port ACME http-01 validation connects to (default 80)"},
	{"HSMCA_ACME_HTTPS_PORT", "acme.https_port", "the only port an https redirect of http-01 may name (default 443)"},
	{"HSMCA_ACME_TLS_ALPN01_PORT", "acme.tls_alpn01_port", "port ACME tls-alpn-01 validation connects to (default 443)"},
	{"HSMCA_ACME_RESOLVER", "acme.resolver", "DNS server (host:port) the ACME validator asks (default: the system's)"},
	{"HSMCA_ACME_VALIDATION_TIMEOUT", "acme.validation_timeout", "bound of one ACME validation (default 10s)"},
}

// DefaultRateLimit is the requests per second each credential may make:
// far above what a person or a well-behaved integration sends, well below
// what lets one tenant's runaway client take the HSM from the others.
const DefaultRateLimit float64 = 100

// DefaultPublicRateLimit is the requests per second each client address
// may make to the public routes: a relying party fetches a CRL once per
// validation at most (and caches it), so 20 leaves room for a busy
// gateway while bounding what one address can make the daemon do.
const DefaultPublicRateLimit float64 = 20

// DefaultMaxHeaderBytes bounds a request's line and headers: room for an
// administrator's URL-encoded certificate chain many times over, far
// below what a client could use to make each request costly.
const DefaultMaxHeaderBytes = 16 << 10

// Load reads path (may be empty), applies the environment and defaults, and
// validates the result.
func Load(path string) (*Config, error) {
	c := &Config{}
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := c.applyEnv(os.LookupEnv); err != nil {
		return nil, err
	}
	c.defaults()
	return c, c.validate()
}

func (c *Config) applyEnv(get func(string) (string, bool)) error {
	str := func(name string, dst *string) {
		if v, ok := get(name); ok {
			*dst = v
		}
	}
	str("HSMCA_LISTEN_ADDR", &c.ListenAddr)
	str("HSMCA_DATA_DIR", &c.DataDir)
	str("HSMCA_LOG_LEVEL", &c.LogLevel)
	str("HSMCA_STORE", &c.Store.Backend)
	str("HSMCA_BOLT_PATH", &c.Store.BoltPath)
	str("HSMCA_REDIS_URL", &c.Store.RedisURL)
	r := &c.Store.Redis
	str("HSMCA_REDIS_MODE", &r.Mode)
	str("HSMCA_REDIS_MASTER_NAME", &r.MasterName)
	str("HSMCA_REDIS_USERNAME", &r.Username)
	str("HSMCA_REDIS_PASSWORD_FILE", &r.PasswordFile)
	str("HSMCA_REDIS_SENTINEL_USERNAME", &r.SentinelUsername)
	str("HSMCA_REDIS_SENTINEL_PASSWORD_FILE", &r.SentinelPasswordFile)
	str("HSMCA_REDIS_TLS_CA", &r.TLS.CAFile)
	str("HSMCA_REDIS_TLS_CERT", &r.TLS.CertFile)
	str("HSMCA_REDIS_TLS_KEY", &r.TLS.KeyFile)
	str("HSMCA_REDIS_TLS_SERVER_NAME", &r.TLS.ServerName)
	if v, ok := get("HSMCA_REDIS_URL"); ok && v != "" {
		// The variable wins over either spelling in the file.
		r.URL = ""
	}
	if v, ok := get("HSMCA_REDIS_ADDRS"); ok {
		r.Addrs = nil
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				r.Addrs = append(r.Addrs, a)
			}
		}
	}
	if v, ok := get("HSMCA_REDIS_DB"); ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("config: HSMCA_REDIS_DB: want a database number, got %q", v)
		}
		r.DB = n
	}
	if v, ok := get("HSMCA_REDIS_WAIT_REPLICAS"); ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("config: HSMCA_REDIS_WAIT_REPLICAS: want a number of replicas (0: off), got %q", v)
		}
		r.WaitReplicas = &n
	}
	if err := envDuration(get, "HSMCA_REDIS_WAIT_TIMEOUT", "500ms", &r.WaitTimeout); err != nil {
		return err
	}
	if v, ok := get("HSMCA_REDIS_TLS"); ok && v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("config: HSMCA_REDIS_TLS: want true or false, got %q", v)
		}
		r.TLS.Enabled = b
	}
	str("HSMCA_PKCS11_MODULE", &c.PKCS11.Module)
	str("HSMCA_TOKEN_LABEL", &c.PKCS11.TokenLabel)
	str("HSMCA_PIN_FILE", &c.PKCS11.PINFile)
	str("HSMCA_PIN_ENV", &c.PKCS11.PINEnv)
	str("HSMCA_TLS_CERT", &c.TLS.Cert)
	str("HSMCA_TLS_KEY", &c.TLS.Key)
	str("HSMCA_CLIENT_CA", &c.TLS.ClientCA)
	str("HSMCA_ADMIN_SOCKET", &c.AdminSocket)
	str("HSMCA_ISSUER_ALT_NAME", &c.IssuerAltName)
	str("HSMCA_PUBLIC_BASE_URL", &c.PublicBaseURL)
	str("HSMCA_OCSP_SIGNER", &c.OCSP.Signer)
	str("HSMCA_ACME_RESOLVER", &c.ACME.Resolver)
	for _, p := range []struct {
		name string
		dst  *int
	}{{"HSMCA_ACME_HTTP01_PORT", &c.ACME.HTTP01Port}, {"HSMCA_ACME_HTTPS_PORT", &c.ACME.HTTPSPort},
		{"HSMCA_ACME_TLS_ALPN01_PORT", &c.ACME.TLSALPN01Port}} {
		if v, ok := get(p.name); ok && v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("config: %s: want a port from 1 to 65535, got %q", p.name, v)
			}
			*p.dst = n
		}
	}
	if v, ok := get("HSMCA_ACME_VALIDATION_TIMEOUT"); ok && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("config: HSMCA_ACME_VALIDATION_TIMEOUT: want a duration > 0, got %q", v)
		}
		c.ACME.ValidationTimeout = d
	}
	if v, ok := get("HSMCA_OCSP_FRESH_RPS"); ok && v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0) || math.IsInf(f, 0) {
			return fmt.Errorf("config: HSMCA_OCSP_FRESH_RPS: want a number > 0, got %q", v)
		}
		c.OCSP.FreshRequestsPerSecond = f
	}
	if v, ok := get("HSMCA_OCSP_FRESH_BURST"); ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("config: HSMCA_OCSP_FRESH_BURST: want a number >= 1, got %q", v)
		}
		c.OCSP.FreshBurst = n
	}
	if v, ok := get("HSMCA_SLOT"); ok && v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return fmt.Errorf("config: HSMCA_SLOT: not a slot number: %q", v)
		}
		s := uint(n)
		c.PKCS11.Slot = &s
	}
	if err := envDuration(get, "HSMCA_INVENTORY_INTERVAL", "30s", &c.InventoryInterval); err != nil {
		return err
	}
	if v, ok := get("HSMCA_OAUTH_ACCESS_TOKEN_TTL"); ok && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("config: HSMCA_OAUTH_ACCESS_TOKEN_TTL: want a duration such as 1h, got %q", v)
		}
		c.OAuth.AccessTokenTTL = d
	}
	if err := envDuration(get, "HSMCA_PKCS11_CALL_TIMEOUT", "5s", &c.PKCS11.CallTimeout); err != nil {
		return err
	}
	if err := envDuration(get, "HSMCA_PKCS11_KEYGEN_TIMEOUT", "5s", &c.PKCS11.KeygenTimeout); err != nil {
		return err
	}
	if v, ok := get("HSMCA_PKCS11_BREAKER_THRESHOLD"); ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("config: HSMCA_PKCS11_BREAKER_THRESHOLD: want a positive number, got %q", v)
		}
		c.PKCS11.BreakerThreshold = n
	}
	if v, ok := get("HSMCA_PKCS11_SESSION_COPIES"); ok && v != "" {
		c.PKCS11.SessionCopies = v
	}
	if v, ok := get("HSMCA_POOL_SIZE"); ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("config: HSMCA_POOL_SIZE: want a positive number, got %q", v)
		}
		c.PKCS11.PoolSize = n
	}
	if v, ok := get("HSMCA_RATE_LIMIT_RPS"); ok && v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			return fmt.Errorf("config: HSMCA_RATE_LIMIT_RPS: want a number >= 0 (0 disables), got %q", v)
		}
		c.RateLimit.RequestsPerSecond = &f
	}
	if v, ok := get("HSMCA_RATE_LIMIT_BURST"); ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("config: HSMCA_RATE_LIMIT_BURST: want a number >= 0, got %q", v)
		}
		c.RateLimit.Burst = n
	}
	if v, ok := get("HSMCA_RATE_LIMIT_PUBLIC_RPS"); ok && v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			return fmt.Errorf("config: HSMCA_RATE_LIMIT_PUBLIC_RPS: want a number >= 0 (0 disables), got %q", v)
		}
		c.RateLimit.PublicRequestsPerSecond = &f
	}
	if v, ok := get("HSMCA_RATE_LIMIT_PUBLIC_BURST"); ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return fmt.Errorf("config: HSMCA_RATE_LIMIT_PUBLIC_BURST: want a number >= 0, got %q", v)
		}
		c.RateLimit.PublicBurst = n
	}
	if v, ok := get("HSMCA_MAX_HEADER_BYTES"); ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("config: HSMCA_MAX_HEADER_BYTES: want a positive number of bytes, got %q", v)
		}
		c.HTTP.MaxHeaderBytes = n
	}
	if v, ok := get("HSMCA_TRUSTED_PROXY"); ok && v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("config: HSMCA_TRUSTED_PROXY: want true or false, got %q", v)
		}
		c.TLS.TrustedProxy = b
	}
	if v, ok := get("HSMCA_IDLE_ONE_PROC"); ok && v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("config: HSMCA_IDLE_ONE_PROC: want true or false, got %q", v)
		}
		c.IdleOneProc = &b
	}
	if v, ok := get("HSMCA_OVERLAP_CREDENTIAL_CHECK"); ok && v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("config: HSMCA_OVERLAP_CREDENTIAL_CHECK: want true or false, got %q", v)
		}
		c.OverlapCredentialCheck = &b
	}
	return c.applyEventsEnv(get)
}

func (c *Config) applyEventsEnv(get func(string) (string, bool)) error {
	if err := envDuration(get, "HSMCA_EVENTS_CHECKPOINT_INTERVAL", "5m", &c.Events.CheckpointInterval); err != nil {
		return err
	}
	if err := envDuration(get, "HSMCA_EVENTS_EXPORT_POLL_INTERVAL", "5m", &c.Events.ExportPollInterval); err != nil {
		return err
	}
	if v, ok := get("HSMCA_EVENTS_EXPORT_FILE"); ok && v != "" {
		c.exportSink("file", "file").Path = v
	}
	if v, ok := get("HSMCA_EVENTS_EXPORT_SYSLOG"); ok && v != "" {
		c.exportSink("syslog", "syslog").Address = v
	}
	for _, name := range []string{"HSMCA_EVENTS_EXPORT_SYSLOG_TLS", "HSMCA_EVENTS_EXPORT_SYSLOG_TLS_CA",
		"HSMCA_EVENTS_EXPORT_SYSLOG_TLS_CERT", "HSMCA_EVENTS_EXPORT_SYSLOG_TLS_KEY"} {
		v, ok := get(name)
		if !ok || v == "" {
			continue
		}
		sk := c.exportSink("syslog", "syslog")
		switch name {
		case "HSMCA_EVENTS_EXPORT_SYSLOG_TLS":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("config: %s: want true or false, got %q", name, v)
			}
			sk.TLS.Enabled = b
		case "HSMCA_EVENTS_EXPORT_SYSLOG_TLS_CA":
			sk.TLS.CAFile = v
		case "HSMCA_EVENTS_EXPORT_SYSLOG_TLS_CERT":
			sk.TLS.CertFile = v
		case "HSMCA_EVENTS_EXPORT_SYSLOG_TLS_KEY":
			sk.TLS.KeyFile = v
		}
	}
	return nil
}

// exportSinkName is what a sink name may be: it becomes a store id and a
// metric label value.
var exportSinkName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// maxExportSinks bounds the sinks (and so the export metrics' series).
const maxExportSinks = 8

func (c *Config) validateEvents() []string {
	var errs []string
	e := &c.Events
	if e.CheckpointInterval < 10*time.Second {
		errs = append(errs, fmt.Sprintf("events.checkpoint_interval %s: want at least 10s", e.CheckpointInterval))
	}
	if len(e.Export) > maxExportSinks {
		errs = append(errs, fmt.Sprintf("events.export: %d sinks, at most %d", len(e.Export), maxExportSinks))
	}
	seen := map[string]bool{}
	for i, sk := range e.Export {
		at := fmt.Sprintf("events.export[%d]", i)
		if !exportSinkName.MatchString(sk.Name) {
			errs = append(errs, fmt.Sprintf("%s.name %q: want 1 to 32 of a-z, 0-9, _ and -", at, sk.Name))
		} else if seen[sk.Name] {
			errs = append(errs, fmt.Sprintf("%s.name %q: used twice", at, sk.Name))
		}
		seen[sk.Name] = true
		switch sk.Type {
		case "syslog":
			if _, _, err := net.SplitHostPort(sk.Address); err != nil {
				errs = append(errs, fmt.Sprintf("%s.address %q: want host:port", at, sk.Address))
			}
			if (sk.TLS.CertFile == "") != (sk.TLS.KeyFile == "") {
				errs = append(errs, at+".tls.cert_file and key_file go together")
			}
			if !sk.TLS.Enabled && (sk.TLS.CAFile != "" || sk.TLS.CertFile != "" || sk.TLS.ServerName != "") {
				errs = append(errs, at+".tls: files given but tls.enabled is false")
			}
			if sk.Path != "" {
				errs = append(errs, at+": a syslog sink takes no path")
			}
		case "file":
			if sk.Path == "" {
				errs = append(errs, at+".path: the file sink needs a file")
			}
			if sk.Address != "" || sk.TLS.Enabled {
				errs = append(errs, at+": a file sink takes no address or tls")
			}
		default:
			errs = append(errs, fmt.Sprintf("%s.type %q: want syslog or file", at, sk.Type))
		}
		if sk.Settle < 0 {
			errs = append(errs, at+".settle is negative")
		}
	}
	return errs
}

// DefaultModule finds SoftHSM2's PKCS#11 library in the usual places.
func DefaultModule() string {
	for _, p := range []string{
		"/usr/lib/softhsm/libsofthsm2.so",
		"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
		"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
		"/usr/local/lib/softhsm/libsofthsm2.so",
	} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

func (c *Config) defaults() {
	if c.ListenAddr == "" {
		c.ListenAddr = "127.0.0.1:8080"
	}
	if c.DataDir == "" {
		c.DataDir = ".data"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.Store.Backend == "" {
		c.Store.Backend = "bolt"
	}
	if c.Store.BoltPath == "" {
		c.Store.BoltPath = filepath.Join(c.DataDir, "hsmca.db")
	}
	if c.PKCS11.Module == "" {
		c.PKCS11.Module = DefaultModule()
	}
	if c.PKCS11.TokenLabel == "" && c.PKCS11.Slot == nil {
		c.PKCS11.TokenLabel = "hsmca"
	}
	if c.PKCS11.PINEnv == "" {
		c.PKCS11.PINEnv = "HSMCA_PIN"
	}
	if c.PKCS11.PoolSize == 0 {
		c.PKCS11.PoolSize = 16
	}
	if c.PKCS11.CallTimeout <= 0 {
		c.PKCS11.CallTimeout = 5 * time.Second
	}
	if c.PKCS11.KeygenTimeout <= 0 {
		c.PKCS11.KeygenTimeout = 60 * time.Second
	}
	if c.PKCS11.BreakerThreshold <= 0 {
		c.PKCS11.BreakerThreshold = 3
	}
	if c.PKCS11.SessionCopies == "" {
		c.PKCS11.SessionCopies = "auto"
	}
	if c.AdminSocket == "" {
		c.AdminSocket = filepath.Join(c.DataDir, "admin.sock")
	} else if c.AdminSocket == "off" {
		c.AdminSocket = ""
	}
	h := &c.HTTP
	setDur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	setDur(&h.ReadHeaderTimeout, 5*time.Second)
	setDur(&h.ReadTimeout, 30*time.Second)
	setDur(&h.WriteTimeout, 30*time.Second)
	setDur(&h.IdleTimeout, 120*time.Second)
	setDur(&h.ShutdownTimeout, 20*time.Second)
	if c.RateLimit.RequestsPerSecond == nil {
		rps := DefaultRateLimit
		c.RateLimit.RequestsPerSecond = &rps
	}
	if c.RateLimit.PublicRequestsPerSecond == nil {
		rps := DefaultPublicRateLimit
		c.RateLimit.PublicRequestsPerSecond = &rps
	}
	if h.MaxHeaderBytes == 0 {
		h.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.InventoryInterval <= 0 {
		c.InventoryInterval = 30 * time.Second
	}
	setDur(&c.OAuth.AccessTokenTTL, time.Hour)
	setDur(&c.Events.CheckpointInterval, 5*time.Minute)
	setDur(&c.Events.ExportPollInterval, 500*time.Millisecond)
	if h.MaxBodyBytes == 0 {
		h.MaxBodyBytes = 1 << 20
	}
}

func (c *Config) validate() error {
	var errs []string
	if t := c.OAuth.AccessTokenTTL; t < time.Minute || t > 24*time.Hour {
		errs = append(errs, fmt.Sprintf("oauth.access_token_ttl %s: must be between 1m and 24h", t))
	}
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		errs = append(errs, fmt.Sprintf("listen_addr %q: %v", c.ListenAddr, err))
	}
	switch c.Store.Backend {
	case "bolt":
	case "redis":
		errs = append(errs, c.validateRedis()...)
	default:
		errs = append(errs, fmt.Sprintf("store.backend %q: want bolt or redis", c.Store.Backend))
	}
	switch c.PKCS11.SessionCopies {
	case "auto", "on", "off":
	default:
		errs = append(errs, fmt.Sprintf("pkcs11.session_copies %q: want auto, on or off", c.PKCS11.SessionCopies))
	}
	if c.PKCS11.Module == "" {
		errs = append(errs, "no PKCS#11 module: set pkcs11.module (HSMCA_PKCS11_MODULE) or install softhsm2")
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		errs = append(errs, "tls.cert and tls.key (HSMCA_TLS_CERT, HSMCA_TLS_KEY) go together")
	}
	if c.TLS.ClientCA != "" && c.TLS.Cert == "" {
		errs = append(errs, "tls.client_ca needs tls.cert and tls.key: client certificates need TLS")
	}
	if r := *c.RateLimit.RequestsPerSecond; r < 0 || r > 1e6 || math.IsNaN(r) {
		errs = append(errs, fmt.Sprintf("rate_limit.requests_per_second %v: want 0 (off) to 1000000", r))
	}
	if c.RateLimit.Burst < 0 || c.RateLimit.Burst > 1e6 {
		errs = append(errs, fmt.Sprintf("rate_limit.burst %d: want 0 (twice the rate) to 1000000", c.RateLimit.Burst))
	}
	if r := *c.RateLimit.PublicRequestsPerSecond; r < 0 || r > 1e6 || math.IsNaN(r) {
		errs = append(errs, fmt.Sprintf("rate_limit.public_requests_per_second %v: want 0 (off) to 1000000", r))
	}
	if c.RateLimit.PublicBurst < 0 || c.RateLimit.PublicBurst > 1e6 {
		errs = append(errs, fmt.Sprintf("rate_limit.public_burst %d: want 0 (twice the rate) to 1000000", c.RateLimit.PublicBurst))
	}
	if n := c.HTTP.MaxHeaderBytes; n < 4<<10 || n > 1<<20 {
		errs = append(errs, fmt.Sprintf("http.max_header_bytes %d: want 4096 to 1048576", n))
	}
	for res, n := range c.Quotas {
		if n < 0 {
			errs = append(errs, fmt.Sprintf("quotas.%s: %d is negative", res, n))
		}
	}
	switch c.OCSP.Signer {
	case "", "delegated", "ca":
	default:
		errs = append(errs, fmt.Sprintf("ocsp.signer %q: want delegated or ca", c.OCSP.Signer))
	}
	if r := c.OCSP.FreshRequestsPerSecond; r < 0 || r > 1e6 || math.IsNaN(r) {
		errs = append(errs, fmt.Sprintf("ocsp.fresh_requests_per_second %v: want 0 (the default) to 1000000", r))
	}
	if c.OCSP.FreshBurst < 0 || c.OCSP.FreshBurst > 1e6 {
		errs = append(errs, fmt.Sprintf("ocsp.fresh_burst %d: want 0 (the default) to 1000000", c.OCSP.FreshBurst))
	}
	for _, p := range []struct {
		name string
		n    int
	}{{"acme.http01_port", c.ACME.HTTP01Port}, {"acme.https_port", c.ACME.HTTPSPort}, {"acme.tls_alpn01_port", c.ACME.TLSALPN01Port}} {
		if p.n < 0 || p.n > 65535 {
			errs = append(errs, fmt.Sprintf("%s %d: want 0 (the default) to 65535", p.name, p.n))
		}
	}
	if r := c.ACME.Resolver; r != "" {
		if _, _, err := net.SplitHostPort(r); err != nil {
			errs = append(errs, fmt.Sprintf("acme.resolver %q: want host:port", r))
		}
	}
	if n := c.ACME.OpenOrdersPerAccount; n < 0 || n > 100000 {
		errs = append(errs, fmt.Sprintf("acme.open_orders_per_account %d: want 0 (the default, 100) to 100000", n))
	}
	if t := c.ACME.ValidationTimeout; t < 0 || t > 5*time.Minute {
		errs = append(errs, fmt.Sprintf("acme.validation_timeout %s: want 0 (the default, 10s) to 5m", t))
	}
	if c.PublicBaseURL != "" {
		if u, err := CheckPublicBaseURL(c.PublicBaseURL); err != nil {
			errs = append(errs, err.Error())
		} else {
			c.PublicBaseURL = u
		}
	}
	errs = append(errs, c.validateEvents()...)
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Sprintf("log_level %q: want debug, info, warn or error", c.LogLevel))
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %s", strings.Join(errs, "; "))
	}
	return nil
}

// validateRedis checks store.redis for the mode it names. It reads no
// file and shows no URL (a URL may hold a password).
func (c *Config) validateRedis() []string {
	var errs []string
	r := &c.Store.Redis
	if r.URL != "" && c.Store.RedisURL != "" && r.URL != c.Store.RedisURL {
		errs = append(errs, "store.redis_url and store.redis.url differ: set one")
	}
	raw := c.RedisURL()
	switch c.RedisMode() {
	case "standalone":
		switch {
		case raw == "":
			errs = append(errs, "store.backend is redis but no redis_url (HSMCA_REDIS_URL) is set; "+
				"for sentinel or cluster set store.redis.mode (HSMCA_REDIS_MODE)")
		case !strings.HasPrefix(strings.ToLower(raw), "redis://") && !strings.HasPrefix(strings.ToLower(raw), "rediss://"):
			errs = append(errs, "store.redis_url: want a redis:// or rediss:// URL")
		case r.TLS.Enabled && !strings.HasPrefix(strings.ToLower(raw), "rediss://"):
			errs = append(errs, "store.redis.tls.enabled with a redis:// URL: use rediss:// for TLS")
		}
		if len(r.Addrs) > 0 || r.MasterName != "" || r.DB != 0 {
			errs = append(errs, "store.redis: addrs, master_name and db are for sentinel and cluster modes; standalone takes redis_url (the database is in the URL)")
		}
		if u, err := url.Parse(raw); err == nil && u.User != nil {
			if _, has := u.User.Password(); has && (r.PasswordFile != "") {
				errs = append(errs, "a password in store.redis_url and store.redis.password_file: keep one (the file)")
			}
		}
	case "sentinel":
		if r.MasterName == "" || len(r.Addrs) == 0 {
			errs = append(errs, "store.redis.mode sentinel needs master_name (HSMCA_REDIS_MASTER_NAME) and the sentinels' addrs (HSMCA_REDIS_ADDRS)")
		}
	case "cluster":
		if len(r.Addrs) == 0 {
			errs = append(errs, "store.redis.mode cluster needs addrs (HSMCA_REDIS_ADDRS): some of the cluster's nodes")
		}
		if r.MasterName != "" || r.DB != 0 {
			errs = append(errs, "store.redis.mode cluster takes neither master_name nor db")
		}
	default:
		errs = append(errs, fmt.Sprintf("store.redis.mode %q: want standalone, sentinel or cluster", r.Mode))
	}
	if c.RedisMode() != "standalone" && raw != "" {
		errs = append(errs, fmt.Sprintf("store.redis.mode %s takes addrs, not redis_url", c.RedisMode()))
	}
	for _, a := range r.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Sprintf("store.redis.addrs %q: want host:port", a))
		}
	}
	if r.DB < 0 {
		errs = append(errs, "store.redis.db is negative")
	}
	if r.WaitReplicas != nil && *r.WaitReplicas < 0 {
		errs = append(errs, "store.redis.wait_replicas is negative (0 turns waiting off)")
	}
	if r.WaitTimeout < 0 {
		errs = append(errs, "store.redis.wait_timeout is negative")
	}
	if (r.TLS.CertFile == "") != (r.TLS.KeyFile == "") {
		errs = append(errs, "store.redis.tls.cert_file and key_file (HSMCA_REDIS_TLS_CERT, HSMCA_REDIS_TLS_KEY) go together")
	}
	if !c.RedisTLS() && (r.TLS.CAFile != "" || r.TLS.CertFile != "" || r.TLS.ServerName != "") {
		errs = append(errs, "store.redis.tls files are set but TLS is off: use a rediss:// URL, or store.redis.tls.enabled (HSMCA_REDIS_TLS=true)")
	}
	return errs
}

// CheckPublicBaseURL validates a public base URL (public_base_url,
// HSMCA_PUBLIC_BASE_URL) and returns it without a trailing slash: an
// absolute http or https URL with a host, no user information, query or
// fragment. A path is a prefix under which a proxy serves the daemon.
func CheckPublicBaseURL(raw string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("public_base_url %q: %s; want an absolute http or https URL such as https://ca.example.com", raw, why)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return bad("not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return bad("the scheme must be http or https")
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return bad("no host")
	case u.User != nil:
		return bad("user information is not allowed")
	case u.RawQuery != "" || u.ForceQuery:
		return bad("a query is not allowed")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return bad("a fragment is not allowed")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return bad("bad port")
		}
	}
	for _, r := range raw {
		if r <= ' ' || r >= 0x7f {
			// Certificates carry URLs as IA5String: ASCII only.
			return bad("spaces, control characters and non-ASCII characters are not allowed")
		}
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"), nil
}

// TLSEnabled reports whether the listener serves HTTPS.
func (c *Config) TLSEnabled() bool { return c.TLS.Cert != "" }

// envDuration sets *dst from the environment variable name when it is set
// and not empty: a positive duration, else an error naming the variable
// with an example value.
func envDuration(get func(string) (string, bool), name, example string, dst *time.Duration) error {
	v, ok := get(name)
	if !ok || v == "" {
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("config: %s: want a positive duration such as %s, got %q", name, example, v)
	}
	*dst = d
	return nil
}
