package chaos

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/hsmca/hsmca/internal/config"
	"github.com/hsmca/hsmca/internal/storeopen"
	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/signer/apig"
	"github.com/hsmca/hsmca/signer/dts"
	"github.com/hsmca/hsmca/signer/keys"
	"github.com/hsmca/hsmca/signer/pca"
	"github.com/hsmca/hsmca/store"
)

// checkAPI reads every resource the model knows and compares it with what
// was acknowledged, then adopts objects the daemon has but the client never
// heard of (creations whose answer was lost). It returns the violations.
func (w *workload) checkAPI(ctx context.Context) []string {
	var bad []string
	for _, r := range w.model.all("") {
		r.mu.Lock()
		resp := w.client.Do(ctx, "GET", w.objectPath(r.kind, r.id), nil)
		switch {
		case resp.Err != nil:
			bad = append(bad, fmt.Sprintf("%s %s: no answer: %v", r.kind, r.id, resp.Err))
		case w.notFound(r.kind, resp):
			if r.state != gone && !contains(r.maybe, gone) {
				how := "acknowledged"
				if r.adopted {
					how = "seen"
				}
				bad = append(bad, fmt.Sprintf("%s %s: %s resource lost (state %q)", r.kind, r.id, how, r.state))
			}
			w.model.drop(r.id)
		case resp.Status == 200:
			obj := resp.Map()
			st := stateOf(r.kind, obj)
			if r.state == gone {
				bad = append(bad, fmt.Sprintf("%s %s: deleted (acknowledged) but still there as %q", r.kind, r.id, st))
			} else if r.state != "" && st != r.state && !contains(r.maybe, st) {
				bad = append(bad, fmt.Sprintf("%s %s: state %q, acknowledged %q (an unanswered operation may have made %v)",
					r.kind, r.id, st, r.state, r.maybe))
			}
			if r.snap != nil {
				if d := diff(r.kind, r.snap, obj); len(d) > 0 {
					bad = append(bad, fmt.Sprintf("%s %s: not intact: %s", r.kind, r.id, join(d)))
				}
			}
			r.snap, r.state, r.maybe = obj, st, nil
		default:
			bad = append(bad, fmt.Sprintf("%s %s: GET answered %d: %s", r.kind, r.id, resp.Status, clip(string(resp.Body))))
		}
		r.mu.Unlock()
	}
	adopted, err := w.adopt(ctx)
	if err != nil {
		bad = append(bad, err.Error())
	}
	w.mu.Lock()
	w.stats["adopted"] += adopted
	w.mu.Unlock()
	return bad
}

func (w *workload) notFound(kind string, r *Response) bool {
	switch kind {
	case KindPCACA, KindPCACert:
		// The public service answers an unknown id with 400 PCA.10010002.
		return r.Status == 400 && r.Map()["error_code"] == "PCA.10010002"
	}
	return r.Status == 404
}

// adopt lists every family and adds the objects the model lacks.
func (w *workload) adopt(ctx context.Context) (int, error) {
	lists := []struct {
		kind, path, items, id string
	}{
		{KindKey, keysPath + "?limit=1000", "data", "id"},
		{KindDTSRoot, dtsRootPath + "?limit=1000", "data", "id"},
		{KindDTSSigner, dtsSignerPath + "?limit=1000", "data", "id"},
		{KindAPIG, apigPath(w.tenant) + "?limit=500", "certs", "id"},
	}
	if w.pca {
		lists = append(lists,
			struct{ kind, path, items, id string }{KindPCACA, pcaCAPath + "?limit=1000", "certificate_authorities", "ca_id"},
			struct{ kind, path, items, id string }{KindPCACert, pcaCertPath + "?limit=1000", "certificates", "certificate_id"})
	}
	n := 0
	for _, l := range lists {
		resp := w.client.Do(ctx, "GET", l.path, nil)
		if resp.Err != nil || resp.Status != 200 {
			return n, fmt.Errorf("list %s: %v %d %s", l.kind, resp.Err, resp.Status, clip(string(resp.Body)))
		}
		items, _ := resp.Map()[l.items].([]any)
		for _, it := range items {
			m, _ := it.(map[string]any)
			id, _ := m[l.id].(string)
			if id == "" || w.model.get(id) != nil {
				continue
			}
			if l.kind == KindKey && m["owner"] != keys.RecordKey {
				continue
			}
			got := w.client.Do(ctx, "GET", w.objectPath(l.kind, id), nil)
			if got.Err != nil || got.Status != 200 {
				return n, fmt.Errorf("%s %s is listed but GET answered %d %v", l.kind, id, got.Status, got.Err)
			}
			w.model.add(l.kind, id, got.Map(), true)
			n++
		}
	}
	return n, nil
}

