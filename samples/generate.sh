#!/usr/bin/env bash
# Regenerates the sample bundle for https://mail.example.test with the openssl command:
#   root CA -> intermediate CA -> leaf, ECDSA P-256, all valid from 2025-01-01 and until
#   2125 (root), 2115 (intermediate), 2105 (leaf), so the README command keeps passing for
#   decades and on machines whose clock is somewhat behind.
# Output: cert.pem (leaf; also cert.der), key.pem (its PKCS#8 key), ca.pem (intermediate then root).
# The keys are published on purpose: these files are for demonstrations and tests only.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/new"
touch "$work/index.txt"
echo 1000 > "$work/serial"
cat > "$work/ca.cnf" <<CNF
[ ca ]
default_ca = sample
[ sample ]
database = $work/index.txt
new_certs_dir = $work/new
serial = $work/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = none
[ policy_any ]
commonName = supplied
organizationName = optional
[ root_ext ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ inter_ext ]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ leaf_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:mail.example.test
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
sign() { # csr out ext start end issuer-cert-or-selfsign issuer-key
    local issuer=()
    if [ "$6" = selfsign ]; then issuer=(-selfsign); else issuer=(-cert "$6"); fi
    openssl ca -batch -notext -preserveDN -config "$work/ca.cnf" -in "$1" -out "$2" \
        -extensions "$3" -startdate "$4" -enddate "$5" "${issuer[@]}" -keyfile "$7" 2>/dev/null
}

key "$work/root.key"
key "$work/inter.key"
key key.pem
openssl req -new -key "$work/root.key" -subj "/O=bmcert samples/CN=bmcert Sample Root CA" -out "$work/root.csr"
openssl req -new -key "$work/inter.key" -subj "/O=bmcert samples/CN=bmcert Sample Intermediate CA" -out "$work/inter.csr"
openssl req -new -key key.pem -subj "/CN=mail.example.test" -out "$work/leaf.csr"

sign "$work/root.csr" "$work/root.pem" root_ext 20250101000000Z 21250101000000Z selfsign "$work/root.key"
sign "$work/inter.csr" "$work/inter.pem" inter_ext 20250101000000Z 21150101000000Z "$work/root.pem" "$work/root.key"
sign "$work/leaf.csr" cert.pem leaf_ext 20250101000000Z 21050101000000Z "$work/inter.pem" "$work/inter.key"

cat "$work/inter.pem" "$work/root.pem" > ca.pem
openssl x509 -in cert.pem -outform DER -out cert.der
chmod 0644 cert.pem ca.pem key.pem
openssl verify -CAfile "$work/root.pem" -untrusted "$work/inter.pem" cert.pem
