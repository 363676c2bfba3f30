// bench/flood: per-CPU against shared rate-limit state, as C peers of pol's `rate(ip.src)`.
// Both keep pol's GCRA bucket (one u64, the theoretical arrival time, per source address):
// rate_shared in an LRU hash every CPU shares, taking a token with an atomic add (what pol
// generates); rate_percpu in an LRU per-CPU hash, a plain add (each CPU its own bucket).
// INTERVAL/TOLERANCE (ns) are set with -D by bench/flood/rate_state.sh.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef INTERVAL
#define INTERVAL 1
#endif
#ifndef TOLERANCE
#define TOLERANCE 1000000000000ULL
#endif

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, u32);
	__type(value, u64);
} shared_tat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, u32);
	__type(value, u64);
} percpu_tat SEC(".maps");

static __always_inline int source(struct xdp_md *ctx, u32 *src)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(0x0800))
		return 0;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return 0;
	*src = ip->saddr;
	return 1;
}

static __always_inline int gcra(void *map, u32 *key, int atomic)
{
	u64 now = bpf_ktime_get_ns();
	u64 *tat = bpf_map_lookup_elem(map, key);
	if (!tat) {
		u64 v = now + INTERVAL;
		bpf_map_update_elem(map, key, &v, BPF_ANY);
		return XDP_PASS;
	}
	u64 t = *tat;
	if (t <= now) {
		*tat = now + INTERVAL;
		return XDP_PASS;
	}
	if (t - now > TOLERANCE)
		return XDP_DROP;
	if (atomic)
		__sync_fetch_and_add(tat, INTERVAL);
	else
		*tat = t + INTERVAL;
	return XDP_PASS;
}

SEC("xdp")
int rate_shared(struct xdp_md *ctx)
{
	u32 src;
	if (!source(ctx, &src))
		return XDP_PASS;
	return gcra(&shared_tat, &src, 1);
}

SEC("xdp")
int rate_percpu(struct xdp_md *ctx)
{
	u32 src;
	if (!source(ctx, &src))
		return XDP_PASS;
	return gcra(&percpu_tat, &src, 0);
}

char LICENSE[] SEC("license") = "GPL";
