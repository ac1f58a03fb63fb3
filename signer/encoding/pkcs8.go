package encoding

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
)

// Encrypted PKCS#8 (RFC 5958 EncryptedPrivateKeyInfo) with PBES2 (RFC
// 8018): PBKDF2 with HMAC-SHA256 derives an AES-256-CBC key. Go's standard
// library reads none of this and writes none of it, hence this file.

var (
	oidPBES2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

// pbkdf2Iterations follows current guidance for PBKDF2-HMAC-SHA256.
const pbkdf2Iterations = 600_000

type pbkdf2Params struct {
	Salt           []byte
	IterationCount int
	KeyLength      int `asn1:"optional"`
	PRF            pkix.AlgorithmIdentifier
}

type pbes2Params struct {
	KeyDerivationFunc pkix.AlgorithmIdentifier
	EncryptionScheme  pkix.AlgorithmIdentifier
}

type encryptedPrivateKeyInfo struct {
	Algorithm     pkix.AlgorithmIdentifier
	EncryptedData []byte
}

func rawParams(v any) (asn1.RawValue, error) {
	der, err := asn1.Marshal(v)
	if err != nil {
		return asn1.RawValue{}, err
	}
	return asn1.RawValue{FullBytes: der}, nil
}

// pad is a copy of b with PKCS#7 padding to the AES block size; the
// copy is what gets encrypted in place.
func pad(b []byte) []byte {
	n := aes.BlockSize - len(b)%aes.BlockSize
	out := make([]byte, len(b)+n)
	copy(out, b)
	for i := len(b); i < len(out); i++ {
		out[i] = byte(n)
	}
	return out
}

// EncryptPKCS8 encrypts a PKCS#8 PrivateKeyInfo under password and returns
// the PEM "ENCRYPTED PRIVATE KEY" block that OpenSSL and most TLS servers
// read.
func EncryptPKCS8(pkcs8 []byte, password string) ([]byte, error) {
	if password == "" {
		return nil, errors.New("empty password")
	}
	salt, iv := make([]byte, 16), make([]byte, aes.BlockSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	ct, err := seal(pkcs8, password, salt, iv)
	if err != nil {
		return nil, err
	}
	der, err := pbes2Info(salt, iv, ct)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}), nil
}

// seal encrypts plaintext with AES-256-CBC under the PBKDF2 key of
// password and salt.
func seal(plaintext []byte, password string, salt, iv []byte) ([]byte, error) {
	key, err := pbkdf2.Key(sha256.New, password, salt, pbkdf2Iterations, 32)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	ct := pad(plaintext)
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, ct)
	return ct, nil
}

// pbes2Info is the DER EncryptedPrivateKeyInfo of ciphertext ct, naming
// the scheme and its parameters so that a reader can derive the key.
func pbes2Info(salt, iv, ct []byte) ([]byte, error) {
	nullParams := asn1.RawValue{Tag: asn1.TagNull}
	kdf, err := rawParams(pbkdf2Params{Salt: salt, IterationCount: pbkdf2Iterations, KeyLength: 32,
		PRF: pkix.AlgorithmIdentifier{Algorithm: oidHMACSHA256, Parameters: nullParams}})
	if err != nil {
		return nil, err
	}
	ivParam, err := rawParams(iv)
	if err != nil {
		return nil, err
	}
	params, err := rawParams(pbes2Params{
		KeyDerivationFunc: pkix.AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: kdf},
		EncryptionScheme:  pkix.AlgorithmIdentifier{Algorithm: oidAES256CBC, Parameters: ivParam},
	})
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(encryptedPrivateKeyInfo{
		Algorithm:     pkix.AlgorithmIdentifier{Algorithm: oidPBES2, Parameters: params},
		EncryptedData: ct,
	})
}
