//! The status page and its public fragment, rendered on the server.
//!
//! The page is the public overview (map, utilization, sites and nodes) plus an empty "your
//! slices" section that `/static/app.js` fills from `/api/mine` once a token is entered.
//! Nothing here may show a slice, a user or a sliver: the public page needs no token.

use std::fmt::Write;

use super::html::{self, Text};
use super::map;
use super::overview::{state_name, Overview};

/// The public overview as one fragment (`/overview`), re-fetched by the page every few
/// seconds.
pub fn overview(o: &Overview) -> String {
    let mut out = String::from("<div id=\"overview\">");
    out.push_str(&map::render(o));
    out.push_str(&utilization(o));
    out.push_str(&sites_table(o));
    out.push_str("</div>");
    out
}

fn utilization(o: &Overview) -> String {
    let ready = o
        .nodes()
        .filter(|n| n.state == crate::model::NodeState::Ready)
        .count();
    let bar = |label: &str, key: &str, used: String, cap: String, pct: i64| {
        format!(
            "<div class=\"meter\" data-meter=\"{key}\"><span class=\"what\">{label}</span>\
             <meter min=\"0\" max=\"100\" value=\"{pct}\"></meter>\
             <span class=\"figures\">{used} of {cap} allocated ({pct}%)</span></div>"
        )
    };
    format!(
        "<section id=\"utilization\"><h2>Testbed utilization</h2>{}{}\
         <p class=\"counts\"><span data-count=\"sites\">{}</span> sites, \
         <span data-count=\"nodes\">{}</span> nodes (<span data-count=\"ready\">{ready}</span> \
         ready), <span data-count=\"slices\">{}</span> live slices, \
         <span data-count=\"slivers\">{}</span> slivers</p></section>",
        bar(
            "CPU",
            "cpu",
            format!("{} cores", html::cores(o.allocated.cpu_millis)),
            format!("{} cores", html::cores(o.capacity.cpu_millis)),
            html::percent(o.allocated.cpu_millis, o.capacity.cpu_millis),
        ),
        bar(
            "Memory",
            "memory",
            html::bytes(o.allocated.memory_bytes),
            html::bytes(o.capacity.memory_bytes),
            html::percent(o.allocated.memory_bytes, o.capacity.memory_bytes),
        ),
        o.sites.len(),
        o.nodes().count(),
        o.live_slices,
        o.slivers,
    )
}

fn sites_table(o: &Overview) -> String {
    let mut out = String::from(
        "<section id=\"sites\"><h2>Sites and nodes</h2><table><thead><tr><th>Site</th>\
         <th>Where</th><th>Node</th><th>State</th><th>CPU allocated</th>\
         <th>Memory allocated</th><th>Slivers</th></tr></thead><tbody>",
    );
    for s in &o.sites {
        let place = [s.city.as_str(), s.country.as_str()]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
        let site_cell = format!(
            "<th scope=\"row\" rowspan=\"{}\"><span class=\"site-name\">{}</span><br>\
             <small>{}{}</small></th><td rowspan=\"{0}\">{}</td>",
            s.nodes.len().max(1),
            Text(&s.name),
            Text(&s.display_name),
            if s.enabled { "" } else { " (disabled)" },
            Text(&place),
        );
        if s.nodes.is_empty() {
            let _ = write!(
                out,
                "<tr data-site=\"{}\">{site_cell}<td colspan=\"5\" class=\"none\">no nodes</td></tr>",
                Text(&s.name)
            );
            continue;
        }
        for (i, n) in s.nodes.iter().enumerate() {
            let state = state_name(n.state);
            let _ = write!(
                out,
                "<tr data-site=\"{}\" data-node=\"{}\">{}<td>{}</td>\
                 <td><span class=\"state {state}\">{}</span></td><td>{} / {}</td>\
                 <td>{} / {}</td><td>{}</td></tr>",
                Text(&s.name),
                Text(&n.name),
                if i == 0 { site_cell.as_str() } else { "" },
                Text(&n.name),
                state.replace('_', " "),
                html::cores(n.allocated.cpu_millis),
                html::cores(n.capacity.cpu_millis),
                html::bytes(n.allocated.memory_bytes),
                html::bytes(n.capacity.memory_bytes),
                n.slivers,
            );
        }
    }
    out.push_str("</tbody></table></section>");
    out
}

/// The whole status page.
pub fn status_page(o: &Overview) -> String {
    let body = format!(
        "<header><h1>Slicebed testbed status</h1></header><main>{}\
         <section id=\"mine\"><h2>Your slices</h2>\
         <form id=\"token-form\" method=\"post\" action=\"/sign-in\" autocomplete=\"off\">\
         <label for=\"token\">Paste your token (<code>sbu_…</code>) to see your slices. \
         It stays in this tab and is sent only to this service.</label>\
         <input id=\"token\" name=\"token\" type=\"password\" spellcheck=\"false\" \
         autocomplete=\"off\" placeholder=\"sbu_…\"><button type=\"submit\">Show my slices</button>\
         </form><p id=\"mine-status\" role=\"status\"></p>\
         <div id=\"mine-content\"></div>\
         <h3 class=\"events-title\" hidden>Live events</h3><ol id=\"events\" hidden></ol>\
         </section></main><noscript><p>Your slices need JavaScript; the public overview \
         above does not.</p></noscript>",
        overview(o)
    );
    html::page("Slicebed testbed status", &body)
}

#[cfg(test)]
mod tests {
    use super::super::overview::{NodeInfo, SiteInfo};
    use super::*;
    use crate::model::NodeState;
    use slicebed_units::Resources;

    fn sample() -> Overview {
        let res = |cpu, mem| Resources {
            cpu_millis: cpu,
            memory_bytes: mem,
            disk_bytes: 0,
        };
        Overview {
            sites: vec![SiteInfo {
                name: "mit".into(),
                display_name: "MIT <script>x</script>".into(),
                city: "Cambridge".into(),
                country: "US".into(),
                latitude: 42.36,
                longitude: -71.09,
                enabled: true,
                nodes: vec![NodeInfo {
                    name: "node-mit".into(),
                    state: NodeState::EngineDown,
                    capacity: res(1000, 1 << 30),
                    allocated: res(500, 1 << 28),
                    slivers: 2,
                }],
            }],
            live_slices: 1,
            slivers: 2,
            capacity: res(1000, 1 << 30),
            allocated: res(500, 1 << 28),
        }
    }

    #[test]
    fn the_overview_shows_states_and_utilization_escaped() {
        let page = status_page(&sample());
        assert!(
            page.contains("class=\"state engine_down\">engine down<"),
            "{page}"
        );
        assert!(page.contains("0.5 cores of 1 cores allocated (50%)"));
        assert!(page.contains("256 MiB of 1 GiB allocated (25%)"));
        assert!(page.contains("<span data-count=\"slices\">1</span> live slices"));
        assert!(page.contains("MIT &lt;script&gt;x&lt;/script&gt;"));
        assert_eq!(
            page.matches("<script").count(),
            1,
            "only the embedded app.js"
        );
        // The token form never puts the token in a URL.
        assert!(page.contains("method=\"post\""));
    }
}
