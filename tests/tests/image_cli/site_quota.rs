//! `slicectl site set --image-quota` (admins only) and the image storage `site show` and
//! `site list` print.

use crate::support::*;

#[tokio::test]
async fn an_admin_sets_a_site_image_quota_and_site_show_and_list_print_it() {
    let s = Store::start().await;
    let admin = s.svc.admin_token.clone();
    let text = ok(&s.run(&admin, &["site", "set", "mit", "--image-quota", "2GiB"]));
    assert!(
        text.contains("2.0 GiB") && text.contains("own quota"),
        "{text}"
    );

    let err = one_line_error(&s.run(&s.alice, &["site", "set", "mit", "--image-quota", "1Ti"]));
    assert!(err.contains("only admins"), "{err}");
    let err = one_line_error(&s.run(&admin, &["site", "set", "mit"]));
    assert!(err.contains("--image-quota"), "{err}");
    let bad = s.run(&admin, &["site", "set", "mit", "--image-quota", "lots"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("or default"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let shown = ok(&s.run(&s.alice, &["site", "show", "mit"]));
    let line = shown
        .lines()
        .find(|l| l.starts_with("Image storage:"))
        .unwrap_or_else(|| panic!("no image storage in\n{shown}"));
    assert!(
        line.contains("/ 2.0 GiB") && line.contains("own quota"),
        "{line}"
    );
    let table = ok(&s.run(&s.alice, &["site", "list"]));
    assert!(table.lines().next().unwrap().contains("IMAGES"), "{table}");
    let eth = table.lines().find(|l| l.starts_with("eth")).unwrap();
    assert!(eth.contains("/ 20.0 GiB"), "eth has the default: {eth}");

    let sites = s.json(&s.alice, &["site", "list"]);
    let mit = sites
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "mit")
        .unwrap();
    assert_eq!(mit["images"]["quota_bytes"], 2u64 << 30, "{mit}");
    assert_eq!(mit["images"]["quota_overridden"], true, "{mit}");

    let back = s.json(&admin, &["site", "set", "mit", "--image-quota", "default"]);
    assert_eq!(back["images"]["quota_overridden"], false, "{back}");
    assert_eq!(back["images"]["quota_bytes"], 20u64 << 30, "{back}");
}
