//! Researcher access to slivers over `AccessService`: `exec`, `shell`, `logs`, `cp` and
//! `endpoints`. Every byte goes through slice-service, which relays it to the sliver's node; this
//! side only chooses slivers, moves bytes and reports. Nothing here holds a whole output or a whole
//! archive in memory, except `exec -o json`, which collects output by definition.

pub mod cp;
pub mod endpoints;
pub mod exec;
pub mod lines;
pub mod logs;
pub mod shell;
pub mod target;
pub mod tarstream;
pub mod term;

use anyhow::{bail, Context as _, Result};
use slicebed_proto::v1::{self as pb, GetSliceRequest};

use crate::client::Clients;

/// One sliver chosen for a call, with what is needed to name it in output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sliver {
    pub slice: String,
    pub index: u32,
    pub id: String,
    pub node: String,
    pub site: String,
}

impl Sliver {
    /// `2 node-mit/mit`: what goes between the brackets of an output prefix.
    pub fn label(&self) -> String {
        format!("{} {}/{}", self.index, self.node, self.site)
    }

    /// The wire name of this sliver.
    pub fn to_ref(&self) -> pb::SliverRef {
        pb::SliverRef {
            slice: self.slice.clone(),
            index: self.index,
        }
    }

    fn from_pb(slice: &str, v: &pb::Sliver) -> Self {
        Sliver {
            slice: slice.to_string(),
            index: v.index,
            id: v.id.clone(),
            node: v.node.clone(),
            site: v.site.clone(),
        }
    }

    /// A sliver known only by slice and index (for test fixtures and error paths).
    #[cfg(test)]
    pub fn test(index: u32, node: &str, site: &str) -> Self {
        Sliver {
            slice: "demo".into(),
            index,
            id: format!("demo-{index}-x"),
            node: node.into(),
            site: site.into(),
        }
    }
}

/// `demo` or `demo/2`: a slice and, optionally, one of its slivers.
pub fn parse_slice_index(s: &str) -> Result<(String, Option<u32>), String> {
    let (slice, index) = match s.split_once('/') {
        None => (s, None),
        Some((slice, i)) => {
            let i = i
                .parse::<u32>()
                .map_err(|_| format!("{s:?} is not SLICE or SLICE/INDEX (INDEX is a number)"))?;
            (slice, Some(i))
        }
    };
    if slice.is_empty() {
        return Err(format!("{s:?} names no slice"));
    }
    Ok((slice.to_string(), index))
}

/// `demo/2`, where the index is required.
pub fn parse_one_sliver(s: &str) -> Result<(String, u32), String> {
    match parse_slice_index(s)? {
        (slice, Some(i)) => Ok((slice, i)),
        (slice, None) => Err(format!("name one sliver as {slice}/INDEX, e.g. {slice}/0")),
    }
}

/// The slice's slivers, filtered by index and by site (both filters apply when both are given;
/// none means every sliver). Ordered by index.
pub async fn select(
    clients: &Clients,
    slice: &str,
    indexes: &[u32],
    sites: &[String],
) -> Result<Vec<Sliver>> {
    let s = clients
        .slices
        .clone()
        .get_slice(GetSliceRequest { name: slice.into() })
        .await
        .with_context(|| format!("cannot read slice {slice:?}"))?
        .into_inner();
    let mut chosen: Vec<Sliver> = s
        .slivers
        .iter()
        .filter(|v| indexes.is_empty() || indexes.contains(&v.index))
        .filter(|v| sites.is_empty() || sites.contains(&v.site))
        .map(|v| Sliver::from_pb(slice, v))
        .collect();
    chosen.sort_by_key(|v| v.index);
    if let Some(missing) = indexes
        .iter()
        .find(|i| !s.slivers.iter().any(|v| v.index == **i))
    {
        bail!("slice {slice:?} has no sliver {missing}");
    }
    if chosen.is_empty() {
        if s.slivers.is_empty() {
            bail!("slice {slice:?} has no slivers");
        }
        bail!("no sliver of slice {slice:?} matches the given --sliver/--site filters");
    }
    Ok(chosen)
}

/// One sliver by index, resolved for its node and site.
pub async fn select_one(clients: &Clients, slice: &str, index: u32) -> Result<Sliver> {
    let mut v = select(clients, slice, &[index], &[]).await?;
    Ok(v.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_and_index() {
        assert_eq!(parse_slice_index("demo"), Ok(("demo".into(), None)));
        assert_eq!(parse_slice_index("demo/3"), Ok(("demo".into(), Some(3))));
        assert!(parse_slice_index("demo/x").is_err());
        assert!(parse_slice_index("/1").is_err());
        assert_eq!(parse_one_sliver("demo/0"), Ok(("demo".into(), 0)));
        assert!(parse_one_sliver("demo").unwrap_err().contains("demo/0"));
    }

    #[test]
    fn labels_name_index_node_and_site() {
        assert_eq!(Sliver::test(2, "node-mit", "mit").label(), "2 node-mit/mit");
    }
}
