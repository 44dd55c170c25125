#!/usr/bin/env bash
# Builds the seed corpora of the bundle fuzz targets from samples/ with the openssl command:
# every encoding the parsers accept (PEM, DER, BOM/CRLF, Bag Attributes, PKCS#1, SEC1,
# encrypted PKCS#8, legacy encryption, modern and legacy PKCS#12 with password "pw").
set -euo pipefail
cd "$(dirname "$0")"
s=../samples
c=corpus
mkdir -p $c/certificate $c/key $c/ca $c/pkcs12
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

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
