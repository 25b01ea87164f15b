//! Agent cgroups that are removed and created again: systemd does this to a service's cgroup on
//! every restart. The kernel detaches programs from a removed cgroup and the new one has a new
//! id, so without this the agents of a restarted service would connect directly.

use std::{os::unix::fs::MetadataExt, path::Path};

use super::{attach_at, map_mut, LoadedPrograms, ProgramsError};

/// What changed for one configured cgroup.
#[derive(Debug, PartialEq, Eq)]
pub struct Recreated {
    pub cgroup: String,
    pub old_id: u64,
    pub new_id: u64,
}

impl LoadedPrograms {
    /// Attaches to (and selects) configured agent cgroups whose id changed since the last call.
    /// A cgroup that is gone is left until it reappears: nothing runs in it meanwhile.
    pub fn follow_recreated_cgroups(
        &mut self,
        cgroup2_root: &Path,
    ) -> Result<Vec<Recreated>, ProgramsError> {
        let mut changes = Vec::new();
        let known: Vec<(String, u64)> = self
            .agent_cgroup_ids
            .iter()
            .map(|(c, id)| (c.clone(), *id))
            .collect();
        for (cgroup, old_id) in known {
            let dir = cgroup2_root.join(cgroup.trim_start_matches('/'));
            let Ok(meta) = std::fs::metadata(&dir) else {
                continue;
            };
            let new_id = meta.ino();
            if new_id == old_id {
                continue;
            }
            let mut selected = map_mut::<u64, u8>(&mut self.ebpf, "AGENT_CGROUPS")?;
            let map_error = |source| ProgramsError::Map {
                name: "AGENT_CGROUPS",
                source,
            };
            selected.insert(new_id, 1, 0).map_err(map_error)?;
            let _ = selected.remove(&old_id);
            if self.per_cgroup {
                let names = self.names.clone();
                let unix = self.unix.as_ref();
                let (links, point) = attach_at(
                    &mut self.ebpf,
                    &names,
                    unix,
                    &cgroup,
                    &dir,
                    &self.generation,
                )?;
                self.links.extend(links);
                if let Ok(mut points) = self.attach_points.lock() {
                    points.retain(|p| p.cgroup != cgroup);
                    points.push(point);
                }
            }
            self.agent_cgroup_ids.insert(cgroup.clone(), new_id);
            changes.push(Recreated {
                cgroup,
                old_id,
                new_id,
            });
        }
        Ok(changes)
    }
}
