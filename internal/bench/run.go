package bench

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hsmca/hsmca/hsm"
	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/daemon"
	"github.com/hsmca/hsmca/internal/families"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/issuance"
	"github.com/hsmca/hsmca/signer/keys"
	"github.com/hsmca/hsmca/signer/pca"
	"github.com/hsmca/hsmca/store"
	xocsp "golang.org/x/crypto/ocsp"
)

// Config says what to measure and how long.
type Config struct {
	Hsmcad      string   // daemon binary
	Module      string   // PKCS#11 library (SoftHSM2)
	Stores      []string // "bolt", "redis"
	Phase       Phase
	Concurrency []int // HTTP concurrencies (1, 8, 64)
	InProc      []int // in-process goroutines (1, 8)
	SeedCount   int   // certificates stored before the growth phases; 0 skips them
	CRLEntries  int   // revocation entries of the CRL rows' CA; 0 skips them
	SeedWorkers int
	// SeedHSM signs seeded certificates with the CA's HSM key; otherwise a
	// software stand-in key signs them (same records, far faster).
	SeedHSM    bool
	ProfileDir string // CPU profiles of the daemon at the highest concurrency
	// Ops, when not empty, limits the HTTP rows to these operations
	// (OpNames); the in-process and durability rows always run.
	Ops     []string
	WorkDir string // tokens, stores and daemon logs; a temporary one when empty
	Keep    bool   // keep WorkDir
	Log     io.Writer
	// Rounds runs everything this many times (at least once), the
	// stores in turn in the order given and then reversed (rounds.go);
	// each row says its round. Profiles are written in the first.
	Rounds int
	// round names the tokens of a round after the first.
	round string
}

const tenant = "bench"

// Run measures every store and returns the rows of the table.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	root := cfg.WorkDir
	if root == "" {
		d, err := os.MkdirTemp("", "hsmca-bench-")
		if err != nil {
			return nil, err
		}
		root = d
	}
	if !cfg.Keep {
		defer os.RemoveAll(root)
	} else {
		fmt.Fprintf(cfg.Log, "work directory (kept): %s\n", root)
	}
	sh, err := newSoftHSM(root, cfg.Module)
	if err != nil {
		return nil, err
	}
	var all []Result
	rounds := max(cfg.Rounds, 1)
	for round := range rounds {
		rc, dir := cfg, root
		if rounds > 1 {
			fmt.Fprintf(cfg.Log, "round %d of %d\n", round+1, rounds)
			dir = filepath.Join(root, fmt.Sprintf("round%d", round+1))
			if round > 0 {
				rc.ProfileDir, rc.round = "", fmt.Sprintf("-r%d", round+1)
			}
		}
		for _, backend := range roundOrder(cfg.Stores, round) {
			rows, err := runStore(ctx, rc, sh, backend, filepath.Join(dir, backend))
			for i := range rows {
				rows[i].Round = round
			}
			all = append(all, rows...)
			if err != nil {
				return all, fmt.Errorf("%s: %w", backend, err)
			}
		}
	}
	return all, nil
}

// fixture is what the setup made through the API.
type fixture struct {
	token, caID, keyID, csrPEM string
	csr                        *x509.CertificateRequest
	certIDs                    *idSet
}

// idSet collects certificate ids for the show phases.
type idSet struct {
	mu  sync.Mutex
	ids []string
}

func (s *idSet) add(id string) {
	s.mu.Lock()
	if len(s.ids) < 20000 {
		s.ids = append(s.ids, id)
	}
	s.mu.Unlock()
}

func (s *idSet) snapshot() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ids...)
}

