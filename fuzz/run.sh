#!/bin/sh
# The MIR fuzz targets, built and run on the machine's stable toolchain for a bounded
# time each: libFuzzer's coverage comes from LLVM's sancov pass, which stable rustc runs
# through -Cpasses/-Cllvm-args (what cargo-fuzz passes, less -Zsanitizer=address, which
# is nightly-only: memory errors are not instrumented, panics and aborts are caught).
#   fuzz/run.sh            # 60 s per target
#   SECONDS_EACH=300 fuzz/run.sh
# Exit status non-zero if a target found a crash (its input is left in fuzz/artifacts/).
# The test suite runs the same bodies (pol_compiler::mir::fuzz) over seeds/ (kept in git:
# earlier runs' inputs that reach the parser's output or the verifier's acceptance) and
# seeded mutations of them (compiler/tests/mir_fuzz.rs); corpus/ is this machine's.
set -eu
cd "$(dirname "$0")"
EACH=${SECONDS_EACH:-60}
export CARGO_INCREMENTAL=0
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
	cargo build --release --target x86_64-unknown-linux-gnu --bins
bin=target/x86_64-unknown-linux-gnu/release
mkdir -p artifacts
for t in mir_text mir_pipeline; do
	work=$(mktemp -d)
	echo "fuzz $t for $EACH s"
	"$bin/$t" -max_total_time="$EACH" -artifact_prefix=artifacts/ "$work" "corpus/$t" "seeds/$t" ../compiler/tests/mir
	rm -rf "$work"
done
