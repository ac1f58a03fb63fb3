package chaos

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Paths of the families, relative to the daemon's base URL.
const (
	keysPath      = "/v1/keys"
	dtsRootPath   = "/v1/ecosystems/certificates/ca"
	dtsSignerPath = "/v1/ecosystems/certificates/vical-signers"
	pcaCAPath     = "/v1/private-certificate-authorities"
	pcaCertPath   = "/v1/private-certificates"
)

func apigPath(tenant string) string { return "/v2/" + tenant + "/apigw/certificates" }

// objectPath is where one resource is read.
func (w *workload) objectPath(kind, id string) string {
	switch kind {
	case KindKey:
		return keysPath + "/" + id
	case KindDTSRoot:
		return dtsRootPath + "/" + id
	case KindDTSSigner:
		return dtsSignerPath + "/" + id
	case KindAPIG:
		return apigPath(w.tenant) + "/" + id
	case KindPCACA:
		return pcaCAPath + "/" + id
	case KindPCACert:
		return pcaCertPath + "/" + id
	}
	panic("unknown kind " + kind)
}

// Bounds keep the tenant's resources within quotas over long runs.
const (
	maxKeys     = 30
	maxAPIG     = 12
	maxPCACAs   = 10 // CAs not scheduled for deletion
	maxPCAAll   = 60 // every CA record, scheduled deletions included
	maxPCACerts = 40
)

// workload drives the daemon with a mix of operations of every family and
// keeps the model of what it acknowledged.
type workload struct {
	tenant string
	client *Client
	model  *model
	pca    bool

	// dead is set just before the daemon is killed: requests that fail
	// afterwards never reached it.
	dead  atomic.Bool
	round atomic.Int64 // the daemon's life the workload is in
	// faulted is set while a fault (HSM or store away) lasts: 503 answers are expected then,
	// and from requests sent before it last ended (faultOver, UnixNano).
	faulted   atomic.Bool
	faultOver atomic.Int64

	mu         sync.Mutex
	stats      map[string]int // "op status" -> count
	unexpected []string       // 5xx answers and other anomalies
	outage     map[int]int    // status -> answers while a fault lasted
	// acked maps the request id of every 2xx answer to its operation:
	// each must have its event record in the log.
	acked map[string]string
}

func newWorkload(tenant string, c *Client, pca bool) *workload {
	return &workload{tenant: tenant, client: c, model: newModel(), pca: pca, stats: map[string]int{}, outage: map[int]int{},
		acked: map[string]string{}}
}

func (w *workload) count(op string, r *Response) {
	k := op + " "
	if r.Err != nil && w.dead.Load() {
		k += "refused"
	} else if r.Err != nil {
		k += "no-answer"
	} else {
		k += fmt.Sprint(r.Status)
	}
	w.mu.Lock()
	w.stats[k]++
	if r.Err == nil && r.Status/100 == 2 && r.RequestID != "" {
		w.acked[r.RequestID] = op
	}
	down := w.faulted.Load() || (!r.Began.IsZero() && r.Began.UnixNano() < w.faultOver.Load())
	if down && r.Err == nil {
		w.outage[r.Status]++
	}
	if r.Err == nil && r.Status >= 500 && !(down && r.Status == http.StatusServiceUnavailable) {
		w.unexpected = append(w.unexpected, fmt.Sprintf("round %d: %s answered %d: %s", w.round.Load(), op, r.Status, clip(string(r.Body))))
	}
	w.mu.Unlock()
}

// answered says whether r is a definite answer: 2xx applied the operation,
// 4xx refused it. No answer, or a 5xx, leaves it open.
func answered(r *Response) bool { return r.Err == nil && r.Status < 500 }

func ok2xx(r *Response) bool { return r.Err == nil && r.Status >= 200 && r.Status < 300 }

// change runs an operation on a locked resource and updates the model:
// applied -> target state; refused -> unchanged; unknown -> maybe target.
func (w *workload) change(ctx context.Context, r *resource, op, method, path string, body any, target string) *Response {
	resp := w.client.Do(ctx, method, path, body)
	w.count(op, resp)
	switch {
	case ok2xx(resp):
		r.state = target
	case !answered(resp):
		r.maybe = append(r.maybe, target)
	}
	return resp
}

