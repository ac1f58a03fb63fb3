package chaos

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"strings"
	"sync"
)

// Resource kinds the workload drives, with the API path of one object.
const (
	KindKey       = "key"
	KindDTSRoot   = "dts_root"
	KindDTSSigner = "dts_signer"
	KindAPIG      = "apig"
	KindPCACA     = "pca_ca"
	KindPCACert   = "pca_cert"
)

// gone is the state of a deleted resource.
const gone = "gone"

// resource is what the client knows of one object: what the daemon last
// acknowledged, and what an operation that got no answer may have done.
type resource struct {
	mu    sync.Mutex // one operation at a time per resource
	kind  string
	id    string
	snap  map[string]any // the object as last seen
	state string         // acknowledged state
	// maybe holds states an operation left without an answer (the daemon
	// died) may have produced; the next check accepts any of them.
	maybe []string
	// adopted is set for objects the client found by listing: their
	// creation was never acknowledged.
	adopted bool
}

// model is the client's record of everything the daemon acknowledged.
type model struct {
	mu  sync.Mutex
	res map[string]*resource
}

func newModel() *model { return &model{res: map[string]*resource{}} }

func (m *model) add(kind, id string, snap map[string]any, adopted bool) *resource {
	r := &resource{kind: kind, id: id, snap: snap, state: stateOf(kind, snap), adopted: adopted}
	m.mu.Lock()
	m.res[id] = r
	m.mu.Unlock()
	return r
}

func (m *model) get(id string) *resource {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.res[id]
}

func (m *model) drop(id string) {
	m.mu.Lock()
	delete(m.res, id)
	m.mu.Unlock()
}

// all returns the resources of a kind ("" for all), sorted by id.
func (m *model) all(kind string) []*resource {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*resource
	for _, r := range m.res {
		if kind == "" || r.kind == kind {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// count counts live resources of a kind matching ok.
func (m *model) count(kind string, ok func(state string) bool) int {
	n := 0
	for _, r := range m.all(kind) {
		r.mu.Lock()
		if r.state != gone && (ok == nil || ok(r.state)) {
			n++
		}
		r.mu.Unlock()
	}
	return n
}

// pick locks and returns a random idle resource of kind whose state
// satisfies ok, or nil. The caller unlocks it.
func (m *model) pick(rng *rand.Rand, kind string, ok func(r *resource) bool) *resource {
	cands := m.all(kind)
	rng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	for _, r := range cands {
		if !r.mu.TryLock() {
			continue
		}
		if r.state != gone && len(r.maybe) == 0 && (ok == nil || ok(r)) {
			return r
		}
		r.mu.Unlock()
	}
	return nil
}

// stateOf is the mutable part of an object that operations change.
func stateOf(kind string, obj map[string]any) string {
	switch kind {
	case KindKey:
		s, _ := obj["state"].(string)
		return s
	case KindDTSRoot, KindDTSSigner:
		return fmt.Sprint(obj["active"])
	case KindPCACA, KindPCACert:
		s, _ := obj["status"].(string)
		return s
	}
	return "present"
}

// mutable lists the fields an operation of the workload may change; every
// other field must survive any crash unchanged.
func mutable(kind string, before, after map[string]any) []string {
	switch kind {
	case KindKey:
		return []string{"state"}
	case KindDTSRoot, KindDTSSigner:
		return []string{"active"}
	case KindPCACA:
		f := []string{"status", "delete_time", "freeze_flag"}
		if before["status"] == "PENDING" || after["status"] == "PENDING" {
			// Activation fills in the certificate's fields.
			f = append(f, "issuer_id", "issuer_name", "serial_number", "not_before", "not_after",
				"path_length", "signature_algorithm", "gen_mode")
		}
		return f
	case KindPCACert:
		return []string{"status", "revoke_reason", "revoke_time", "delete_time", "freeze_flag"}
	}
	return nil
}

// diff names the fields that differ outside the mutable set.
func diff(kind string, before, after map[string]any) []string {
	skip := map[string]bool{}
	for _, f := range mutable(kind, before, after) {
		skip[f] = true
	}
	keys := map[string]bool{}
	for k := range before {
		keys[k] = true
	}
	for k := range after {
		keys[k] = true
	}
	var out []string
	for k := range keys {
		if skip[k] {
			continue
		}
		if !reflect.DeepEqual(before[k], after[k]) {
			b, _ := json.Marshal(before[k])
			a, _ := json.Marshal(after[k])
			out = append(out, fmt.Sprintf("%s: was %s, now %s", k, clip(string(b)), clip(string(a))))
		}
	}
	sort.Strings(out)
	return out
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func join(list []string) string { return strings.Join(list, ", ") }
