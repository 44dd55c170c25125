#!/usr/bin/env bash
# Builds the seed corpora of the bundle fuzz targets from samples/ with the openssl command:
# every encoding the parsers accept (PEM, DER, BOM/CRLF, Bag Attributes, PKCS#1, SEC1,
# encrypted PKCS#8, legacy encryption, modern and legacy PKCS#12 with password "pw"); then
# the verify_path seeds (generated chains). `make-corpus.sh verify_path` builds only those.
set -euo pipefail
cd "$(dirname "$0")"
s=../samples
c=corpus
mkdir -p $c/certificate $c/key $c/ca $c/pkcs12
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

if [ "${1:-all}" != verify_path ]; then
cp $s/cert.pem $c/certificate/pem
cp $s/cert.der $c/certificate/der
cat $s/cert.pem $s/ca.pem > $c/certificate/chain
{ printf '\xef\xbb\xbfsubject=CN = mail.example.test\r\n'; sed 's/$/\r/' $s/cert.pem; } > $c/certificate/bom-crlf
cp $s/key.pem $c/certificate/swapped-key

cp $s/key.pem $c/key/pkcs8
openssl pkey -in $s/key.pem -outform DER -out $c/key/sec1-der
openssl ec -in $s/key.pem -out $c/key/sec1 2>/dev/null
{ openssl ecparam -name prime256v1; cat $c/key/sec1; } > $c/key/ec-parameters
openssl pkcs8 -topk8 -nocrypt -in $s/key.pem -outform DER -out $c/key/pkcs8-der
openssl pkcs8 -topk8 -in $s/key.pem -passout pass:pw -out $c/key/encrypted
openssl ec -in $s/key.pem -aes128 -passout pass:pw -out $c/key/legacy-encrypted 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out $work/rsa.pem 2>/dev/null
openssl pkey -in $work/rsa.pem -traditional -out $c/key/pkcs1
openssl genpkey -algorithm ED25519 -out $c/key/ed25519
cp $s/cert.pem $c/key/swapped-cert

cp $s/ca.pem $c/ca/pem
openssl x509 -in $s/ca.pem -outform DER -out $c/ca/der
openssl pkcs12 -export -in $s/cert.pem -inkey $s/key.pem -certfile $s/ca.pem -passout pass:pw -out $work/b.p12
openssl pkcs12 -in $work/b.p12 -passin pass:pw -nokeys -cacerts > $c/ca/bag-attributes

openssl pkcs12 -export -in $s/cert.pem -inkey $s/key.pem -certfile $s/ca.pem -passout pass:pw -out $c/pkcs12/modern
openssl pkcs12 -export -legacy -in $s/cert.pem -inkey $s/key.pem -certfile $s/ca.pem -passout pass:pw -out $c/pkcs12/legacy
openssl pkcs12 -export -in $s/cert.pem -inkey $s/key.pem -passout pass: -out $c/pkcs12/no-password
fi

# --- verify_path: generated chains, each certificate behind a 2-byte big-endian header whose
# top 2 bits say where it goes (0 CA file, 1 certificate file, 2 platform roots, 3 CA file
# and anchor) and whose low 14 bits are its DER length; the first record is the leaf. Dates
# are set with `openssl ca` so the chains are valid at the target's time (2026-06-01);
# crates/bmcert-verify/tests/fuzz_seeds.rs checks each seed's verdict (its file name).
v=$c/verify_path
mkdir -p $v
rm -f $v/*
p=$work/pki
mkdir -p $p/new
cat > $p/ca.cnf <<CNF
[ca]
default_ca = CA
[CA]
database = $p/index.txt
new_certs_dir = $p/new
serial = $p/serial
default_md = \${ENV::MD}
policy = any
unique_subject = no
email_in_dn = no
[any]
commonName = supplied
organizationName = optional
[root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[inter]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[constrained]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
nameConstraints = critical,permitted;DNS:example.test
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:\${ENV::SAN}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
: > $p/index.txt
echo 1000 > $p/serial
# issue NAME ISSUER(or -selfsign) SECTION CN [END [SAN [MD]]]: NAME.der and NAME.key in $p
issue() {
    local name=$1 issuer=$2 ext=$3 cn=$4 end=${5:-20400101000000Z}
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $p/$name.key \
        -subj "/O=bmcert fuzz seeds/CN=$cn" -out $p/$name.csr 2>/dev/null
    local signer=(-cert $p/$issuer.pem -keyfile $p/$issuer.key)
    [ "$issuer" = -selfsign ] && signer=(-selfsign -keyfile $p/$name.key)
    SAN=${6:-mail.example.test} MD=${7:-sha256} openssl ca -batch -notext -config $p/ca.cnf \
        -extensions "$ext" -startdate 20200101000000Z -enddate "$end" "${signer[@]}" \
        -in $p/$name.csr -out $p/$name.pem 2>/dev/null
    openssl x509 -in $p/$name.pem -outform DER -out $p/$name.der
}
issue root -selfsign root "bmcert Fuzz Root"
issue inter root inter "bmcert Fuzz Intermediate"
issue leaf inter leaf mail.example.test
issue other-root -selfsign root "bmcert Fuzz Other Root"
issue old-inter root inter "bmcert Fuzz Old Intermediate" 20250101000000Z
issue old-leaf old-inter leaf mail.example.test
issue nc-inter root constrained "bmcert Fuzz Constrained Intermediate"
issue nc-leaf nc-inter leaf mail.example.test
issue nc-bad-leaf nc-inter leaf mail.example.test 20400101000000Z mail.other.test
issue sha1-inter root inter "bmcert Fuzz SHA-1 Intermediate" 20400101000000Z x sha1
issue sha1-leaf sha1-inter leaf mail.example.test
# seed NAME DEST:CERT...: the records, leaf first
seed() {
    local out=$v/$1
    shift
    : > "$out"
    for rec in "$@"; do
        local dest=${rec%%:*} f=$p/${rec#*:}.der
        local len
        len=$(stat -c %s "$f")
        printf "\\x$(printf %02x $(((dest << 6) | (len >> 8))))\\x$(printf %02x $((len & 255)))" >> "$out"
        cat "$f" >> "$out"
    done
}
seed valid 0:leaf 0:inter 3:root
seed chain_reordered 0:leaf 3:root 0:inter
seed chain_in_cert_file 0:leaf 1:inter 3:root
seed extra_certificates 0:leaf 0:inter 3:other-root 3:root
seed root_from_platform 0:leaf 0:inter 2:root
seed chain_incomplete 0:leaf 3:root
seed root_missing 0:leaf 0:inter
seed ca_expired 0:old-leaf 0:old-inter 3:root
seed name_constrained-valid 0:nc-leaf 0:nc-inter 3:root
seed name_constrained-chain_invalid 0:nc-bad-leaf 0:nc-inter 3:root
seed weak_signature 0:sha1-leaf 0:sha1-inter 3:root
