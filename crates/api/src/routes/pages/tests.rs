//! The pages' wording and escaping.

use super::html::escape;
use super::*;

#[test]
fn escape_replaces_the_five_characters_that_matter_in_html_and_keeps_the_rest() {
    assert_eq!(
        escape(r#"<a href="x" title='y'>Tom & Jerry</a> é"#),
        "&lt;a href=&quot;x&quot; title=&#x27;y&#x27;&gt;Tom &amp; Jerry&lt;/a&gt; é"
    );
    assert_eq!(escape("plain"), "plain");
}

#[test]
fn a_hostile_token_and_reason_are_rendered_as_text() {
    let page = reset_form(
        "\"><script>alert(1)</script>".to_owned(),
        vec!["must not contain \"<b>\"".to_owned()],
    )
    .render();
    assert!(!page.contains("<script>"), "{page}");
    assert!(!page.contains("<b>"), "{page}");
    assert!(
        page.contains("value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\""),
        "{page}"
    );
    assert!(page.contains("must not contain &quot;&lt;b&gt;&quot;"), "{page}");
    assert!(page.contains("aria-invalid=\"true\""), "{page}");
}

#[test]
fn a_link_token_must_look_like_one_of_ours() {
    let (token, _) = keyframe_app::opaque_tokens::new_opaque_token(uuid::Uuid::now_v7());
    let query = |token: &str| -> Result<Query<LinkQuery>, QueryRejection> {
        Ok(Query(LinkQuery {
            token: token.to_owned(),
        }))
    };
    assert_eq!(link_token(query(&format!(" {token} "))), Some(token.clone()));
    assert_eq!(link_token(query("")), None);
    assert_eq!(link_token(query("no-owner-here")), None);
    let owner = token.split_once('.').map(|(owner, _)| owner).unwrap_or_default();
    assert_eq!(link_token(query(&format!("{owner}."))), None, "no secret part");
    assert_eq!(
        link_token(query(&format!("{owner}.{}", "a".repeat(MAX_TOKEN_LEN)))),
        None,
        "too long to be ours"
    );
}

#[test]
fn page_text_reads_as_sentences() {
    assert_eq!(
        sentence("the new password must be at least 15 characters"),
        "The new password must be at least 15 characters."
    );
    assert_eq!(sentence("done."), "Done.");
}