type op struct {
	name   string
	weight int
	run    func(w *workload, ctx context.Context, rng *mrand.Rand)
}

func (w *workload) ops() []op {
	ops := []op{
		{"key.create", 6, (*workload).keyCreate},
		{"key.disable", 3, (*workload).keyToggle},
		{"key.delete", 3, (*workload).keyDelete},
		{"key.sign", 3, (*workload).keySign},
		{"dts.root.create", 2, (*workload).dtsRootCreate},
		{"dts.root.toggle", 2, (*workload).dtsRootToggle},
		{"dts.root.delete", 1, (*workload).dtsRootDelete},
		{"dts.signer.create", 3, (*workload).dtsSignerCreate},
		{"dts.signer.toggle", 2, (*workload).dtsSignerToggle},
		{"dts.signer.delete", 2, (*workload).dtsSignerDelete},
		{"apig.create", 3, (*workload).apigCreate},
		{"apig.delete", 2, (*workload).apigDelete},
	}
	if w.pca {
		ops = append(ops,
			op{"pca.ca.create", 3, (*workload).pcaCACreate},
			op{"pca.ca.activate", 2, (*workload).pcaCAActivate},
			op{"pca.ca.toggle", 2, (*workload).pcaCAToggle},
			op{"pca.ca.delete", 2, (*workload).pcaCADelete},
			op{"pca.ca.restore", 1, (*workload).pcaCARestore},
			op{"pca.ca.revoke", 1, (*workload).pcaCARevoke},
			op{"pca.cert.issue", 5, (*workload).pcaCertIssue},
			op{"pca.cert.revoke", 2, (*workload).pcaCertRevoke},
			op{"pca.cert.delete", 2, (*workload).pcaCertDelete},
		)
	}
	return ops
}

// worker runs random operations until ctx ends.
func (w *workload) worker(ctx context.Context, seed uint64) {
	rng := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	ops := w.ops()
	total := 0
	for _, o := range ops {
		total += o.weight
	}
	for ctx.Err() == nil && !w.dead.Load() {
		n := rng.IntN(total)
		for _, o := range ops {
			if n < o.weight {
				o.run(w, ctx, rng)
				break
			}
			n -= o.weight
		}
	}
}

// --- keys ---

func (w *workload) keyCreate(ctx context.Context, rng *mrand.Rand) {
	if w.model.count(KindKey, nil) >= maxKeys {
		w.keyDelete(ctx, rng)
		return
	}
	alg := []string{"EC256", "EC256", "EC384", "ED25519", "EC521"}[rng.IntN(5)]
	if rng.IntN(20) == 0 {
		alg = "RSA2048"
	}
	resp := w.client.Do(ctx, "POST", keysPath, map[string]any{"algorithm": alg, "label": fmt.Sprintf("chaos-%d", rng.IntN(1e6))})
	w.count("key.create", resp)
	if ok2xx(resp) {
		m := resp.Map()
		if id, _ := m["id"].(string); id != "" {
			w.model.add(KindKey, id, m, false)
		}
	}
}

func (w *workload) keyToggle(ctx context.Context, rng *mrand.Rand) {
	r := w.model.pick(rng, KindKey, nil)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	if r.state == "disabled" {
		w.change(ctx, r, "key.enable", "POST", keysPath+"/"+r.id+"/enable", nil, "enabled")
	} else {
		w.change(ctx, r, "key.disable", "POST", keysPath+"/"+r.id+"/disable", nil, "disabled")
	}
}

func (w *workload) keyDelete(ctx context.Context, rng *mrand.Rand) {
	r := w.model.pick(rng, KindKey, nil)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	w.change(ctx, r, "key.delete", "DELETE", keysPath+"/"+r.id, nil, gone)
}

func (w *workload) keySign(ctx context.Context, rng *mrand.Rand) {
	r := w.model.pick(rng, KindKey, func(r *resource) bool { return r.state == "enabled" })
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	msg := base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("payload %d", rng.Int())))
	resp := w.client.Do(ctx, "POST", keysPath+"/"+r.id+"/sign", map[string]any{"message": msg})
	w.count("key.sign", resp)
}