// quotaKinds pairs each quota counter with the record kind it counts.
var quotaKinds = map[string]string{
	keys.QuotaKeys:         keys.RecordKey,
	dts.QuotaRoots:         dts.RecordRoot,
	dts.QuotaSigners:       dts.RecordSigner,
	dts.QuotaIntermediates: dts.RecordIntermediate,
	pca.QuotaCAs:           pca.RecordCA,
	pca.QuotaCertificates:  pca.RecordCertificate,
	apig.QuotaCertificates: apig.RecordCertificate,
}

// keyOwnerKinds are the record kinds that own HSM keys (Fields[key_id]).
var keyOwnerKinds = []string{keys.RecordKey, apig.RecordCertificate, dts.RecordRoot, dts.RecordSigner,
	dts.RecordIntermediate, pca.RecordCA}

// StoreState is what the store says while no operation runs.
type StoreState struct {
	Owned   map[string]string // CKA_ID -> "kind/id" of the owning record
	Intents int
}

// checkStore opens the store while the daemon is down: every quota counter
// equals the records it counts, and it collects the keys records own.
//
// acked maps the request id of each answered operation to its name: the
// tenant's log must hold an event record of each.
func checkStore(ctx context.Context, cfg *config.Config, tenant string, acked map[string]string) (*StoreState, []string, error) {
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := openStore(octx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("open store: %w", err)
	}
	defer st.Close()
	ss, bad, err := CheckStore(octx, st, tenant)
	if err != nil {
		return nil, nil, err
	}
	missing, err := missingEvents(octx, st, tenant, acked)
	if err != nil {
		return nil, nil, err
	}
	return ss, append(bad, missing...), nil
}

// missingEvents names the answered requests whose event record is not in
// tenant's log.
func missingEvents(ctx context.Context, st store.Store, tenant string, acked map[string]string) ([]string, error) {
	logged := map[string]bool{}
	for after := uint64(0); ; {
		evs, err := st.ListEvents(ctx, tenant, after, 1000)
		if err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		for _, ev := range evs {
			var rec signer.EventRecord
			if err := json.Unmarshal(ev.Data, &rec); err != nil {
				return nil, fmt.Errorf("event %d: %w", ev.Seq, err)
			}
			logged[rec.RequestID] = true
			after = ev.Seq
		}
		if len(evs) < 1000 {
			break
		}
	}
	var out []string
	for id, op := range acked {
		if !logged[id] {
			out = append(out, fmt.Sprintf("%s answered 2xx (request %s) has no event record", op, id))
		}
	}
	sort.Strings(out)
	return out, nil
}

// openStore opens the daemon's store as the daemon does (this package is
// imported by the daemon's own tests, so it cannot import the daemon).
func openStore(ctx context.Context, cfg *config.Config) (store.Store, error) {
	return storeopen.Open(ctx, cfg)
}

// CheckStore checks a tenant's quota counters against its records and
// collects the HSM keys its records own. Call it while no operation runs.
func CheckStore(octx context.Context, st store.Store, tenant string) (*StoreState, []string, error) {
	var bad []string
	res := make([]string, 0, len(quotaKinds))
	for r := range quotaKinds {
		res = append(res, r)
	}
	sort.Strings(res)
	for _, q := range res {
		used, err := st.QuotaUsage(octx, tenant, q)
		if err != nil {
			return nil, nil, fmt.Errorf("quota %s: %w", q, err)
		}
		n, err := st.CountRecords(octx, quotaKinds[q], tenant)
		if err != nil {
			return nil, nil, fmt.Errorf("count %s: %w", quotaKinds[q], err)
		}
		if used != n {
			bad = append(bad, fmt.Sprintf("quota %s says %d in use, %d %s records exist", q, used, n, quotaKinds[q]))
		}
	}
	ss := &StoreState{Owned: map[string]string{}}
	for _, kind := range keyOwnerKinds {
		page, err := st.List(octx, storeQuery(kind, tenant))
		if err != nil {
			return nil, nil, fmt.Errorf("list %s: %w", kind, err)
		}
		for _, rec := range page.Records {
			if k := rec.Fields[signer.KeyField]; k != "" {
				if prev, dup := ss.Owned[k]; dup {
					bad = append(bad, fmt.Sprintf("HSM key %s owned by both %s and %s/%s", k, prev, kind, rec.ID))
				}
				ss.Owned[k] = kind + "/" + rec.ID
			}
		}
	}
	// The event checkpoint key belongs to the platform, not the tenant.
	cpk, err := st.List(octx, storeQuery(signer.RecordCheckpointKey, store.PlatformTenant))
	if err != nil {
		return nil, nil, fmt.Errorf("list %s: %w", signer.RecordCheckpointKey, err)
	}
	for _, rec := range cpk.Records {
		if k := rec.Fields[signer.KeyField]; k != "" {
			ss.Owned[k] = signer.RecordCheckpointKey + "/" + rec.ID
		}
	}
	intents, err := st.ListIntents(octx)
	if err != nil {
		return nil, nil, fmt.Errorf("list intents: %w", err)
	}
	ss.Intents = len(intents)
	return ss, bad, nil
}

