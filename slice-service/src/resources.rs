//! Resource quantities (CPU millicores, memory bytes, disk bytes) and their arithmetic.
//! Pure values: no I/O, no proto types.

use std::fmt;

/// An amount of node resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
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

/// Formats bytes as the largest binary unit that keeps it readable ("512Mi", "1.5Gi").
pub fn human_bytes(b: i64) -> String {
    const UNITS: [(&str, i64); 4] = [
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    for (suffix, size) in UNITS {
        if b >= size {
            let whole = b / size;
            let tenth = (b % size) * 10 / size;
            return if tenth == 0 {
                format!("{whole}{suffix}")
            } else {
                format!("{whole}.{tenth}{suffix}")
            };
        }
    }
    format!("{b}B")
}

/// Formats millicores as cores ("0.5", "2").
pub fn human_cpu(m: i64) -> String {
    if m % 1000 == 0 {
        format!("{}", m / 1000)
    } else {
        format!("{}", m as f64 / 1000.0)
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu {} memory {} disk {}",
            human_cpu(self.cpu_millis),
            human_bytes(self.memory_bytes),
            human_bytes(self.disk_bytes)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(512 << 20), "512Mi");
        assert_eq!(human_bytes(3 << 29), "1.5Gi");
        assert_eq!(human_cpu(500), "0.5");
        assert_eq!(human_cpu(2000), "2");
    }

    #[test]
    fn fits_and_arithmetic() {
        let cap = Resources::new(2000, 1 << 30, 1 << 32);
        let one = Resources::new(500, 256 << 20, 1 << 30);
        assert!(one.times(4).fits_within(cap));
        assert!(!one.times(5).fits_within(cap));
        assert_eq!(cap.minus(one).plus(one), cap);
    }
}
