//! [`Resources`]: an amount of node resources in base units, and its arithmetic. The one type
//! for it in the workspace: the service's quotas and placement, the node's capacity and limits.

use std::fmt;

use crate::{format_cpu, format_size};

/// An amount of node resources: CPU in thousandths of a core, memory and disk in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct Resources {
    /// Thousandths of a core.
    pub cpu_millis: i64,
    /// Bytes.
    pub memory_bytes: i64,
    /// Bytes.
    pub disk_bytes: i64,
}

impl Resources {
    /// Builds a value.
    pub const fn new(cpu_millis: i64, memory_bytes: i64, disk_bytes: i64) -> Self {
        Self {
            cpu_millis,
            memory_bytes,
            disk_bytes,
        }
    }

    /// Component-wise sum, saturating so corrupt input cannot wrap around.
    pub fn plus(self, o: Self) -> Self {
        Self {
            cpu_millis: self.cpu_millis.saturating_add(o.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_add(o.memory_bytes),
            disk_bytes: self.disk_bytes.saturating_add(o.disk_bytes),
        }
    }

    /// Component-wise difference, saturating.
    pub fn minus(self, o: Self) -> Self {
        Self {
            cpu_millis: self.cpu_millis.saturating_sub(o.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(o.memory_bytes),
            disk_bytes: self.disk_bytes.saturating_sub(o.disk_bytes),
        }
    }

    /// `self * n`, saturating.
    pub fn times(self, n: i64) -> Self {
        Self {
            cpu_millis: self.cpu_millis.saturating_mul(n),
            memory_bytes: self.memory_bytes.saturating_mul(n),
            disk_bytes: self.disk_bytes.saturating_mul(n),
        }
    }

    /// True when every component of `self` is at most the same component of `limit`.
    pub fn fits_within(self, limit: Self) -> bool {
        self.cpu_millis <= limit.cpu_millis
            && self.memory_bytes <= limit.memory_bytes
            && self.disk_bytes <= limit.disk_bytes
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu {} memory {} disk {}",
            format_cpu(self.cpu_millis),
            format_size(self.memory_bytes),
            format_size(self.disk_bytes)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_and_arithmetic() {
        let cap = Resources::new(2000, 1 << 30, 1 << 32);
        let one = Resources::new(500, 256 << 20, 1 << 30);
        assert!(one.times(4).fits_within(cap));
        assert!(!one.times(5).fits_within(cap));
        assert_eq!(cap.minus(one).plus(one), cap);
        assert_eq!(Resources::new(1, 1, 1).minus(cap).cpu_millis, -1999);
    }

    #[test]
    fn displays_in_the_units_people_type() {
        let r = Resources::new(500, 256 << 20, 3 << 29);
        assert_eq!(r.to_string(), "cpu 0.5 memory 256Mi disk 1.5Gi");
    }
}
