package api

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/hsmca/hsmca/signer"
	"github.com/hsmca/hsmca/store"
	"github.com/hsmca/hsmca/store/boltstore"
)

// An answer written beside a check that then refuses goes nowhere: the
// caller gets the refusal alone, without the status, the body or any
// header the handler set; one beside a check that confirms goes out as
// written.
func TestGateWriterDropsARefusedAnswer(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{Indexes: signer.StoreIndexes()})
	require.NoError(t, err)
	core := signer.New(signer.Options{Store: st})
	t.Cleanup(func() { core.Close(); st.Close() })
	ops := signer.WithCaller(context.Background(), signer.Caller{Principal: "ops:test"})
	secret, tok, err := core.CreateToken(ops, "acme", []string{signer.RoleSigner}, nil)
	require.NoError(t, err)
	_, _, _, err = core.AuthenticateTokenAhead(t.Context(), secret, 0, 0)
	require.NoError(t, err)

	s := &server{log: slog.New(slog.DiscardHandler)}
	gin.SetMode(gin.ReleaseMode)
	var check *signer.CredentialCheck
	r := gin.New()
	r.POST("/x", func(c *gin.Context) { s.nextBeside(c, native, check) }, func(c *gin.Context) {
		c.Header("Location", "/x/made-beside")
		c.Header("ETag", `"beside"`)
		c.JSON(http.StatusCreated, gin.H{"id": "made-beside"})
	})
	serve := func() *httptest.ResponseRecorder {
		_, chk, _, err := core.AuthenticateTokenAhead(t.Context(), secret, 0, 0)
		require.NoError(t, err)
		require.NotNil(t, chk)
		check = chk
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest("POST", "/x", nil))
		return w
	}

	w := serve()
	assert.Equal(t, http.StatusCreated, w.Code, "confirmed: the handler's answer")
	assert.Equal(t, "/x/made-beside", w.Header().Get("Location"))

	require.NoError(t, st.Delete(t.Context(), "apitoken", store.PlatformTenant, tok.ID, store.WriteOpts{}))
	w = serve()
	assert.Equal(t, http.StatusUnauthorized, w.Code, "refused: the check's answer")
	assert.NotContains(t, w.Body.String(), "made-beside")
	assert.Empty(t, w.Header().Get("Location"))
	assert.Empty(t, w.Header().Get("ETag"))
	assert.Contains(t, w.Body.String(), "invalid or expired token")
}
