#!/bin/bash
# Pull-mode backups over TLS: bsyncd's NBD server with QEMU's
# tls-creds-x509 and tls-creds-psk objects (object-add, nbd-server-start
# tls-creds), read by real clients (nbdinfo, nbdcopy, qemu-img with
# --object tls-creds-x509, python3-libnbd): the dirty-bitmap context
# through TLS equals the one without, the data of the instant; another CA,
# a wrong PSK and a plaintext client refused, garbage and a hang-up
# mid-handshake closed, the daemon unharmed; object-del of credentials in
# use refused.  The credentials are made fresh by tls-certs.sh (openssl)
# and removed at the end.  Under TCG every process start costs, so QMP
# requests go several to a qmp-exec and the python3 checks run in one.
# (The protocol's corners are test-nbd-tls's, on the host.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/bsyncd-lib.sh"

disk=${BSYNC_DISK0:?no scratch disk}
size=$((4 * 1024 * 1024))
out=$(mktemp -d /tmp/bsyncd-nbd-tls.XXXXXX)
certs=$out/certs
nsock=$out/nbd.sock
port=10811
lin=btls-lin
node=btls0
x509="nbds://localhost:$port/vda?tls-certificates=$certs/client"
psk="nbds+unix://alice@/vda?socket=$nsock&tls-psk-file=$certs"

cleanup() {
	bsyncd_stop
	dm remove $node 2>/dev/null
	dm remove $lin 2>/dev/null
	rm -rf "$out"
}
trap cleanup EXIT

lap_t=$SECONDS
lap() { echo "# $1: $((SECONDS - lap_t)) s"; lap_t=$SECONDS; }

