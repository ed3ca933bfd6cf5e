//! The demo sites of a local testbed, in the order `dev up --nodes N` takes them: spread around the
//! world so that `--spread` and the map view have something to show.

/// One demo site.
pub struct DemoSite {
    pub name: &'static str,
    pub display_name: &'static str,
    pub city: &'static str,
    pub country: &'static str,
    pub lat: f64,
    pub lon: f64,
}

impl DemoSite {
    /// The site as CreateSite takes it: enabled, with the service's default quotas.
    pub fn proto(&self) -> slicebed_proto::v1::Site {
        slicebed_proto::v1::Site {
            name: self.name.into(),
            display_name: self.display_name.into(),
            city: self.city.into(),
            country: self.country.into(),
            latitude: self.lat,
            longitude: self.lon,
            enabled: true,
            quota: None,
            created_at: None,
            images: None,
        }
    }
}

const fn site(
    name: &'static str,
    display_name: &'static str,
    city: &'static str,
    country: &'static str,
    lat: f64,
    lon: f64,
) -> DemoSite {
    DemoSite {
        name,
        display_name,
        city,
        country,
        lat,
        lon,
    }
}

pub const SITES: &[DemoSite] = &[
    site(
        "mit",
        "Massachusetts Institute of Technology",
        "Cambridge",
        "US",
        42.36,
        -71.09,
    ),
    site("eth", "ETH Zurich", "Zurich", "CH", 47.38, 8.55),
    site("kaist", "KAIST", "Daejeon", "KR", 36.37, 127.36),
    site(
        "ucl",
        "University College London",
        "London",
        "GB",
        51.52,
        -0.13,
    ),
    site(
        "unimelb",
        "University of Melbourne",
        "Melbourne",
        "AU",
        -37.80,
        144.96,
    ),
    site(
        "usp",
        "Universidade de São Paulo",
        "São Paulo",
        "BR",
        -23.56,
        -46.73,
    ),
    site(
        "uct",
        "University of Cape Town",
        "Cape Town",
        "ZA",
        -33.96,
        18.46,
    ),
    site(
        "utokyo",
        "University of Tokyo",
        "Tokyo",
        "JP",
        35.71,
        139.76,
    ),
    site("iitb", "IIT Bombay", "Mumbai", "IN", 19.13, 72.92),
    site(
        "ubc",
        "University of British Columbia",
        "Vancouver",
        "CA",
        49.26,
        -123.25,
    ),
];

/// The Kubernetes-backed site of `dev up --kube-site`: a cluster on the fake API server.
pub const KUBE_SITE: DemoSite = site(
    "k8s-lab",
    "Kubernetes lab (fake cluster)",
    "Amsterdam",
    "NL",
    52.37,
    4.90,
);

/// Host ports node `i` lends to slivers: 100 per node from 30000, so nodes never collide.
pub fn port_range(i: usize) -> (u32, u32) {
    let first = 30_000 + 100 * i as u32;
    (first, first + 99)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_follow_the_plan() {
        assert_eq!(port_range(0), (30_000, 30_099));
        assert_eq!(port_range(2), (30_200, 30_299));
    }
}
