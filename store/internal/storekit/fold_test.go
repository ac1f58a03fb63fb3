package storekit

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/hsmca/hsmca/store"
)

func TestContainsFoldMatchesLowerContains(t *testing.T) {
	cases := [][2]string{
		{"", ""}, {"abc", ""}, {"", "a"}, {"Alpha-Two", "ALPHA"}, {"alpha", "pha"}, {"alpha", "phx"},
		{"ab", "abc"}, {"İstanbul", "i"}, {"KELVIN \u212a", "kelvin k"}, {"Straße", "STRASSE"},
		{"ΣΊΣΥΦΟΣ", "σίσυφος"}, {"bad \xff byte", "\ufffd"}, {"bad \xff byte", "D \xfe B"},
		{"\xc3", "\xc3"}, {"aaaaaaab", "aaab"}, {"日本語テキスト", "テキ"}, {"x", "X"},
	}
	for _, c := range cases {
		want := strings.Contains(strings.ToLower(c[0]), strings.ToLower(c[1]))
		assert.Equal(t, want, ContainsFold(c[0], c[1]), "%q in %q", c[1], c[0])
		assert.Equal(t, want, MatchValue(c[0], store.Filter{Value: c[1], Match: store.Contains}))
	}
}

// A Contains filter is checked on every key of a range: it must not
// allocate per key, whatever the needle.
func TestContainsFoldDoesNotAllocate(t *testing.T) {
	needle := strings.Repeat("Ab", 32)
	keys := []string{"www.Example.COM", strings.Repeat("aB", 40), "Ünïcödé name"}
	allocs := testing.AllocsPerRun(100, func() {
		for _, k := range keys {
			MatchValue(k, store.Filter{Value: needle, Match: store.Contains})
		}
	})
	assert.Zero(t, allocs)
}

func FuzzContainsFold(f *testing.F) {
	f.Add("Alpha-Two", "ALPHA")
	f.Add("İ\u212a\xff", "ik\ufffd")
	f.Fuzz(func(t *testing.T, v, needle string) {
		want := strings.Contains(strings.ToLower(v), strings.ToLower(needle))
		if got := ContainsFold(v, needle); got != want {
			t.Fatalf("ContainsFold(%q, %q) = %v, strings.Contains on lowered strings says %v", v, needle, got, want)
		}
	})
}

func BenchmarkContainsFilter(b *testing.B) {
	needle := strings.Repeat("x", 64)
	key := "Some Certificate Common Name.example.com"
	for b.Loop() {
		MatchValue(key, store.Filter{Value: needle, Match: store.Contains})
	}
}
