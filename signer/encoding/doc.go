// Package encoding reads and writes the byte forms hsmca exchanges with
// its clients: PEM and DER certificates, CSRs, public and private keys,
// encrypted PKCS#8, JWK, the base64 alphabets and ECDSA signature forms.
// There is one reader of each, shared by every family, so that a fix to
// one (a form clients send, a limit, a secret to clear) reaches them all.
//
// It knows no family: refusals carry a Reason, and each family picks its
// own wire code for it. Nothing here talks to the HSM or the store.
package encoding