// --- DTS ---

func (w *workload) dtsRootCreate(ctx context.Context, rng *mrand.Rand) {
	if w.model.count(KindDTSRoot, nil) >= 3 {
		w.dtsRootDelete(ctx, rng)
		return
	}
	resp := w.client.Do(ctx, "POST", dtsRootPath, map[string]any{"organisationName": fmt.Sprintf("Chaos %d Inc.", rng.IntN(1e6))})
	w.count("dts.root.create", resp)
	if ok2xx(resp) {
		m := resp.Map()
		if id, _ := m["id"].(string); id != "" {
			w.model.add(KindDTSRoot, id, m, false)
		}
	}
}

func (w *workload) dtsRootToggle(ctx context.Context, rng *mrand.Rand) {
	r := w.model.pick(rng, KindDTSRoot, nil)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	active := r.state != "true"
	w.change(ctx, r, "dts.root.update", "PUT", dtsRootPath+"/"+r.id, map[string]any{"active": active}, fmt.Sprint(active))
}

func (w *workload) dtsRootDelete(ctx context.Context, rng *mrand.Rand) {
	r := w.model.pick(rng, KindDTSRoot, nil)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	w.change(ctx, r, "dts.root.delete", "DELETE", dtsRootPath+"/"+r.id, nil, gone)
}

func (w *workload) dtsSignerCreate(ctx context.Context, rng *mrand.Rand) {
	if w.model.count(KindDTSSigner, nil) >= 5 {
		w.dtsSignerDelete(ctx, rng)
		return
	}
	root := w.model.pick(rng, KindDTSRoot, func(r *resource) bool { return r.state == "true" })
	if root == nil {
		return
	}
	// The root's lock is held so that it is not deleted meanwhile: the
	// signer's certificate then comes from a live root.
	defer root.mu.Unlock()
	resp := w.client.Do(ctx, "POST", dtsSignerPath, map[string]any{"caId": root.id})
	w.count("dts.signer.create", resp)
	if ok2xx(resp) {
		m := resp.Map()
		if id, _ := m["id"].(string); id != "" {
			w.model.add(KindDTSSigner, id, m, false)
		}
	}
}

func (w *workload) dtsSignerToggle(ctx context.Context, rng *mrand.Rand) {
	r := w.model.pick(rng, KindDTSSigner, func(r *resource) bool { return r.snap["certificatePem"] != nil })
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	active := r.state != "true"
	w.change(ctx, r, "dts.signer.update", "PUT", dtsSignerPath+"/"+r.id, map[string]any{"active": active}, fmt.Sprint(active))
}

func (w *workload) dtsSignerDelete(ctx context.Context, rng *mrand.Rand) {
	r := w.model.pick(rng, KindDTSSigner, nil)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	w.change(ctx, r, "dts.signer.delete", "DELETE", dtsSignerPath+"/"+r.id, nil, gone)
}

// --- APIG ---

func (w *workload) apigCreate(ctx context.Context, rng *mrand.Rand) {
	if w.model.count(KindAPIG, nil) >= maxAPIG {
		w.apigDelete(ctx, rng)
		return
	}
	certPEM, keyPEM, err := selfSigned(rng)
	if err != nil {
		w.mu.Lock()
		w.unexpected = append(w.unexpected, "making an APIG test certificate: "+err.Error())
		w.mu.Unlock()
		return
	}
	name := fmt.Sprintf("chaos_%08x", rng.Uint32())
	resp := w.client.Do(ctx, "POST", apigPath(w.tenant), map[string]any{"name": name, "cert_content": certPEM, "private_key": keyPEM})
	w.count("apig.create", resp)
	if ok2xx(resp) {
		m := resp.Map()
		if id, _ := m["id"].(string); id != "" {
			w.model.add(KindAPIG, id, m, false)
		}
	}
}

func (w *workload) apigDelete(ctx context.Context, rng *mrand.Rand) {
	r := w.model.pick(rng, KindAPIG, nil)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	w.change(ctx, r, "apig.delete", "DELETE", apigPath(w.tenant)+"/"+r.id, nil, gone)
}