func runStore(ctx context.Context, cfg Config, sh *softHSM, backend, dir string) ([]Result, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	tok, err := sh.newToken("bench-"+backend+cfg.round, dir)
	if err != nil {
		return nil, err
	}
	storeYAML := fmt.Sprintf("  backend: bolt\n  bolt_path: %q\n", filepath.Join(dir, "hsmca.db"))
	redisAddr, storePID := "", 0
	switch {
	case backend == "redis":
		r, err := startRedis(dir)
		if err != nil {
			return nil, err
		}
		defer r.stop()
		storeYAML = fmt.Sprintf("  backend: redis\n  redis_url: %q\n", r.url())
		redisAddr, storePID = r.addr, r.cmd.Process.Pid
	case haStore(backend):
		y, stop, err := startHAStore(backend, dir)
		if err != nil {
			return nil, err
		}
		defer stop()
		storeYAML = y
	}
	d, err := newDaemonSetup(cfg, sh, tok, dir, storeYAML)
	if err != nil {
		return nil, err
	}
	d.storePID = storePID
	fmt.Fprintf(cfg.Log, "[%s] token %s, store %s\n", backend, tok.label, backend)

	secret, err := d.createAPIToken(ctx)
	if err != nil {
		return nil, fmt.Errorf("API token: %w", err)
	}
	if err := d.start(ctx); err != nil {
		return nil, err
	}
	defer d.stop()
	fx, err := setup(ctx, d.base, secret)
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	var rows []Result
	maxC := 0
	for _, c := range cfg.Concurrency {
		maxC = max(maxC, c)
	}
	run := func(op string, c int, rq request, profile string) {
		if !cfg.measures(op) {
			return
		}
		fmt.Fprintf(cfg.Log, "[%s] %s, concurrency %d\n", backend, op, c)
		r := d.measureHTTP(ctx, cfg, c, rq, profile)
		r.Op, r.Store = op, backend
		if r.Errors > 0 {
			fmt.Fprintf(cfg.Log, "[%s]   %d errors, first: %s\n", backend, r.Errors, r.FirstError)
		}
		rows = append(rows, r)
	}
	profAt := func(op string, c, at int) string {
		if c != at || cfg.ProfileDir == "" {
			return ""
		}
		return filepath.Join(cfg.ProfileDir, fmt.Sprintf("%s-%s-c%d.pprof", backend, op, c))
	}
	profName := func(op string, c int) string { return profAt(op, c, maxC) }
	for _, c := range cfg.Concurrency {
		run(OpIssue, c, issueRequest(fx), profName("issue", c))
	}
	for _, c := range cfg.Concurrency {
		run(OpSign, c, signRequest(fx), profName("sign", c))
	}
	if slices.Contains(cfg.Concurrency, 1) && (cfg.measures(OpSign) || cfg.measures(OpIssue)) {
		// What any answer costs on this machine, beside the 1-connection
		// rows: the HTTP exchange alone, and one bare Redis round trip.
		fmt.Fprintf(cfg.Log, "[%s] %s, concurrency 1\n", backend, OpHealthz)
		r := d.measureHTTP(ctx, cfg, 1, request{method: "GET", path: func(*mrand.Rand) string { return "/healthz" }, want: http.StatusOK}, "")
		r.Op, r.Store = OpHealthz, backend
		rows = append(rows, r)
		if redisAddr != "" {
			fmt.Fprintf(cfg.Log, "[%s] %s\n", backend, OpRedisPing)
			r, err := redisPingRow(ctx, redisAddr, cfg.Phase)
			if err != nil {
				return rows, fmt.Errorf("Redis round trip: %w", err)
			}
			r.Store = backend
			rows = append(rows, r)
		}
	}
	if haStore(backend) {
		// Replicated topologies: what WAIT and the cluster client add to
		// the writing operations; the read rows and the in-process limits
		// are those of one Redis.
		return rows, d.stop()
	}
	ids := fx.certIDs.snapshot()
	for _, c := range cfg.Concurrency {
		run(OpShow, c, showRequest(fx, ids), profName("show", c))
	}
	// OCSP answers by GET about issued certificates: the warm-up signs and
	// stores one answer each, the measured window is served from the
	// store.
	if cfg.measures(OpOCSP) {
		oq, err := ocspRequest(ctx, d.base, fx, ids)
		if err != nil {
			return rows, fmt.Errorf("OCSP setup: %w", err)
		}
		for _, c := range cfg.Concurrency {
			run(OpOCSP, c, oq, profName("ocsp", c))
		}
	}
	// The list is measured for its latency as the store grows (it is no
	// throughput operation): at 1 and 8 connections.
	for _, c := range []int{1, 8} {
		run(OpList, c, listRequest(fx), profAt("list", c, 8))
	}
	if err := d.stop(); err != nil {
		return rows, err
	}

	// The daemon is stopped: the HSM and the store are the bench's alone.
	in, err := d.openEngine(ctx)
	if err != nil {
		return rows, err
	}
	caCert, caKey, err := in.pca.IssuerKey(ctx, tenant, fx.caID)
	if err != nil {
		in.close()
		return rows, fmt.Errorf("CA key: %w", err)
	}
	key, err := keys.New(in.eng).Signer(ctx, tenant, fx.keyID)
	if err != nil {
		in.close()
		return rows, fmt.Errorf("key: %w", err)
	}
	limits := map[string]float64{}
	for _, n := range cfg.InProc {
		fmt.Fprintf(cfg.Log, "[%s] in-process sign, %d goroutines\n", backend, n)
		r := signLimit(ctx, key, n, cfg.Phase)
		r.Store = backend
		rows = append(rows, r)
		limits[fmt.Sprintf("sign/%d", n)] = r.OpsPerSec()
	}
	for _, n := range cfg.InProc {
		fmt.Fprintf(cfg.Log, "[%s] in-process issue, %d goroutines\n", backend, n)
		r := issueLimit(ctx, caCert, caKey, fx.csr, n, cfg.Phase)
		r.Store = backend
		rows = append(rows, r)
		limits[fmt.Sprintf("issue/%d", n)] = r.OpsPerSec()
	}
	if cfg.measures(OpIssue) && len(cfg.InProc) > 0 {
		n := slices.Max(cfg.InProc)
		fmt.Fprintf(cfg.Log, "[%s] in-process CSR parse and check, %d goroutines\n", backend, n)
		r := csrCheckRow(ctx, fx.csrPEM, n, cfg.Phase)
		r.Store = backend
		rows = append(rows, r)
	}
	if backend == "bolt" {
		fmt.Fprintf(cfg.Log, "[%s] fsync and bbolt commit in the store's directory\n", backend)
		dr, err := durableRows(ctx, dir, cfg.Phase)
		for i := range dr {
			dr[i].Store = backend
		}
		rows = append(rows, dr...)
		if err != nil {
			in.close()
			return rows, fmt.Errorf("durability rows: %w", err)
		}
	}
	var seeded []string
	if cfg.SeedCount > 0 {
		seeded, err = seed(ctx, cfg, in, fx, backend)
	}
	in.close()
	if err != nil {
		return rows, fmt.Errorf("seed: %w", err)
	}
	if cfg.SeedCount > 0 {
		if err := d.start(ctx); err != nil {
			return rows, err
		}
		ids := append(seeded, fx.certIDs.snapshot()...)
		suffix := fmt.Sprintf(" @%s stored", count(cfg.SeedCount))
		run(OpIssue+suffix, maxC, issueRequest(fx), profName("issue-grown", maxC))
		for _, c := range []int{1, 8} {
			run(OpShow+suffix, c, showRequest(fx, ids), profAt("show-grown", c, 8))
		}
		for _, c := range []int{1, 8} {
			run(OpList+suffix, c, listRequest(fx), profAt("list-grown", c, 8))
		}
		// Lists the store answers from its field indexes: a rare status
		// (the seeder revokes one certificate in a hundred), another sort
		// key, and the derived ISSUED state (an expiry range).
		for _, path := range []string{OpListRevoked, OpListByNotAfter, OpListIssued} {
			for _, c := range []int{1, 8} {
				run(path+suffix, c, getRequest(fx, strings.TrimPrefix(path, "GET ")), "")
			}
		}
		if err := d.stop(); err != nil {
			return rows, err
		}
	}
	if cfg.CRLEntries > 0 {
		if err := crlPhase(ctx, cfg, d, fx, backend, run, func(r Result) { rows = append(rows, r) }); err != nil {
			return rows, fmt.Errorf("CRL rows: %w", err)
		}
	}
	ratios(rows, limits, cfg.InProc)
	return rows, nil
}

