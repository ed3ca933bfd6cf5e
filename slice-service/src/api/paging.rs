//! Lists paged by encoded size, so that an answer stays far below the 4 MiB a client decodes
//! by default however big its rows are (ListNodes, ListUsers, ListTokens).

use prost::Message;

use crate::error::Error;

/// Largest encoded size of one page: well under the 4 MiB clients decode by default.
pub const PAGE_BYTES: usize = 1 << 20;

/// The items from `token` (an offset this function gave, or empty for the first) that fit in
/// `PAGE_BYTES` (at least one), and the token of the rest (empty when none is left).
pub fn by_size<T: Message>(
    items: impl IntoIterator<Item = T>,
    token: &str,
) -> Result<(Vec<T>, String), Error> {
    let skip: usize = match token {
        "" => 0,
        t => t.parse().map_err(|_| {
            Error::invalid(format!("page_token {t:?} is not one this service gave"))
        })?,
    };
    let (mut out, mut size) = (Vec::new(), 0usize);
    for (i, item) in items.into_iter().enumerate().skip(skip) {
        let len = item.encoded_len() + 8;
        if !out.is_empty() && size + len > PAGE_BYTES {
            return Ok((out, i.to_string()));
        }
        size += len;
        out.push(item);
    }
    Ok((out, String::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use slicebed_proto::v1 as pb;

    fn user(i: usize, pad: usize) -> pb::User {
        pb::User {
            name: format!("{i}{}", "u".repeat(pad)),
            ..Default::default()
        }
    }

    #[test]
    fn pages_hold_every_item_once_and_stay_under_the_limit() {
        let all: Vec<pb::User> = (0..40).map(|i| user(i, 100_000)).collect();
        let (mut seen, mut token, mut pages) = (Vec::new(), String::new(), 0);
        loop {
            let (page, next) = by_size(all.iter().cloned(), &token).unwrap();
            let size: usize = page.iter().map(|u| u.encoded_len() + 8).sum();
            assert!(size <= PAGE_BYTES, "page of {size} bytes");
            seen.extend(page);
            pages += 1;
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, all);
        assert!(pages >= 4, "{pages}");
    }

    #[test]
    fn one_item_bigger_than_a_page_still_comes_alone_and_small_lists_fit_one_page() {
        let (page, next) = by_size([user(0, 2 * PAGE_BYTES), user(1, 1)], "").unwrap();
        assert_eq!((page.len(), next.as_str()), (1, "1"));
        let (page, next) = by_size((0..10).map(|i| user(i, 10)), "").unwrap();
        assert_eq!((page.len(), next.as_str()), (10, ""));
        assert!(by_size((0..3).map(|i| user(i, 1)), "nope").is_err());
    }
}