# qs 'COMMAND ARGS-JSON'...: the requests on one connection; prints each
# reply's error desc, or "ok"
qs() {
	local c a reqs=()
	for c in "$@"; do
		a=${c#* }
		[ "$a" = "$c" ] && a="{}"
		reqs+=("{\"execute\": \"${c%% *}\", \"arguments\": $a}")
	done
	qmp-exec "$BSYNCD_SOCK" "${reqs[@]}" | jq -r 'if has("return") then "ok" else .error.desc end'
}
export_vda() { echo "block-export-add {\"type\": \"nbd\", \"id\": \"$1\", \"node-name\": \"$node\", \"name\": \"vda\"${2:+, \"bitmaps\": [\"$2\"]}}"; }

ip link set lo up	# the guest's loopback starts down
sh "$(dirname "$0")/tls-certs.sh" "$certs"
ok $? "throwaway x509 and PSK credentials (openssl)"
echo "0 $((size / 512)) linear $disk 0" | dm create $lin && dm mknodes $lin
bsyncd_start
ok $? "bsyncd starts"
dev=/dev/mapper/$node
expect_eq "ok ok" "$(qs "bsync-device-add {\"node-name\": \"$node\", \"origin\": \"/dev/mapper/$lin\"}" \
	"block-dirty-bitmap-add {\"node\": \"$node\", \"name\": \"b0\", \"granularity\": 65536}" | xargs)" \
	"device and bitmap b0"
dd if=/dev/urandom of=$dev bs=1M count=4 oflag=direct status=none
qs "block-dirty-bitmap-clear {\"node\": \"$node\", \"name\": \"b0\"}" >/dev/null
dd if=/dev/urandom of=$dev bs=64k seek=16 count=8 oflag=direct status=none
dd if=/dev/urandom of=$dev bs=4k seek=$((3 * 256 + 1)) count=1 oflag=direct status=none
dd if=$dev of="$out/instant.raw" bs=1M iflag=direct status=none
dirty="1048576:524288 3145728:65536"
lap "set-up"

# the context without TLS, for comparison (reading no data keeps b0's bits)
expect_eq "ok ok" "$(qs "nbd-server-start {\"addr\": {\"type\": \"unix\", \"path\": \"$nsock\"}}" \
	"$(export_vda e0 b0)" | xargs)" "an export without TLS"
nbdinfo --map=qemu:dirty-bitmap:b0 "nbd+unix:///vda?socket=$nsock" >"$out/plain.map"
expect_eq "$dirty" "$(awk '$3 == 1 {print $1 ":" $2}' "$out/plain.map" | xargs)" "its dirty-bitmap context"
qs 'block-export-del {"id": "e0"}' nbd-server-stop \
	"object-add {\"qom-type\": \"tls-creds-x509\", \"id\": \"tls0\", \"dir\": \"$certs/server\", \"endpoint\": \"client\"}" \
	"object-add {\"qom-type\": \"tls-creds-x509\", \"id\": \"tls0\", \"dir\": \"$certs/server\", \"endpoint\": \"server\"}" \
	"object-add {\"qom-type\": \"tls-creds-psk\", \"id\": \"psk0\", \"dir\": \"$certs/psk\", \"endpoint\": \"server\"}" \
	"nbd-server-start {\"addr\": {\"type\": \"inet\", \"host\": \"0.0.0.0\", \"port\": \"$port\"}, \"tls-creds\": \"tls0\"}" \
	"$(export_vda e1 b0)" 'object-del {"id": "tls0"}' >"$out/qmp1.txt"
expect_eq "ok ok" "$(sed -n 1,2p "$out/qmp1.txt" | xargs)" "export and server gone"
expect_eq "Expected TLS credentials for a server endpoint: bsyncd only serves TLS (pass 'endpoint': 'server')" \
	"$(sed -n 3p "$out/qmp1.txt")" "object-add of client credentials refused"
expect_eq "ok ok" "$(sed -n 4,5p "$out/qmp1.txt" | xargs)" "object-add tls-creds-x509 and tls-creds-psk"
expect_eq "ok ok" "$(sed -n 6,7p "$out/qmp1.txt" | xargs)" \
	"nbd-server-start on 0.0.0.0 with tls-creds (TLS allows any address), the export"
expect_eq "object 'tls0' is in use, can not be deleted" "$(sed -n 8p "$out/qmp1.txt")" \
	"object-del of credentials in use"
lap "without TLS"

# x509 on TCP
nbdinfo --map=qemu:dirty-bitmap:b0 "$x509" >"$out/tls.map"
ok $? "nbdinfo --map over TLS (x509, client certificate)"
expect_eq "$(cat "$out/plain.map")" "$(cat "$out/tls.map")" "the dirty-bitmap context through TLS = without"
lap "nbdinfo"
qemu-img map --output=json --object "tls-creds-x509,id=c0,dir=$certs/client,endpoint=client" \
	--image-opts "driver=nbd,server.type=inet,server.host=localhost,server.port=$port,export=vda,tls-creds=c0,x-dirty-bitmap=qemu:dirty-bitmap:b0" \
	>"$out/qmap.json"
expect_eq "$dirty" "$(jq -r '.[] | select(.data == false) | "\(.start):\(.length)"' "$out/qmap.json" | xargs)" \
	"qemu-img map --object tls-creds-x509: the same bitmap"
lap "qemu-img map"
# one python3: a client of another CA, a plaintext one, garbage where the
# ClientHello goes, a hang-up mid-handshake, then python3-libnbd reads
/usr/bin/python3 - "$port" "$certs/client" "$out/instant.raw" "$certs/other" <<'EOF' >"$out/py.txt" 2>&1
import nbd, socket, struct, sys
def refused(certs, tls):
    h = nbd.NBD()
    h.set_tls(tls)
    if certs:
        h.set_tls_certificates(certs)
    h.set_export_name("vda")
    try:
        h.connect_tcp("localhost", sys.argv[1])
    except nbd.Error as e:
        return e.string
    return "connected"
print("another CA:", refused(sys.argv[4], nbd.TLS_REQUIRE))
print("plaintext:", refused(None, nbd.TLS_DISABLE))
for junk in (b"\x16" * 512, None):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.settimeout(15)
    s.recv(18)
    s.sendall(struct.pack(">I", 3) + struct.pack(">QII", 0x49484156454F5054, 5, 0))
    s.recv(20)
    if junk:
        s.sendall(junk)
        try:
            while s.recv(4096):	# an alert, perhaps, then the close
                pass
        except ConnectionResetError:
            pass
    s.close()
print("hostile ok")
h = nbd.NBD()
h.set_tls(nbd.TLS_REQUIRE)
h.set_tls_certificates(sys.argv[2])
h.set_export_name("vda")
h.add_meta_context("qemu:dirty-bitmap:b0")
h.connect_tcp("localhost", sys.argv[1])
assert h.get_tls_negotiated()
assert h.pread(65536, 1 << 20) == open(sys.argv[3], "rb").read()[1 << 20:(1 << 20) + 65536]
seen = []
h.block_status(1 << 20, 1 << 20, lambda meta, off, ents, err: seen.append(ents))
assert seen and seen[0][:2] == [1 << 19, 1], seen
h.shutdown()
print("ok")
EOF
grep "^another CA:" "$out/py.txt" | grep -q "certificate verification"
ok $? "a client of another CA gives up: $(grep "^another CA:" "$out/py.txt")"
grep "^plaintext:" "$out/py.txt" | grep -q "server requires TLS"
ok $? "a plaintext client is refused: $(grep "^plaintext:" "$out/py.txt")"
expect_eq "hostile ok" "$(grep "^hostile" "$out/py.txt")" \
	"garbage instead of a ClientHello, a hang-up mid-handshake: closed"
expect_eq "ok" "$(tail -1 "$out/py.txt")" "python3-libnbd: set_tls(TLS_REQUIRE), a read and the bitmap"
lap "python3"
nbdcopy "$x509" "$out/copy.raw" && cmp "$out/copy.raw" "$out/instant.raw"
ok $? "nbdcopy over TLS = the instant, after the hostile clients"
lap "nbdcopy"

# PSK on a Unix socket
expect_eq "ok ok ok ok" "$(qs 'block-export-del {"id": "e1"}' nbd-server-stop \
	"nbd-server-start {\"addr\": {\"type\": \"unix\", \"path\": \"$nsock\"}, \"tls-creds\": \"psk0\"}" \
	"$(export_vda e2)" | xargs)" "the daemon is unharmed: the server restarted with tls-creds-psk"
nbdcopy "$psk/psk/keys.psk" "$out/copy2.raw" && cmp "$out/copy2.raw" "$out/instant.raw"
ok $? "nbdcopy over TLS-PSK = the instant"
nbdinfo --size "$psk/psk-wrong/keys.psk" >"$out/wpsk.txt" 2>&1
ok $((!$?)) "a wrong PSK is refused: $(tail -1 "$out/wpsk.txt")"
expect_eq "ok ok ok ok" "$(qs 'block-export-del {"id": "e2"}' nbd-server-stop 'object-del {"id": "tls0"}' \
	'object-del {"id": "psk0"}' | xargs)" "object-del once the server stopped"
lap "PSK"

bsyncd_stop
ok $? "bsyncd exits 0"
tap_done