// leafWrapKeyID is the CKA_ID of the AES key that seals PCA leaf keys; it
// belongs to no record.
const leafWrapKeyID = "hsmca-pca-leaf-key-wrap"

// CheckHSM compares the token's objects with the keys records own: no key
// without a record (the reconciler destroyed every leftover), no record
// without its key.
func CheckHSM(objs []Object, owned map[string]string) (bad []string, remnants int) {
	present := map[string]bool{}
	for _, o := range objs {
		if o.Remnant {
			// The daemon sweeps these at start-up (hsm.SweepRemnants).
			remnants++
			bad = append(bad, fmt.Sprintf("empty HSM object shell (class %s) left after start-up: %s", o.Class, o.Material))
			continue
		}
		switch o.Class {
		case "private", "public":
			if _, ok := owned[o.ID]; !ok {
				bad = append(bad, fmt.Sprintf("HSM %s key %s (%s) has no committed resource %s", o.Class, o.ID, o.Label, o.Material))
			}
			if o.Class == "private" {
				present[o.ID] = true
			}
		case "secret":
			// A token without AES-GCM keeps the wrapping key's HMAC key
			// beside it.
			if o.ID != leafWrapKeyID && o.ID != leafWrapKeyID+"#mac" {
				bad = append(bad, fmt.Sprintf("HSM secret key %s (%s) is not the leaf wrapping key", o.ID, o.Label))
			}
		default:
			bad = append(bad, fmt.Sprintf("unexpected HSM object of class %s: %s (%s) %s", o.Class, o.ID, o.Label, o.Material))
		}
	}
	for id, who := range owned {
		if !present[id] {
			bad = append(bad, fmt.Sprintf("%s owns HSM key %s, which is missing", who, id))
		}
	}
	sort.Strings(bad)
	return bad, remnants
}

// Object is one object on the token.
type Object struct {
	Class string `json:"class"` // private, public, secret or a CKO_ number
	ID    string `json:"id"`
	Label string `json:"label"`
	// Material lists the key-material attributes that hold a value, for
	// objects without an id (what a crash during creation left).
	Material string `json:"material,omitempty"`
	// Remnant marks an object with no id, no label and no key material:
	// SoftHSM2's file store writes a new object in several steps, so a
	// SIGKILL during a key creation can leave such an empty shell.
	Remnant bool `json:"remnant,omitempty"`
}

// material describes the key-material attributes of an object and says
// whether any holds a value. A sensitive CKA_VALUE cannot be read, but a
// usable key also has its curve (CKA_EC_PARAMS) or modulus, which can.
func material(p *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle) (string, bool) {
	var parts []string
	has := false
	for _, a := range []struct {
		name string
		typ  uint
	}{{"KEY_TYPE", pkcs11.CKA_KEY_TYPE}, {"VALUE", pkcs11.CKA_VALUE}, {"EC_POINT", pkcs11.CKA_EC_POINT},
		{"EC_PARAMS", pkcs11.CKA_EC_PARAMS}, {"MODULUS", pkcs11.CKA_MODULUS}, {"SENSITIVE", pkcs11.CKA_SENSITIVE},
		{"PRIVATE_EXPONENT", pkcs11.CKA_PRIVATE_EXPONENT}} {
		v, err := p.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(a.typ, nil)})
		switch {
		case err != nil:
			parts = append(parts, a.name+"="+err.Error())
		case len(v) == 1:
			parts = append(parts, fmt.Sprintf("%s=%d bytes", a.name, len(v[0].Value)))
			if a.typ != pkcs11.CKA_KEY_TYPE && a.typ != pkcs11.CKA_SENSITIVE && len(v[0].Value) > 0 {
				has = true
			}
		}
	}
	return strings.Join(parts, " "), has
}

