package hsm

import (
	"context"
	"strings"

	"github.com/miekg/pkcs11"
)

// SweepRemnants destroys the empty object shells a crash can leave on the
// token and returns how many it destroyed.
//
// Some modules (SoftHSM2's file object store) write a new object in
// several steps: first a file with default attributes, then the template,
// then the key material. A process killed in between leaves a key object
// with no CKA_ID, no CKA_LABEL and no key material, or one whose
// attributes cannot be read at all. No application can use such a shell,
// and no intent names it (it has no id); left alone they accumulate, and
// SoftHSM2 has been seen to fail later key generations with
// CKR_GENERAL_ERROR while they are there.
//
// A kill can also land between the steps that write a whole key: SoftHSM2
// has left a public key with its label, curve and point but an empty
// CKA_ID. Generate and Import always give a key an id, and every key is
// found by it, so a key object under hsmca's own label prefix (LabelPrefix)
// without one was cut short, and its creation's intent (which names the
// id) cannot find it to settle it: it is destroyed too. So is a public key
// left with its point but with neither id, label nor curve. Any other key
// object with an id, a label, a curve or a modulus is never touched.
//
// It runs when no creation of this process can be under way (start-up, a
// rebuild, both under keyMu). Replicas sharing one SoftHSM2 token
// directory are separate processes: a replica starting while another
// writes a key could catch that key between its steps, as it can an
// empty shell.
func (h *HSM) SweepRemnants(ctx context.Context) (int, error) {
	keyMu.Lock()
	defer keyMu.Unlock()
	b, err := h.acquire(ctx)
	if err != nil {
		return 0, err
	}
	// One session for the search, the reads and the destructions: a shell
	// without CKA_TOKEN is a session object to SoftHSM2, and its handle
	// lives only as long as the session that found it.
	n := 0
	err = b.run(ctx, h.cfg.KeygenTimeout, "C_FindObjects", func(p *pkcs11.Ctx, s pkcs11.SessionHandle) error {
		n = 0
		objs, err := find(p, s, nil)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if !isRemnant(p, s, o) {
				continue
			}
			if err := p.DestroyObject(s, o); err != nil {
				if isSessionFault(err) {
					return err
				}
				continue
			}
			n++
		}
		return nil
	})
	if err != nil {
		// n is not read: a call past its deadline may still be counting.
		return 0, h.check(b, "sweep empty objects", err)
	}
	return n, nil
}

// LabelPrefix begins the CKA_LABEL of every key hsmca creates.
const LabelPrefix = "hsmca/"

// isRemnant says whether o is an empty shell: a key object (or an object
// whose class cannot be read) without id, label, curve or modulus, or a key
// object without an id under LabelPrefix.
func isRemnant(p *pkcs11.Ctx, s pkcs11.SessionHandle, o pkcs11.ObjectHandle) bool {
	// One attribute per call: a shell may lack any of them, and one
	// missing attribute fails a whole call.
	read := func(t uint) ([]byte, bool) {
		a, err := p.GetAttributeValue(s, o, []*pkcs11.Attribute{pkcs11.NewAttribute(t, nil)})
		if err != nil || len(a) != 1 {
			return nil, false
		}
		return a[0].Value, true
	}
	if cls, ok := read(pkcs11.CKA_CLASS); ok {
		switch bytesToUint(cls) {
		case pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY:
		default:
			return false
		}
	}
	if v, ok := read(pkcs11.CKA_ID); ok && len(v) > 0 {
		return false
	}
	if v, ok := read(pkcs11.CKA_LABEL); ok && len(v) > 0 {
		return strings.HasPrefix(string(v), LabelPrefix)
	}
	// A usable key shows its curve or its modulus (never sensitive); a
	// point alone, its curve left empty, is what a kill between the steps
	// leaves, and no token makes an EC key without a curve.
	for _, t := range []uint{pkcs11.CKA_EC_PARAMS, pkcs11.CKA_MODULUS} {
		if v, ok := read(t); ok && len(v) > 0 {
			return false
		}
	}
	return true
}
