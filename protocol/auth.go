package protocol

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"fmt"
	"hash"
)

// hmacHashes maps cram-hmac-alg names (the kernel crypto API's, which DRBD
// wraps as "hmac(NAME)") to Go hashes.
var hmacHashes = map[string]func() hash.Hash{
	"md5":      md5.New,
	"sha1":     sha1.New,
	"sha224":   sha256.New224,
	"sha256":   sha256.New,
	"sha384":   sha512.New384,
	"sha512":   sha512.New,
	"sha3-224": func() hash.Hash { return sha3.New224() },
	"sha3-256": func() hash.Hash { return sha3.New256() },
	"sha3-384": func() hash.Hash { return sha3.New384() },
	"sha3-512": func() hash.Hash { return sha3.New512() },
}

func hmacHash(alg string) (func() hash.Hash, error) {
	if h, ok := hmacHashes[alg]; ok {
		return h, nil
	}
	if alg == "crc32c" || alg == "crc32" {
		// NB: the kernel's hmac template refuses hashes whose digest is
		// larger than their block size (crc32c: 4 > 1), so DRBD cannot
		// use these as cram-hmac-alg either.
		return nil, fmt.Errorf("%w: cram-hmac-alg %q: the kernel cannot build hmac(%s) either", ErrUnknownAlg, alg, alg)
	}
	return nil, fmt.Errorf("%w: cram-hmac-alg %q", ErrUnknownAlg, alg)
}

// Response computes the P_AUTH_RESPONSE payload for the peer's
// P_AUTH_CHALLENGE: HMAC-alg keyed with the shared secret over the whole
// challenge, as drbd_do_auth does. alg is the cram-hmac-alg from drbd.conf
// (md5, sha1, sha224, sha256, sha384, sha512, sha3-224/256/384/512).
//
// NB: DRBD keys the HMAC with strlen(shared-secret), so a secret is used up
// to its first NUL; drbd.conf secrets never contain one.
func Response(alg, secret string, challenge []byte) ([]byte, error) {
	h, err := hmacHash(alg)
	if err != nil {
		return nil, err
	}
	for i := 0; i < len(secret); i++ {
		if secret[i] == 0 {
			secret = secret[:i]
			break
		}
	}
	m := hmac.New(h, []byte(secret))
	m.Write(challenge)
	return m.Sum(nil), nil
}

// ResponseSize is the length of a P_AUTH_RESPONSE for alg: the peer's must
// have exactly this length.
func ResponseSize(alg string) (int, error) {
	h, err := hmacHash(alg)
	if err != nil {
		return 0, err
	}
	return h().Size(), nil
}

// VerifyResponse reports whether response is the right answer to the
// challenge we sent, in constant time.
func VerifyResponse(alg, secret string, ourChallenge, response []byte) (bool, error) {
	want, err := Response(alg, secret, ourChallenge)
	if err != nil {
		return false, err
	}
	return hmac.Equal(want, response), nil
}
