package families

import (
	"testing"

	"github.com/hsmca/hsmca/signer"
	"github.com/stretchr/testify/assert"
)

// The daemon, the ops CLI, the bench and the chaos checks open the store
// with this list: it must name the indexes the engine's lists rely on.
func TestIndexes(t *testing.T) {
	var names []string
	for _, f := range All() {
		names = append(names, f.Name)
	}
	assert.Equal(t, []string{"keys", "apig", "dts", "pca", "admins"}, names)
	assert.ElementsMatch(t, signer.StoreIndexes(signer.BuiltinFamilies()...), Indexes())
	assert.Len(t, Indexes(), 10)
}