// OpNames are the short names of the HTTP rows (Config.Ops).
var OpNames = map[string]string{"issue": OpIssue, "sign": OpSign, "show": OpShow, "ocsp": OpOCSP, "list": OpList}

// measures reports whether the row of op (a table name, perhaps with a
// suffix such as " @100k stored") is to be measured.
func (cfg Config) measures(op string) bool {
	if len(cfg.Ops) == 0 {
		return true
	}
	for _, short := range cfg.Ops {
		if name := OpNames[short]; name != "" && (op == name || strings.HasPrefix(op, name+" ")) {
			return true
		}
		if short == "list" && strings.HasPrefix(op, "GET /v1/private-certificates?") {
			return true // the indexed lists of the growth rows
		}
	}
	return false
}

// Operation names of the table.
const (
	OpIssue = "POST /v1/private-certificates/csr"
	OpSign  = "POST /v1/keys/{id}/sign"
	OpShow  = "GET /v1/private-certificates/{id}"
	OpOCSP  = "GET /ocsp/{request} (cached)"
	OpList  = "GET /v1/private-certificates?limit=10"

	OpHealthz   = "GET /healthz (HTTP alone: no credential, store or HSM)"
	OpRedisPing = "Redis round trip (PING on one connection, from the bench)"

	OpListRevoked    = "GET /v1/private-certificates?status=REVOKED&limit=10"
	OpListByNotAfter = "GET /v1/private-certificates?sort_key=not_after&limit=10"
	OpListIssued     = "GET /v1/private-certificates?status=ISSUED&limit=10"
)

