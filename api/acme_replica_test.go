package api_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/internal/apitest"
)

// Two daemons on one Redis serve one directory as replicas: an account
// made on one orders on the other, a nonce from one is good on the other
// once only, and a certificate ordered on one is finalized on the other
// and downloaded from the first.
func TestACMEReplicasShareState(t *testing.T) {
	const base = "http://acme-replicas.test"
	a := newACMEWith(t, "redis", map[string]any{"allowed_domains": []string{"acme.test"}}, apitest.Options{PublicBaseURL: base})
	b := *a
	b.pcaEnv = newPCA(t, "redis", apitest.Options{Redis: a.Redis, Token: a.Token, PublicBaseURL: base, Configure: a.configure})
	onA, onB := a.client(nil), &acmeClient{e: &b}
	onA.register()
	onB.key, onB.kid = onA.key, onA.kid

	// A nonce from A, used on B, then again on A.
	n, _ := onA.Nonce()
	onB.nonce = n
	body := onB.sign(onB.key, onB.url(onB.path(onB.kid)), []byte{}, false, true)
	r := onB.postBody(onB.path(onB.kid), body)
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	acmeProblem(t, onA.postBody(onA.path(onA.kid), body), http.StatusBadRequest, "badNonce")

	o, obj := onB.order("replica.acme.test")
	ch := onA.solveHTTP(obj["authorizations"].([]any)[0].(string))
	require.Equal(t, "valid", ch["status"])
	r = onB.post(o+"/finalize", map[string]any{"csr": csrFor(t, newKey(t), "", "replica.acme.test")}, false)
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	r = onA.post(onA.path(r.Map(t)["certificate"].(string)), nil, false)
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	pcaParseCert(t, string(r.Body))
}
