#!/bin/sh
# tls-certs.sh DIR: throwaway TLS credentials for the NBD-over-TLS tests,
# made fresh by each run (no private key is ever committed), with openssl:
#   DIR/server/  ca-cert.pem server-cert.pem server-key.pem  (bsyncd's tls-creds-x509 dir)
#   DIR/client/  ca-cert.pem client-cert.pem client-key.pem  (libnbd's tls-certificates=,
#                                                            QEMU's endpoint=client dir)
#   DIR/other/   the same names, from another CA: neither side trusts the other
#   DIR/psk/keys.psk, DIR/psk-wrong/keys.psk  "alice:HEX", two different keys
# The server certificate is for localhost, 127.0.0.1 and ::1.  EC P-256
# keys: generating them takes milliseconds.
set -eu
d=$1
mkdir -p "$d/server" "$d/client" "$d/other" "$d/psk" "$d/psk-wrong" "$d/work"
umask 077
w=$d/work
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() {	# ca NAME: $w/NAME-ca-{key,cert}.pem
	key "$w/$1-ca-key.pem"
	openssl req -x509 -new -key "$w/$1-ca-key.pem" -out "$w/$1-ca-cert.pem" -days 2 \
		-subj "/CN=bsync test CA $1" -addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}
cert() {	# cert CA OUT-CERT OUT-KEY CN EXTFILE
	key "$3"
	openssl req -new -key "$3" -out "$w/req.csr" -subj "/CN=$4" 2>/dev/null
	openssl x509 -req -in "$w/req.csr" -CA "$w/$1-ca-cert.pem" -CAkey "$w/$1-ca-key.pem" \
		-CAcreateserial -out "$2" -days 2 -extfile "$5" 2>/dev/null
}
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n' >"$w/server.ext"
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >"$w/client.ext"
ca good
ca other
cert good "$d/server/server-cert.pem" "$d/server/server-key.pem" localhost "$w/server.ext"
cert good "$d/client/client-cert.pem" "$d/client/client-key.pem" bsync-test-client "$w/client.ext"
cert other "$d/other/client-cert.pem" "$d/other/client-key.pem" bsync-test-client "$w/client.ext"
cp "$w/good-ca-cert.pem" "$d/server/ca-cert.pem"
cp "$w/good-ca-cert.pem" "$d/client/ca-cert.pem"
cp "$w/other-ca-cert.pem" "$d/other/ca-cert.pem"
echo "alice:$(openssl rand -hex 32)" >"$d/psk/keys.psk"
echo "alice:$(openssl rand -hex 32)" >"$d/psk-wrong/keys.psk"
rm -rf "$w"
