#!/bin/sh
# tls-certs.sh DIR: throwaway TLS credentials for the NBD-over-TLS tests,
# made fresh by each run (no private key is ever committed), with openssl:
#   DIR/server/  ca-cert.pem server-cert.pem server-key.pem  (bsyncd's tls-creds-x509 dir)
#   DIR/client/  ca-cert.pem client-cert.pem client-key.pem  (libnbd's tls-certificates=,
#                                                            QEMU's endpoint=client dir)
#   DIR/other/   ca-cert.pem of another CA: a client that trusts it refuses the server
#   DIR/psk/keys.psk, DIR/psk-wrong/keys.psk  "alice:HEX", two different keys
# The server certificate is for localhost, 127.0.0.1 and ::1.  EC P-256
# keys, one openssl run per certificate (OpenSSL 3's req -x509 -CA): the
# guest test runs this under TCG, where each run costs a second.
set -eu
d=$1
umask 077
mkdir -p "$d/server" "$d/client" "$d/other" "$d/psk" "$d/psk-wrong"
ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2"
leaf="basicConstraints=critical,CA:FALSE"
usage="keyUsage=critical,digitalSignature,keyEncipherment"
# shellcheck disable=SC2086
{
	openssl req -x509 $ec -keyout "$d/server/ca-key.pem" -out "$d/server/ca-cert.pem" \
		-subj "/CN=bsync test CA" -addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign
	openssl req -x509 $ec -keyout "$d/other/ca-key.pem" -out "$d/other/ca-cert.pem" \
		-subj "/CN=bsync test CA (another)" -addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign
	openssl req -x509 $ec -CA "$d/server/ca-cert.pem" -CAkey "$d/server/ca-key.pem" \
		-keyout "$d/server/server-key.pem" -out "$d/server/server-cert.pem" -subj /CN=localhost \
		-addext "$leaf" -addext "$usage" -addext extendedKeyUsage=serverAuth \
		-addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"
	openssl req -x509 $ec -CA "$d/server/ca-cert.pem" -CAkey "$d/server/ca-key.pem" \
		-keyout "$d/client/client-key.pem" -out "$d/client/client-cert.pem" \
		-subj /CN=bsync-test-client -addext "$leaf" -addext "$usage" \
		-addext extendedKeyUsage=clientAuth
} 2>/dev/null
rm "$d/server/ca-key.pem" "$d/other/ca-key.pem"
cp "$d/server/ca-cert.pem" "$d/client/ca-cert.pem"
hex() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
echo "alice:$(hex)" >"$d/psk/keys.psk"
echo "alice:$(hex)" >"$d/psk-wrong/keys.psk"
