// bench/flood: SYN cookies without the kernel's SYN queue, as this kernel (6.18) allows them.
// syn_xdp answers a SYN to port 80 in XDP with a SYN-ACK whose sequence number is the
// kernel's own cookie (bpf_tcp_raw_gen_syncookie_ipv4: the SYN never reaches the listener);
// ack_tc, on tc ingress, finds the listener for an ACK (bpf_sk_lookup_tcp), checks the
// cookie (bpf_tcp_raw_check_syncookie_ipv4) and hands the ACK to the listener with the
// kfunc bpf_sk_assign_tcp_reqsk (kernel 6.9+), which makes the kernel take the connection
// without its "SYN queue overflowed recently" test (net.ipv4.tcp_syncookies must be 1 or 2).
// The cookie carries the MSS index, but the check helper does not return it: the ACK's
// request gets the smallest MSS (536); no window scaling, SACK or timestamps (as Linux's
// own cookies without timestamps). IPv4 only. Built by bench/flood/syncookie.sh with clang.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define PORT 80

extern int bpf_sk_assign_tcp_reqsk(struct __sk_buff *skb, struct sock *sk,
				   struct bpf_tcp_req_attrs *attrs, int attrs__sz) __ksym;

u64 syn_answered = 0, syn_gen_fail = 0, ack_assigned = 0, ack_bad = 0, ack_passed = 0,
    assign_err = 0;
s64 last_err = 0;

static __always_inline u16 fold(u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return ~s & 0xffff;
}

SEC("xdp")
int syn_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > end || iph->ihl != 5 || iph->protocol != IPPROTO_TCP)
		return XDP_PASS;
	struct tcphdr *th = (void *)(iph + 1);
	if ((void *)(th + 1) > end || th->dest != bpf_htons(PORT) || !th->syn || th->ack ||
	    th->rst || th->fin)
		return XDP_PASS;
	u32 thl = th->doff * 4;
	if (thl < 20 || thl > 60 || (void *)th + thl > end)
		return XDP_PASS;
	/* The helper reads up to its size's bound: copy the header to the stack. */
	thl &= 0x3c;
	if (thl < 20)
		return XDP_PASS;
	u8 buf[60] = {};
	if (bpf_xdp_load_bytes(ctx, sizeof(*eth) + sizeof(*iph), buf, thl))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	iph = (void *)(eth + 1);
	th = (void *)(iph + 1);
	if ((void *)(th + 1) > end)
		return XDP_PASS;
	s64 r = bpf_tcp_raw_gen_syncookie_ipv4(iph, (struct tcphdr *)buf, thl);
	if (r < 0) {
		syn_gen_fail++;
		last_err = r;
		return XDP_DROP;
	}
	u32 cookie = (u32)r;
	u16 mss = r >> 32;
	/* SYN-ACK in place: swap, seq = cookie, ack = seq + 1, one MSS option then NOPs. */
	u8 mac[6];
	__builtin_memcpy(mac, eth->h_source, 6);
	__builtin_memcpy(eth->h_source, eth->h_dest, 6);
	__builtin_memcpy(eth->h_dest, mac, 6);
	u32 a = iph->saddr;
	iph->saddr = iph->daddr;
	iph->daddr = a;
	iph->ttl = 64;
	iph->id = 0;
	iph->frag_off = bpf_htons(0x4000);
	iph->check = 0;
	u64 s = 0;
	u16 *w = (void *)iph;
#pragma unroll
	for (int i = 0; i < 10; i++)
		s += w[i];
	iph->check = fold(s);
	/* The SYN-ACK's TCP header, built on the stack, then stored over the SYN's. */
	struct tcphdr *nt = (struct tcphdr *)buf;
	u16 p = nt->source;
	nt->source = nt->dest;
	nt->dest = p;
	u32 seq = bpf_ntohl(nt->seq);
	nt->ack_seq = bpf_htonl(seq + 1);
	nt->seq = bpf_htonl(cookie);
	buf[13] = 0x12; /* SYN|ACK; doff kept */
	nt->window = bpf_htons(65535);
	nt->urg_ptr = 0;
	nt->check = 0;
	if (thl >= 24) {
		buf[20] = 2;
		buf[21] = 4;
		buf[22] = mss >> 8;
		buf[23] = mss & 0xff;
		for (int i = 24; i < 60; i++)
			buf[i] = i < thl ? 1 : 0;
	}
	s = 0;
	s += (iph->saddr & 0xffff) + (iph->saddr >> 16);
	s += (iph->daddr & 0xffff) + (iph->daddr >> 16);
	s += bpf_htons(IPPROTO_TCP);
	s += bpf_htons(thl);
	s += (u32)bpf_csum_diff(0, 0, (void *)buf, thl, 0);
	nt->check = fold(s);
	if (bpf_xdp_store_bytes(ctx, sizeof(*eth) + sizeof(*iph), buf, thl))
		return XDP_DROP;
	syn_answered++;
	return XDP_TX;
}

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int ack_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	struct iphdr *iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > end || iph->ihl != 5 || iph->protocol != IPPROTO_TCP)
		return TC_ACT_OK;
	struct tcphdr *th = (void *)(iph + 1);
	if ((void *)(th + 1) > end || th->dest != bpf_htons(PORT) || th->syn || !th->ack ||
	    th->rst)
		return TC_ACT_OK;
	struct bpf_sock_tuple t = {};
	t.ipv4.saddr = iph->saddr;
	t.ipv4.daddr = iph->daddr;
	t.ipv4.sport = th->source;
	t.ipv4.dport = th->dest;
	struct bpf_sock *sk = bpf_sk_lookup_tcp(skb, &t, sizeof(t.ipv4), -1, 0);
	if (!sk)
		return TC_ACT_OK;
	if (sk->state != 10 /* TCP_LISTEN */) {
		bpf_sk_release(sk);
		ack_passed++;
		return TC_ACT_OK;
	}
	if (bpf_tcp_raw_check_syncookie_ipv4(iph, th) != 0) {
		bpf_sk_release(sk);
		ack_bad++;
		return TC_ACT_SHOT;
	}
	struct bpf_tcp_req_attrs attrs = {};
	attrs.mss = 536;
	long e = bpf_sk_assign_tcp_reqsk(skb, (struct sock *)sk, &attrs, sizeof(attrs));
	bpf_sk_release(sk);
	if (e) {
		assign_err++;
		last_err = e;
		return TC_ACT_SHOT;
	}
	ack_assigned++;
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