// Token names the token to list and how to log in.
type Token struct {
	Module, Label, PINFile string
	// Env is what a process loading Module needs (SOFTHSM2_CONF, the
	// p11-kit server address).
	Env []string
}

const helperEnv = "HSMCA_CHAOS_LIST_OBJECTS"

// HelperMain serves ListObjects in a child process; call it first thing in
// TestMain. A SoftHSM2 library loaded in a process does not see objects that
// other processes create after it opened the token, so every listing is a
// fresh process.
func HelperMain() {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		return
	}
	var tok Token
	if err := json.Unmarshal([]byte(spec), &tok); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	objs, err := listObjects(tok)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(objs)
	os.Exit(0)
}

// ListObjects lists every object on the token from a fresh process (this
// executable, which must call HelperMain).
func ListObjects(tok Token) ([]Object, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	spec, _ := json.Marshal(tok)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), tok.Env...), helperEnv+"="+string(spec))
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("list token objects: %v: %s", err, errb.String())
	}
	var objs []Object
	if err := json.Unmarshal(out, &objs); err != nil {
		return nil, fmt.Errorf("list token objects: %v: %s", err, out)
	}
	return objs, nil
}

func listObjects(tok Token) ([]Object, error) {
	raw, err := os.ReadFile(tok.PINFile)
	if err != nil {
		return nil, fmt.Errorf("PIN file: %w", err)
	}
	pin := strings.TrimSpace(strings.SplitN(string(raw), "\n", 2)[0])
	p := pkcs11.New(tok.Module)
	if p == nil {
		return nil, fmt.Errorf("cannot load %s", tok.Module)
	}
	defer p.Destroy()
	if err := p.Initialize(); err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	defer p.Finalize()
	slots, err := p.GetSlotList(true)
	if err != nil {
		return nil, err
	}
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil || ti.Label != tok.Label {
			continue
		}
		sh, err := p.OpenSession(s, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			return nil, fmt.Errorf("open session: %w", err)
		}
		defer p.CloseSession(sh)
		if err := p.Login(sh, pkcs11.CKU_USER, pin); err != nil {
			return nil, fmt.Errorf("login: %w", err)
		}
		defer p.Logout(sh)
		if err := p.FindObjectsInit(sh, nil); err != nil {
			return nil, err
		}
		var handles []pkcs11.ObjectHandle
		for {
			hs, _, err := p.FindObjects(sh, 100)
			if err != nil {
				return nil, err
			}
			if len(hs) == 0 {
				break
			}
			handles = append(handles, hs...)
		}
		if err := p.FindObjectsFinal(sh); err != nil {
			return nil, err
		}
		out := []Object{}
		for _, h := range handles {
			// One attribute at a time: an object a crash left half-written
			// may lack some, and one missing attribute fails a whole call.
			a := make([][]byte, 3)
			for i, typ := range []uint{pkcs11.CKA_CLASS, pkcs11.CKA_ID, pkcs11.CKA_LABEL} {
				v, err := p.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(typ, nil)})
				if err == nil && len(v) == 1 {
					a[i] = v[0].Value
				} else {
					o := fmt.Sprintf("<attribute %#x unreadable: %v>", typ, err)
					a[i] = []byte(o)
				}
			}
			o := Object{ID: string(a[1]), Label: string(a[2])}
			if len(a[1]) == 0 || strings.HasPrefix(o.ID, "<attribute") {
				var has bool
				o.Material, has = material(p, sh, h)
				o.Remnant = !has && (len(a[2]) == 0 || strings.HasPrefix(o.Label, "<attribute"))
			}
			switch cls := classOf(a[0]); cls {
			case pkcs11.CKO_PRIVATE_KEY:
				o.Class = "private"
			case pkcs11.CKO_PUBLIC_KEY:
				o.Class = "public"
			case pkcs11.CKO_SECRET_KEY:
				o.Class = "secret"
			default:
				o.Class = fmt.Sprintf("CKO_%#x(%s)", cls, hex.EncodeToString(a[0]))
			}
			out = append(out, o)
		}
		return out, nil
	}
	return nil, fmt.Errorf("token %q not found", tok.Label)
}

func classOf(v []byte) uint {
	var n uint
	// CK_ULONG in host byte order (little-endian on the platforms we run).
	for i := len(v) - 1; i >= 0; i-- {
		n = n<<8 | uint(v[i])
	}
	return n
}
