#!/usr/bin/env bash
# Verifies a Security Event Token from scimd against the server's JWKS and
# prints its claims: curl for the JWKS, openssl for the Ed25519 signature,
# python3 (standard library only) for base64url and JSON.
#
#   examples/verify-set.sh "$SET" http://127.0.0.1:8080
set -euo pipefail
set_token=$1
base=${2:-http://127.0.0.1:8080}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
IFS=. read -r header payload signature <<<"$set_token"
b64url() { python3 -c 'import base64,sys; s=sys.argv[1]; sys.stdout.buffer.write(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))' "$1"; }
kid=$(b64url "$header" | python3 -c 'import json,sys; h=json.load(sys.stdin); assert h["typ"] == "secevent+jwt" and h["alg"] == "EdDSA", h; print(h["kid"])')
x=$(curl -fsS "$base/.well-known/jwks.json" |
  python3 -c 'import json,sys; print(next(k["x"] for k in json.load(sys.stdin)["keys"] if k["kid"] == sys.argv[1]))' "$kid")
# An Ed25519 public key as SubjectPublicKeyInfo: a fixed 12-byte prefix, then the 32 key bytes.
{ printf '\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00'; b64url "$x"; } >"$work/key.der"
openssl pkey -pubin -inform DER -in "$work/key.der" -out "$work/key.pem"
printf '%s' "$header.$payload" >"$work/signed"
b64url "$signature" >"$work/signature"
openssl pkeyutl -verify -pubin -inkey "$work/key.pem" -rawin -in "$work/signed" -sigfile "$work/signature" >&2
b64url "$payload" | python3 -m json.tool
