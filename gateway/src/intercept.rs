//! Kernel side of interception: preflight checks, eBPF programs pinned in bpffs, the nftables
//! table, and attribution lookups. This is the one area allowed to use `unsafe` (libc calls).

pub mod attribution;
pub mod bpffs;
pub mod coverage;
mod kernel_btf;
pub mod nft;
pub mod original_dst;
pub mod preflight;
pub mod programs;
pub mod unix_backstop;
pub mod unix_connect;

use std::sync::Arc;

use crate::config::Config;

pub use attribution::Attribution;
pub use programs::LoadedPrograms;

#[derive(Debug, thiserror::Error)]
pub enum InterceptError {
    #[error(transparent)]
    Preflight(#[from] preflight::PreflightError),
    #[error("bpffs: {0}")]
    Bpffs(#[from] bpffs::BpffsError),
    #[error("eBPF programs: {0}")]
    Programs(#[from] programs::ProgramsError),
    #[error("nftables table `inet {table}`: {source}")]
    Nft {
        table: String,
        #[source]
        source: nft::NftError,
    },
}

/// Everything installed in the kernel for one gateway run.
pub struct Interception {
    pub programs: LoadedPrograms,
    pub nft_table: String,
    /// What the table exempts from connection tracking.
    pub untracked: nft::Untracked,
}

impl Interception {
    /// Loads and attaches the programs, pins them, installs the nft table atomically and only then
    /// removes what an earlier run left (so agents never bypass). If the table cannot be
    /// installed, the new generation is removed again and an earlier run's state is left as is.
    pub fn install(config: &Config, host: &preflight::HostFacts) -> Result<Self, InterceptError> {
        bpffs::ensure_mounted(&config.gateway.bpffs_dir)?;
        let programs = LoadedPrograms::load_and_attach(config, &host.cgroup2_root)?;
        let table = config.gateway.nft_table.clone();
        let untracked = match nft::install(config) {
            Ok(untracked) => untracked,
            Err(source) => {
                let generation = programs.generation_dir().to_owned();
                drop(programs);
                let _ = bpffs::remove_generation(&generation);
                return Err(InterceptError::Nft { table, source });
            }
        };
        bpffs::remove_other_generations(&config.gateway.bpffs_dir, programs.generation_dir())?;
        Ok(Self {
            programs,
            nft_table: table,
            untracked,
        })
    }

    pub fn attribution(&self) -> Arc<dyn Attribution> {
        self.programs.attribution()
    }

    /// Clean shutdown, first step: new agent connections go direct, as without Tollgate (the
    /// programs are detached and the table redirects nothing more), while the connections
    /// already redirected keep their translation until they drain. [`Draining::finish`]
    /// then removes the table.
    pub fn release(self, config: &Config) -> Result<Draining, InterceptError> {
        let table = self.nft_table.clone();
        let stopped = nft::stop_redirecting(config);
        let generation = self.programs.generation_dir().to_owned();
        drop(self.programs);
        if let Err(error) = bpffs::remove_generation(&generation) {
            // Pins left behind keep their programs attached: agents stay intercepted (and,
            // with no gateway, refused) until the next start or `tollgate uninstall`.
            tracing::error!(%error, "could not remove the pinned programs");
        }
        let draining = Draining { table };
        match stopped {
            Ok(()) => Ok(draining),
            // Still redirecting, but to a gateway that stops accepting: remove the table now,
            // so agents are not left waiting on it.
            Err(source) => {
                let table = draining.table.clone();
                draining.finish()?;
                Err(InterceptError::Nft { table, source })
            }
        }
    }

    /// Removes everything at once (nothing was redirected yet).
    pub fn remove(self, config: &Config) -> Result<(), InterceptError> {
        self.release(config)?.finish()
    }
}

/// The table of a gateway that is draining (see [`Interception::release`]).
pub struct Draining {
    table: String,
}

impl Draining {
    pub fn finish(self) -> Result<(), InterceptError> {
        let table = self.table;
        nft::remove(&table).map_err(|source| InterceptError::Nft { table, source })
    }
}

/// Removes what a stopped gateway left: its nft table and every pinned generation.
/// Returns a short report of what was there.
pub fn remove_leftovers(config: &Config) -> Result<String, InterceptError> {
    let table = config.gateway.nft_table.clone();
    let mut report = String::new();
    if nft::exists(&table) {
        nft::remove(&table).map_err(|source| InterceptError::Nft {
            table: table.clone(),
            source,
        })?;
        report.push_str(&format!("removed nftables table inet {table}\n"));
    }
    for generation in bpffs::generations(&config.gateway.bpffs_dir) {
        bpffs::remove_generation(&generation)?;
        report.push_str(&format!(
            "removed pinned programs {}\n",
            generation.display()
        ));
    }
    if report.is_empty() {
        report.push_str("nothing to remove\n");
    }
    Ok(report)
}
