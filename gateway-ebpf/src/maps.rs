//! Maps and load-time globals. Userspace fills the selection maps from config and reads the
//! flow map to attribute each accepted connection.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray},
    Global,
};
use gateway_common::{stats, ConnIdentity, DestKey, FlowKey, UnixPathKey, MAX_CONNECTIONS};

/// The mark the gateway puts on its own upstream sockets before connect(): they are never
/// intercepted (no redirect loop). Agents cannot set SO_MARK without CAP_NET_ADMIN, and unlike a
/// pid the mark cannot go stale after a crash or be reused by another process.
#[unsafe(no_mangle)]
pub static BYPASS_MARK: Global<u32> = Global::new(gateway_common::DEFAULT_BYPASS_MARK);

/// The `SO_MARK` value the nft `output` chain redirects.
#[unsafe(no_mangle)]
pub static CONNECT_MARK: Global<u32> = Global::new(gateway_common::DEFAULT_MARK);

/// `gateway_common::redirect::{NFTABLES, EBPF}`.
#[unsafe(no_mangle)]
pub static REDIRECT_MODE: Global<u32> = Global::new(gateway_common::redirect::NFTABLES);

/// The gateway's listener port (host order), for the eBPF redirect.
#[unsafe(no_mangle)]
pub static LISTEN_PORT: Global<u32> = Global::new(0);

/// Where `struct unix_sock` keeps its bound address, and where `struct unix_address` keeps
/// the name and its length: from the running kernel's BTF (programs in Rust carry no CO-RE relocations).
#[unsafe(no_mangle)]
pub static UNIX_SOCK_ADDR_OFFSET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static UNIX_ADDRESS_LEN_OFFSET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub static UNIX_ADDRESS_NAME_OFFSET: Global<u32> = Global::new(0);

/// Protected servers' unix sockets by the name they were bound to (`gateway_common::unix_server`).
#[map]
pub static UNIX_SERVERS: HashMap<UnixPathKey, u8> = HashMap::with_max_entries(256, 0);

/// Destinations whose connections are intercepted.
#[map]
pub static PROTECTED: HashMap<DestKey, u8> = HashMap::with_max_entries(1024, 0);

/// Agents selected by uid (the programs are then also attached at the cgroup root).
#[map]
pub static AGENT_UIDS: HashMap<u32, u8> = HashMap::with_max_entries(1024, 0);

/// Agents selected by cgroup v2 id; descendants are found through their ancestors.
#[map]
pub static AGENT_CGROUPS: HashMap<u64, u8> = HashMap::with_max_entries(1024, 0);

/// Identity by socket cookie, from `connect()` until the socket closes.
#[map]
pub static CONNECTS: LruHashMap<u64, ConnIdentity> =
    LruHashMap::with_max_entries(MAX_CONNECTIONS, 0);

/// Identity by flow, from the SYN until the socket closes: what the gateway looks up.
#[map]
pub static FLOWS: LruHashMap<FlowKey, ConnIdentity> =
    LruHashMap::with_max_entries(MAX_CONNECTIONS, 0);

/// Counters for `tollgate status`.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stats::LEN, 0);

#[inline(always)]
pub fn count(index: u32) {
    if let Some(counter) = STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, the program is not re-entered on this CPU.
        unsafe { *counter += 1 };
    }
}
