// bench/flood: the kernel's conntrack through kfuncs, as an XDP peer of pol's own table.
// ct_fill inserts one established TCP flow per run (the run counter picks the tuple, the
// same scheme as runtime/examples/ct_lookup.rs); ct_lookup parses Ethernet/IPv4/TCP, looks
// the packet's flow up with bpf_xdp_ct_lookup and passes it when the flow has seen a reply.
// Built by bench/flood/ct_kfunc.sh with clang -O2 -target bpf against this kernel's vmlinux.h.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define BPF_F_CURRENT_NETNS (-1)
#define ETH_P_IP 0x0800
#define IPS_SEEN_REPLY_BIT 1
#define IPS_SEEN_REPLY (1 << IPS_SEEN_REPLY_BIT)

struct nf_conn *bpf_xdp_ct_lookup(struct xdp_md *, struct bpf_sock_tuple *, u32,
				  struct bpf_ct_opts *, u32) __ksym;
struct nf_conn___init *bpf_xdp_ct_alloc(struct xdp_md *, struct bpf_sock_tuple *, u32,
					struct bpf_ct_opts *, u32) __ksym;
struct nf_conn *bpf_ct_insert_entry(struct nf_conn___init *) __ksym;
void bpf_ct_set_timeout(struct nf_conn___init *, u32) __ksym;
int bpf_ct_set_status(const struct nf_conn___init *, u32) __ksym;
void bpf_ct_release(struct nf_conn *) __ksym;

u32 runs = 0;
u32 inserted = 0;
u32 failed = 0;

SEC("xdp")
int ct_fill(struct xdp_md *ctx)
{
	u32 i = runs++;
	struct bpf_sock_tuple t = {};
	struct bpf_ct_opts o = { .netns_id = BPF_F_CURRENT_NETNS, .l4proto = IPPROTO_TCP };
	t.ipv4.saddr = bpf_htonl((10u << 24) | (i & 0xffffff));
	t.ipv4.daddr = bpf_htonl(0xc0000201); /* 192.0.2.1 */
	t.ipv4.sport = bpf_htons(1024 + i % 50000);
	t.ipv4.dport = bpf_htons(80);
	struct nf_conn___init *n = bpf_xdp_ct_alloc(ctx, &t, sizeof(t.ipv4), &o, sizeof(o));
	if (!n) {
		failed++;
		return XDP_ABORTED;
	}
	bpf_ct_set_timeout(n, 86400000); /* a day */
	bpf_ct_set_status(n, IPS_SEEN_REPLY);
	struct nf_conn *c = bpf_ct_insert_entry(n);
	if (!c) {
		failed++;
		return XDP_ABORTED;
	}
	inserted++;
	bpf_ct_release(c);
	return XDP_PASS;
}

SEC("xdp")
int ct_lookup(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->ihl < 5 || ip->protocol != IPPROTO_TCP)
		return XDP_PASS;
	struct tcphdr *tcp = (void *)ip + ip->ihl * 4;
	if ((void *)(tcp + 1) > end)
		return XDP_DROP;
	struct bpf_sock_tuple t = {};
	t.ipv4.saddr = ip->saddr;
	t.ipv4.daddr = ip->daddr;
	t.ipv4.sport = tcp->source;
	t.ipv4.dport = tcp->dest;
	struct bpf_ct_opts o = { .netns_id = BPF_F_CURRENT_NETNS, .l4proto = IPPROTO_TCP };
	struct nf_conn *c = bpf_xdp_ct_lookup(ctx, &t, sizeof(t.ipv4), &o, sizeof(o));
	if (!c)
		return XDP_DROP; /* unknown: invalid, as pol's full: closed */
	int verdict = (c->status & IPS_SEEN_REPLY) ? XDP_PASS : XDP_DROP;
	bpf_ct_release(c);
	return verdict;
}

char LICENSE[] SEC("license") = "GPL";
