#!/usr/bin/env bash
# DNS and SNI name matching (issue 13 speed): ns per packet of `dns.qname in SET` and
# `tls.sni in SET` with 10, 1,000 and 100,000 names, beside the same filter without
# the L7 stage (one port test), in one run through BPF_PROG_TEST_RUN. Needs root.
#   sudo bench/l7/names.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_INCREMENTAL=0
# Debug is enough: the figures are the kernel's (BPF_PROG_TEST_RUN), not the loader's.
cargo run -q -p pol-runtime --example l7_names
