package apig

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Names follow Huawei's CertificateForm rule: 4 to 50 characters (not
// bytes) of Chinese characters (U+4E00..U+9FA5), English letters, digits
// and '_', starting with an English letter or a Chinese character.
func TestValidName(t *testing.T) {
	for _, ok := range []string{
		"cert", "cert_demo", "Cert_01", "证书名称", "证书_1", "a证书_", "证a_1",
		strings.Repeat("证", 50), "a" + strings.Repeat("_", 49),
		"\u4e00abc", "\u9fa5abc", // the range's ends
	} {
		assert.True(t, validName(ok), "%q", ok)
	}
	for _, bad := range []string{
		"", "abc", "证书名", // under four characters
		strings.Repeat("证", 51), "a" + strings.Repeat("b", 50), // over fifty
		"_cert", "1cert", "１cert", // first character not a letter
		"cert-one", "cert one", "cert.one", "证书\u3000名称", // not in the rule
		"сертификат", "café_cert", "Ωmega", "しょうめい", "증명서이름", // letters outside Huawei's rule
		"ｃｅｒｔ", "cert１２", // full-width letters and digits
		"\u9fa6abc", "\u3400abc", "\U00020000abc", // Han outside U+4E00..U+9FA5
		"cert\u200b", "cert\x00", "cert\xff", // format, control, invalid UTF-8
	} {
		assert.False(t, validName(bad), "%q", bad)
	}
}
