//! The OpenAPI document is part of the contract: any change to a route, a parameter or a schema
//! shows up here as a snapshot diff to review (`cargo insta review`), never unnoticed.

#[test]
fn the_openapi_document_matches_its_reviewed_snapshot() {
    let (_, document) = storefront_http::api();
    let value = storefront_http::openapi::to_json(&document);
    insta::assert_json_snapshot!("openapi", value);
}

#[test]
fn every_operation_has_an_id_a_tag_and_documented_errors() {
    let (_, document) = storefront_http::api();
    let value = storefront_http::openapi::to_json(&document);
    let paths = value["paths"].as_object().unwrap();
    assert!(!paths.is_empty());
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in paths {
        assert!(path.starts_with("/api/v1/"), "{path}");
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(
                ids.insert(id.to_owned()),
                "{method} {path}: duplicate operationId {id}"
            );
            assert!(
                op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{method} {path}: no tag"
            );
            let statuses: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
            assert!(
                statuses.iter().any(|s| s.starts_with('2'))
                    && statuses.iter().any(|s| s.starts_with('4')),
                "{method} {path}: success and error answers documented ({statuses:?})"
            );
        }
    }
}
