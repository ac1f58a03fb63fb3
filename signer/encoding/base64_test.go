package encoding

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecodeBase64Forms(t *testing.T) {
	want := []byte{0xfb, 0xff, 0xbe}
	for _, in := range []string{"+/++", "-_--", " +/+\n+ ", "+/++\r\n"} {
		got, err := DecodeBase64(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	got, err := DecodeBase64("aGk")
	require.NoError(t, err)
	assert.Equal(t, []byte("hi"), got)
	for _, in := range []string{"a", "aGl=", "!!!!", "aGk==="} {
		_, err := DecodeBase64(in)
		assert.Equal(t, Malformed, ReasonOf(err), in)
	}
}