// selfSigned makes an APIG-importable pair: a self-signed leaf with a DNS
// SAN and its unencrypted key (PKCS#8 EC, or PKCS#1 RSA now and then).
func selfSigned(rng *mrand.Rand) (certPEM, keyPEM string, err error) {
	var key crypto.Signer
	var keyBlock *pem.Block
	if rng.IntN(8) == 0 {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return "", "", err
		}
		key, keyBlock = k, &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
	} else {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return "", "", err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return "", "", err
		}
		key, keyBlock = k, &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	cn := fmt.Sprintf("h%d.chaos.example", rng.IntN(1e6))
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(rng.Int64N(1<<62) + 1),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"hsmca chaos"}},
		DNSNames:     []string{cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(90 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return "", "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), string(pem.EncodeToMemory(keyBlock)), nil
}

// --- PCA ---

func pcaDN(cn string) map[string]any {
	return map[string]any{"common_name": cn, "country": "DE", "state": "Berlin", "locality": "Berlin",
		"organization": "hsmca chaos", "organizational_unit": "PKI"}
}

func (w *workload) pcaCACreate(ctx context.Context, rng *mrand.Rand) {
	if w.model.count(KindPCACA, func(s string) bool { return s != "DELETED" }) >= maxPCACAs ||
		w.model.count(KindPCACA, nil) >= maxPCAAll {
		w.pcaCADelete(ctx, rng)
		return
	}
	cn := fmt.Sprintf("Chaos CA %d", rng.IntN(1e6))
	body := map[string]any{"distinguished_name": pcaDN(cn), "key_algorithm": "EC256"}
	want := "PENDING"
	var issuer *resource
	switch rng.IntN(3) {
	case 0:
		body["type"], body["signature_algorithm"] = "ROOT", "SHA256"
		body["validity"] = map[string]any{"type": "YEAR", "value": 10}
		want = "ACTIVED"
	case 1:
		body["type"] = "SUBORDINATE"
	default:
		issuer = w.pickRoot(rng)
		if issuer == nil {
			return
		}
		defer issuer.mu.Unlock()
		body["type"], body["issuer_id"], body["signature_algorithm"] = "SUBORDINATE", issuer.id, "SHA256"
		body["validity"] = map[string]any{"type": "YEAR", "value": 5}
		body["path_length"] = 0
		want = "ACTIVED"
	}
	resp := w.client.Do(ctx, "POST", pcaCAPath, body)
	w.count("pca.ca.create", resp)
	if !ok2xx(resp) {
		return
	}
	id, _ := resp.Map()["ca_id"].(string)
	if id == "" {
		return
	}
	w.adoptAcked(ctx, KindPCACA, id, want)
}

// adoptAcked records a resource whose creation answered only its id: the
// object as read right after, or, when the read gets no answer, only the
// state the creation promised.
func (w *workload) adoptAcked(ctx context.Context, kind, id, want string) {
	var snap map[string]any
	if resp := w.client.Do(ctx, "GET", w.objectPath(kind, id), nil); resp.Err == nil && resp.Status == 200 {
		snap = resp.Map()
	}
	r := w.model.add(kind, id, snap, false)
	r.mu.Lock()
	if snap == nil {
		r.state = want
	} else if r.state != want {
		w.mu.Lock()
		w.unexpected = append(w.unexpected, fmt.Sprintf("%s %s created as %s but read back as %s", kind, id, want, r.state))
		w.mu.Unlock()
	}
	r.mu.Unlock()
}

// pickRoot locks an ACTIVED root CA (path length left for a child).
func (w *workload) pickRoot(rng *mrand.Rand) *resource {
	return w.model.pick(rng, KindPCACA, func(r *resource) bool {
		return r.state == "ACTIVED" && r.snap != nil && r.snap["type"] == "ROOT"
	})
}

func (w *workload) pcaCAActivate(ctx context.Context, rng *mrand.Rand) {
	issuer := w.pickRoot(rng)
	if issuer == nil {
		return
	}
	defer issuer.mu.Unlock()
	r := w.model.pick(rng, KindPCACA, func(r *resource) bool { return r.state == "PENDING" })
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	w.change(ctx, r, "pca.ca.activate", "POST", pcaCAPath+"/"+r.id+"/activate", map[string]any{
		"issuer_id": issuer.id, "signature_algorithm": "SHA256",
		"validity": map[string]any{"type": "YEAR", "value": 5}, "path_length": 0}, "ACTIVED")
}

func (w *workload) pcaCAToggle(ctx context.Context, rng *mrand.Rand) {
	r := w.model.pick(rng, KindPCACA, func(r *resource) bool { return r.state == "ACTIVED" || r.state == "DISABLED" })
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	if r.state == "ACTIVED" {
		w.change(ctx, r, "pca.ca.disable", "POST", pcaCAPath+"/"+r.id+"/disable", nil, "DISABLED")
	} else {
		w.change(ctx, r, "pca.ca.enable", "POST", pcaCAPath+"/"+r.id+"/enable", nil, "ACTIVED")
	}
}

func (w *workload) pcaCADelete(ctx context.Context, rng *mrand.Rand) {
	r := w.model.pick(rng, KindPCACA, func(r *resource) bool {
		return r.state == "PENDING" || r.state == "DISABLED" || r.state == "REVOKED"
	})
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	if r.state == "DISABLED" {
		w.change(ctx, r, "pca.ca.delete", "DELETE", pcaCAPath+"/"+r.id+"?"+url.Values{"pending_days": {"7"}}.Encode(), nil, "DELETED")
		return
	}
	w.change(ctx, r, "pca.ca.delete", "DELETE", pcaCAPath+"/"+r.id, nil, gone)
}

func (w *workload) pcaCARestore(ctx context.Context, rng *mrand.Rand) {
	r := w.model.pick(rng, KindPCACA, func(r *resource) bool { return r.state == "DELETED" })
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	w.change(ctx, r, "pca.ca.restore", "POST", pcaCAPath+"/"+r.id+"/restore", nil, "DISABLED")
}

func (w *workload) pcaCARevoke(ctx context.Context, rng *mrand.Rand) {
	r := w.model.pick(rng, KindPCACA, func(r *resource) bool {
		return r.state == "ACTIVED" && r.snap != nil && r.snap["type"] == "SUBORDINATE"
	})
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	w.change(ctx, r, "pca.ca.revoke", "POST", pcaCAPath+"/"+r.id+"/revoke", map[string]any{"reason": "SUPERSEDED"}, "REVOKED")
}

func (w *workload) pcaCertIssue(ctx context.Context, rng *mrand.Rand) {
	if w.model.count(KindPCACert, nil) >= maxPCACerts {
		w.pcaCertDelete(ctx, rng)
		return
	}
	issuer := w.model.pick(rng, KindPCACA, func(r *resource) bool { return r.state == "ACTIVED" })
	if issuer == nil {
		return
	}
	defer issuer.mu.Unlock()
	cn := fmt.Sprintf("leaf%d.chaos.example", rng.IntN(1e6))
	resp := w.client.Do(ctx, "POST", pcaCertPath, map[string]any{
		"issuer_id": issuer.id, "key_algorithm": "EC256", "signature_algorithm": "SHA256",
		"distinguished_name":        map[string]any{"common_name": cn},
		"validity":                  map[string]any{"type": "DAY", "value": 30},
		"subject_alternative_names": []map[string]any{{"type": "DNS", "value": cn}}})
	w.count("pca.cert.issue", resp)
	if !ok2xx(resp) {
		return
	}
	if id, _ := resp.Map()["certificate_id"].(string); id != "" {
		w.adoptAcked(ctx, KindPCACert, id, "ISSUED")
	}
}

func (w *workload) pcaCertRevoke(ctx context.Context, rng *mrand.Rand) {
	r := w.model.pick(rng, KindPCACert, func(r *resource) bool { return r.state == "ISSUED" })
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	w.change(ctx, r, "pca.cert.revoke", "POST", pcaCertPath+"/"+r.id+"/revoke", map[string]any{"reason": "KEY_COMPROMISE"}, "REVOKED")
}

func (w *workload) pcaCertDelete(ctx context.Context, rng *mrand.Rand) {
	r := w.model.pick(rng, KindPCACert, nil)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	w.change(ctx, r, "pca.cert.delete", "DELETE", pcaCertPath+"/"+r.id, nil, gone)
}