// seedRevokeEvery is the share of seeded certificates stored revoked.
const seedRevokeEvery = 100

// ratios puts each issuance and signing row beside the in-process limit
// at the largest goroutine count.
func ratios(rows []Result, limits map[string]float64, inproc []int) {
	top := 0
	for _, n := range inproc {
		top = max(top, n)
	}
	for i := range rows {
		r := &rows[i]
		var key string
		switch {
		case strings.HasPrefix(r.Op, OpIssue):
			key = fmt.Sprintf("issue/%d", top)
		case strings.HasPrefix(r.Op, OpSign):
			key = fmt.Sprintf("sign/%d", top)
		default:
			continue
		}
		if l := limits[key]; l > 0 {
			r.Ratio = r.OpsPerSec() / l
			r.Limit = key
		}
	}
}

func count(n int) string {
	switch {
	case n >= 1000000 && n%1000000 == 0:
		return fmt.Sprintf("%dM", n/1000000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// setup makes, through the API, the CA, the key and one certificate the
// load uses.
func setup(ctx context.Context, base, token string) (*fixture, error) {
	c := client(1)
	fx := &fixture{token: token, certIDs: &idSet{}}
	var ca struct {
		CAID string `json:"ca_id"`
	}
	err := call(ctx, c, base, token, "POST", "/v1/private-certificate-authorities", map[string]any{
		"type": "ROOT", "key_algorithm": "EC256", "signature_algorithm": "SHA256",
		"distinguished_name": map[string]string{"common_name": "hsmca bench root", "country": "NZ",
			"state": "Wellington", "locality": "Wellington", "organization": "hsmca", "organizational_unit": "bench"},
		"validity": map[string]any{"type": "YEAR", "value": 10},
	}, http.StatusOK, &ca)
	if err != nil {
		return nil, err
	}
	fx.caID = ca.CAID
	var key struct {
		ID string `json:"id"`
	}
	if err := call(ctx, c, base, token, "POST", "/v1/keys", map[string]string{"algorithm": "EC256", "label": "bench"},
		http.StatusCreated, &key); err != nil {
		return nil, err
	}
	fx.keyID = key.ID
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "bench.hsmca.test", Organization: []string{"hsmca"}}, DNSNames: []string{"bench.hsmca.test"},
	}, k)
	if err != nil {
		return nil, err
	}
	fx.csrPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	if fx.csr, err = x509.ParseCertificateRequest(der); err != nil {
		return nil, err
	}
	if err := fx.csr.CheckSignature(); err != nil {
		return nil, err
	}
	var cert struct {
		ID string `json:"certificate_id"`
	}
	if err := call(ctx, c, base, token, "POST", "/v1/private-certificates/csr", issueBody(fx), http.StatusOK, &cert); err != nil {
		return nil, err
	}
	fx.certIDs.add(cert.ID)
	return fx, nil
}

