//! The world map: sites as dots over the embedded land outlines (`assets/world.svg`, drawn by
//! `scripts/world-map.py` from Natural Earth), coloured by how their nodes are doing.
//!
//! The projection is equirectangular in a 1000 x 500 view box and must stay the one the
//! script draws the land with. Sites at exactly 0°, 0° have no coordinates (the API's
//! default), so they are listed under the map instead of drawn in the Gulf of Guinea.

use std::fmt::Write;

use super::html::Text;
use super::overview::{Health, Overview, SiteInfo};

pub const WIDTH: f64 = 1000.0;
pub const HEIGHT: f64 = 500.0;

/// View-box coordinates of a latitude and longitude (clamped to the map).
pub fn project(latitude: f64, longitude: f64) -> (f64, f64) {
    let lat = if latitude.is_finite() {
        latitude.clamp(-90.0, 90.0)
    } else {
        0.0
    };
    let lon = if longitude.is_finite() {
        longitude.clamp(-180.0, 180.0)
    } else {
        0.0
    };
    ((lon + 180.0) * WIDTH / 360.0, (90.0 - lat) * HEIGHT / 180.0)
}

fn placed(s: &SiteInfo) -> bool {
    !(s.latitude == 0.0 && s.longitude == 0.0)
}

fn health_text(h: Health) -> &'static str {
    match h {
        Health::Up => "every node ready",
        Health::Partial => "some nodes not ready",
        Health::Down => "no node ready",
        Health::Empty => "no nodes",
    }
}

/// The map as inline SVG, its legend, and the sites it cannot place.
pub fn render(o: &Overview) -> String {
    let mut out = format!(
        "<figure class=\"map\"><svg id=\"map\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-label=\"Sites on a world map\"><rect class=\"sea\" width=\"{WIDTH}\" \
         height=\"{HEIGHT}\"/><image href=\"/static/world.svg\" width=\"{WIDTH}\" \
         height=\"{HEIGHT}\"/>"
    );
    for s in o.sites.iter().filter(|s| placed(s)) {
        let (x, y) = project(s.latitude, s.longitude);
        let h = s.health();
        let ready = s
            .nodes
            .iter()
            .filter(|n| n.state == crate::model::NodeState::Ready)
            .count();
        let _ = write!(
            out,
            "<g class=\"site {cls}\" data-site=\"{name}\"><circle cx=\"{x:.1}\" cy=\"{y:.1}\" \
             r=\"7\"/><text x=\"{tx:.1}\" y=\"{ty:.1}\">{name}</text><title>{display} \
             ({city}, {country}): {ready} of {n} nodes ready</title></g>",
            cls = h.as_str(),
            name = Text(&s.name),
            tx = x + 10.0,
            ty = y + 4.0,
            display = Text(&s.display_name),
            city = Text(&s.city),
            country = Text(&s.country),
            n = s.nodes.len(),
        );
    }
    out.push_str("</svg><figcaption><ul class=\"legend\">");
    for h in [Health::Up, Health::Partial, Health::Down, Health::Empty] {
        let _ = write!(
            out,
            "<li><span class=\"swatch {}\"></span>{}</li>",
            h.as_str(),
            health_text(h)
        );
    }
    out.push_str("</ul>");
    let unplaced: Vec<String> = o
        .sites
        .iter()
        .filter(|s| !placed(s))
        .map(|s| Text(&s.name).to_string())
        .collect();
    if !unplaced.is_empty() {
        let _ = write!(
            out,
            "<p class=\"unplaced\">Sites without coordinates: {}</p>",
            unplaced.join(", ")
        );
    }
    out.push_str("</figcaption></figure>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_projection_matches_the_land_outlines() {
        assert_eq!(project(0.0, 0.0), (500.0, 250.0));
        assert_eq!(project(90.0, -180.0), (0.0, 0.0));
        assert_eq!(project(-90.0, 180.0), (1000.0, 500.0));
        // Cambridge, MA: west of Greenwich and north of the equator.
        let (x, y) = project(42.36, -71.09);
        assert!(
            (x - 302.5).abs() < 0.1 && (y - 132.3).abs() < 0.1,
            "{x} {y}"
        );
        assert_eq!(project(400.0, f64::NAN), (500.0, 0.0));
    }

    #[test]
    fn dots_carry_their_site_and_state_and_unplaced_sites_are_listed() {
        let site = |name: &str, lat: f64, lon: f64| SiteInfo {
            name: name.into(),
            display_name: "<b>Hostile</b>".into(),
            city: "C".into(),
            country: "X".into(),
            latitude: lat,
            longitude: lon,
            enabled: true,
            nodes: vec![],
        };
        let o = Overview {
            sites: vec![site("eth", 47.38, 8.55), site("nowhere", 0.0, 0.0)],
            ..Default::default()
        };
        let svg = render(&o);
        assert!(
            svg.contains("class=\"site empty\" data-site=\"eth\""),
            "{svg}"
        );
        assert!(!svg.contains("data-site=\"nowhere\""));
        assert!(svg.contains("Sites without coordinates: nowhere"));
        assert!(svg.contains("&lt;b&gt;Hostile&lt;/b&gt;") && !svg.contains("<b>"));
    }
}
