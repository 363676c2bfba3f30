#!/bin/sh
# Issue 11's rule sets from the public ClassBench generator (jafingerhut/classbench, David E.
# Taylor's db_generator and trace_generator; needs git, make and g++): builds both tools and
# writes acl1/fw1/ipc1 sets of each size with their traces into bench/out/classbench, which
# `polbench classify --classbench bench/out/classbench` (and bench/nft/classify_run.sh
# --classbench ...) reads. Sets already there are kept (a 100k set takes minutes).
#   bench/classbench/gen.sh [1000,10000,30000,100000]
# CLASSBENCH_SRC=DIR uses a checkout there instead of cloning it from GitHub.
# Parameters: db_generator -bc SEED N 2 -0.5 0.1 (smoothness 2, address scope -0.5,
# application scope 0.1, as the survey in /work/shared/notes/classification.md used them);
# trace_generator 1 0.1 10 (Pareto a = 1, b = 0.1, ten headers per filter).
set -e
cd "$(dirname "$0")/../.."
out=bench/out/classbench
src=${CLASSBENCH_SRC:-$out/src}
sizes=${1:-1000,10000,30000,100000}
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ ! -d "$src/db_generator" ]; then
    git clone --depth 1 https://github.com/jafingerhut/classbench "$src"
fi
make -s -C "$src/db_generator" all >/dev/null
make -s -C "$src/trace_generator" all >/dev/null
src=$(cd "$src" && pwd)
for seed in acl1 fw1 ipc1; do
    for n in $(echo "$sizes" | tr ',' ' '); do
        f=$out/${seed}_$n
        if [ ! -s "$f" ]; then
            "$src/db_generator/db_generator" -bc "$src/parameter_files/${seed}_seed" "$n" 2 -0.5 0.1 "$f" >"$f.log" 2>&1
        fi
        if [ ! -s "${f}_trace" ]; then
            (cd "$out" && "$src/trace_generator/trace_generator" 1 0.1 10 "${seed}_$n" >/dev/null 2>&1)
        fi
        echo "$seed $n: $(grep -c '^@' "$f") filters, $(wc -l <"${f}_trace") headers"
    done
done