func issueBody(fx *fixture) map[string]any {
	return map[string]any{"issuer_id": fx.caID, "csr": fx.csrPEM, "validity": map[string]any{"type": "DAY", "value": 30}}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func issueRequest(fx *fixture) request {
	return request{method: "POST", path: func(*mrand.Rand) string { return "/v1/private-certificates/csr" },
		body: mustJSON(issueBody(fx)), token: fx.token, want: http.StatusOK,
		onBody: func(b []byte) {
			var v struct {
				ID string `json:"certificate_id"`
			}
			if json.Unmarshal(b, &v) == nil && v.ID != "" {
				fx.certIDs.add(v.ID)
			}
		}}
}

func signRequest(fx *fixture) request {
	digest := make([]byte, 32)
	_, _ = rand.Read(digest)
	return request{method: "POST", path: func(*mrand.Rand) string { return "/v1/keys/" + fx.keyID + "/sign" },
		body:  mustJSON(map[string]string{"digest": base64.StdEncoding.EncodeToString(digest), "algorithm": "ES256"}),
		token: fx.token, want: http.StatusOK}
}

func showRequest(fx *fixture, ids []string) request {
	return request{method: "GET", path: func(r *mrand.Rand) string { return "/v1/private-certificates/" + ids[r.IntN(len(ids))] },
		token: fx.token, want: http.StatusOK}
}

// ocspCerts is how many certificates the OCSP rows ask about.
const ocspCerts = 64

// ocspRequest switches the fixture CA's OCSP on and returns GET requests
// (RFC 5019: base64, URL-encoded) about up to ocspCerts of ids.
func ocspRequest(ctx context.Context, base string, fx *fixture, ids []string) (request, error) {
	c := client(1)
	if err := call(ctx, c, base, fx.token, "POST", "/v1/private-certificate-authorities/"+fx.caID+"/ocsp/switch",
		map[string]bool{"ocsp_switch": true}, http.StatusNoContent, nil); err != nil {
		return request{}, err
	}
	var ca struct {
		Certificate string `json:"certificate"`
	}
	if err := call(ctx, c, base, fx.token, "POST", "/v1/private-certificate-authorities/"+fx.caID+"/export",
		map[string]string{}, http.StatusOK, &ca); err != nil {
		return request{}, err
	}
	b, _ := pem.Decode([]byte(ca.Certificate))
	if b == nil {
		return request{}, errors.New("CA export without a certificate")
	}
	issuer, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return request{}, err
	}
	var paths []string
	for _, id := range ids[:min(len(ids), ocspCerts)] {
		var cert struct {
			Serial string `json:"serial_number"`
		}
		if err := call(ctx, c, base, fx.token, "GET", "/v1/private-certificates/"+id, nil, http.StatusOK, &cert); err != nil {
			return request{}, err
		}
		serial, ok := new(big.Int).SetString(cert.Serial, 16)
		if !ok {
			return request{}, fmt.Errorf("certificate %s: serial %q", id, cert.Serial)
		}
		kh, err := issuance.OCSPKeyHash(issuer, crypto.SHA1)
		if err != nil {
			return request{}, err
		}
		der, err := (&xocsp.Request{HashAlgorithm: crypto.SHA1, IssuerNameHash: issuance.OCSPNameHash(issuer, crypto.SHA1),
			IssuerKeyHash: kh, SerialNumber: serial}).Marshal()
		if err != nil {
			return request{}, err
		}
		paths = append(paths, "/ocsp/"+url.PathEscape(base64.StdEncoding.EncodeToString(der)))
	}
	if len(paths) == 0 {
		return request{}, errors.New("no certificate to ask about")
	}
	// The rows count HTTP 200s, which OCSP errors are too: check once that
	// the answers are real.
	resp, err := c.Get(base + paths[0])
	if err != nil {
		return request{}, err
	}
	der, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if err != nil {
		return request{}, err
	}
	if r, err := xocsp.ParseResponse(der, issuer); err != nil || r.Status != xocsp.Good {
		return request{}, fmt.Errorf("OCSP answer: %v", err)
	}
	return request{method: "GET", path: func(r *mrand.Rand) string { return paths[r.IntN(len(paths))] },
		token: fx.token, want: http.StatusOK}, nil
}

