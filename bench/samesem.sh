#!/bin/sh
# pol beside the same-semantics C peer (../shared/bench/samesem, see its README) in ONE
# run. Copies the peer's scripts to bench/out/samesem (they write into their own folder),
# then runs the peer's build (clang -O2, and `pol build`), verdict checks, interleaved
# timing and executed-instruction counts.
#   sudo bench/samesem.sh                      # N = 1000,100000, 9 rounds x 1e6
#   ROUNDS=3 REPEAT=200000 SIZES=1000 sudo bench/samesem.sh   # quicker
#   POL=/path/to/pol sudo bench/samesem.sh                      # that pol, no cargo build
#   POL_BEFORE=/path/to/older/pol sudo bench/samesem.sh        # + a "pol_before" column:
#       the same filter built by another pol binary, timed in the same interleaved run
# Needs root. Pins under /sys/fs/bpf/samesem_bench are removed by the peer's script.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
PEER=${SAMESEM_DIR:-$ROOT/../shared/bench/samesem}
OUT=$HERE/out/samesem
command -v clang >/dev/null || apt-get install -y clang llvm libbpf-dev
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
# POL=/path/to/pol uses that binary instead of building one.
if [ -z "${POL:-}" ]; then
	cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin pol
	POL=$ROOT/target/release/pol
fi
rm -rf "$OUT"
mkdir -p "$OUT"
cp "$PEER"/*.py "$PEER"/*.c "$PEER"/*.sh "$PEER"/*.pol "$OUT"/
# The peer's scripts import ../xdp/bench_xdp.py relative to themselves.
export BENCH_XDP=$PEER/../xdp
export PYTHONPATH=$PEER/../xdp
cd "$OUT"
# pol's objects name their section xdp.frags (multi-buffer); the peer's readers look for `xdp`.
sed -i 's/"--only-section=xdp",/"--only-section=xdp", "--only-section=xdp.frags",/' pathlen.py
sed -i 's/f\[1\] == "xdp"/f[1] in ("xdp", "xdp.frags")/' bench.py
SIZES=$(echo "${SIZES:-1000,100000}" | tr , ' ') POL=$POL ./build.sh
if [ -n "${POL_BEFORE:-}" ]; then
	for n in $(echo "${SIZES:-1000,100000}" | tr , ' '); do
		"$POL_BEFORE" build "build/pol_$n.pol" -o "build/pol_before_$n.o" >/dev/null
	done
	sed -i 's/^    ("pol", "pol", "blocked_v4", "pol (pol build)"),/&\n    ("pol_before", "pol_before", "blocked_v4", "pol before (POL_BEFORE)"),/' bench.py
	sed -i 's/pairs = \[("pol", "ss"), /pairs = [("pol", "ss"), ("pol_before", "ss"), ("pol", "pol_before"), /' bench.py
	sed -i 's/progs = \["pol", "ss",/progs = ["pol", "pol_before", "ss",/' pathlen.py
fi
"$POL" disasm build/pol_1000.pol > build/pol.disasm
"$POL" test semantics_test.pol | tail -1
python3 bench.py --rounds "${ROUNDS:-9}" --repeat "${REPEAT:-1000000}" --slices 10 \
	--sizes "${SIZES:-1000,100000}" --out results-sliced.json
python3 pathlen.py
