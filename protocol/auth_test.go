package protocol

import (
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestResponseVectors(t *testing.T) {
	t.Parallel()
	// RFC 2202 and RFC 4231 test case 2: key "Jefe".
	data := []byte("what do ya want for nothing?")
	for alg, want := range map[string]string{
		"md5":    "750c783e6ab0b503eaa86e310a5db738",
		"sha1":   "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
		"sha224": "a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44",
		"sha256": "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
		"sha384": "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
		"sha512": "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
	} {
		got, err := Response(alg, "Jefe", data)
		require.NoError(t, err, alg)
		require.Equal(t, want, hex.EncodeToString(got), alg)
		n, err := ResponseSize(alg)
		require.NoError(t, err)
		require.Len(t, got, n, alg)
	}
	for _, alg := range []string{"sha3-224", "sha3-256", "sha3-384", "sha3-512"} {
		got, err := Response(alg, "Jefe", data)
		require.NoError(t, err, alg)
		n, err := ResponseSize(alg)
		require.NoError(t, err)
		require.Len(t, got, n)
		require.LessOrEqual(t, n, MaxDigestSize)
	}
}

func TestResponseSecretStopsAtNUL(t *testing.T) {
	t.Parallel()
	a, err := Response("sha1", "secret\x00ignored", []byte("challenge"))
	require.NoError(t, err)
	b, err := Response("sha1", "secret", []byte("challenge"))
	require.NoError(t, err)
	require.Equal(t, b, a, "DRBD keys with strlen(shared-secret)")
}

func TestResponseUnknownAlg(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{"crc32c", "crc32", "whirlpool", "", "SHA1"} {
		_, err := Response(alg, "s", nil)
		require.ErrorIs(t, err, ErrUnknownAlg, alg)
		_, err = ResponseSize(alg)
		require.ErrorIs(t, err, ErrUnknownAlg, alg)
		_, err = VerifyResponse(alg, "s", nil, nil)
		require.ErrorIs(t, err, ErrUnknownAlg, alg)
	}
	_, err := Response("crc32c", "s", nil)
	require.ErrorContains(t, err, "kernel cannot build hmac(crc32c)")
}