func getRequest(fx *fixture, path string) request {
	return request{method: "GET", path: func(*mrand.Rand) string { return path }, token: fx.token, want: http.StatusOK}
}

func listRequest(fx *fixture) request {
	return request{method: "GET", path: func(*mrand.Rand) string { return "/v1/private-certificates?limit=10" },
		token: fx.token, want: http.StatusOK}
}

// call makes one setup request and decodes its answer.
func call(ctx context.Context, c *http.Client, base, token, method, path string, body any, want int, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(string(mustJSON(body))))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// inproc is an engine over the store and the HSM, opened while the daemon
// is stopped.
type inproc struct {
	eng *signer.Core
	pca *pca.Service
	st  store.Store
	h   *hsm.HSM
}

func (in *inproc) close() {
	in.eng.Close() // closes the HSM too
	in.st.Close()
}

func (d *daemonSetup) openEngine(ctx context.Context) (*inproc, error) {
	cfg, err := config.Load(d.configPath)
	if err != nil {
		return nil, err
	}
	st, err := daemon.OpenStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	hc, err := daemon.HSMConfig(cfg, nil, nil)
	if err != nil {
		st.Close()
		return nil, err
	}
	h, err := hsm.Open(hc)
	if err != nil {
		st.Close()
		return nil, err
	}
	eng := signer.New(signer.Options{Families: families.All(), Store: st, HSM: h, Quotas: cfg.Quotas})
	return &inproc{eng: eng, pca: pca.New(eng), st: st, h: h}, nil
}

// bulkStore is a store that loads records in batches (both backends).
type bulkStore interface {
	BulkCreate(ctx context.Context, recs []store.Record, quota store.Quota) error
}

// seed stores cfg.SeedCount certificates issued by the fixture's CA and
// returns a sample of their ids.
func seed(ctx context.Context, cfg Config, in *inproc, fx *fixture, backend string) ([]string, error) {
	bs, ok := in.st.(bulkStore)
	if !ok {
		return nil, errors.New("the store has no bulk loader")
	}
	var sample []string
	start := time.Now()
	last := start
	sink := func(ctx context.Context, recs []store.Record, q store.Quota) error {
		for i := 0; i < len(recs) && q.Resource != ""; i += 97 {
			// Only certificate batches carry the quota; the others hold
			// revocation entries.
			if len(sample) < 20000 {
				sample = append(sample, recs[i].ID)
			}
		}
		return bs.BulkCreate(ctx, recs, q)
	}
	progress := func(n int) {
		if time.Since(last) > 10*time.Second || n == cfg.SeedCount {
			last = time.Now()
			el := time.Since(start)
			fmt.Fprintf(cfg.Log, "[%s] seeded %d of %d certificates in %s (%.0f/s)\n", backend, n, cfg.SeedCount,
				el.Round(time.Second), float64(n)/el.Seconds())
		}
	}
	o := pca.SeedOptions{Workers: cfg.SeedWorkers, Progress: progress, RevokeEvery: seedRevokeEvery}
	if !cfg.SeedHSM {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		o.StandIn = k
	}
	fmt.Fprintf(cfg.Log, "[%s] seeding %d certificates (signed by %s)\n", backend, cfg.SeedCount,
		map[bool]string{true: "the CA's HSM key", false: "a software stand-in key"}[cfg.SeedHSM])
	err := in.pca.SeedCertificates(ctx, tenant, pca.CertFromCSR{IssuerID: fx.caID, CSR: fx.csrPEM,
		Validity: &pca.Validity{Type: "DAY", Value: 30}}, cfg.SeedCount, o, sink)
	return sample, err
}
