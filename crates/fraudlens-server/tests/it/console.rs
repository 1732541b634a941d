//! The console in process: sign-in, the session cookie, CSRF, escaping,
//! sign-out. (scripts/console drives the same pages in Chromium.)

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use fraudlens_store::Role;
use serde_json::json;

use crate::Api;

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|line| line.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn value_of(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap().split_once('=').unwrap().1
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} in {html}")) + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

fn form(path: &str, cookie: &str, body: &[(&str, &str)]) -> Request<Body> {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(body)
        .finish();
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .body(Body::from(body))
        .unwrap()
}

fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path).header("cookie", cookie).body(Body::empty()).unwrap()
}

/// Signs in with `key`: the response of the form's POST.
async fn sign_in(api: &Api, key: &str) -> (StatusCode, HeaderMap, String) {
    let (status, headers, page) = api.send_text(get("/ui/login?next=/ui/queue", "")).await;
    assert_eq!(status, StatusCode::OK);
    let nonce = value_of(&cookie(&headers, "fraudlens_login").unwrap()).to_owned();
    assert_eq!(hidden(&page, "nonce"), nonce);
    api.send_text(form(
        "/ui/login",
        &format!("fraudlens_login={nonce}"),
        &[("key", key), ("nonce", &nonce), ("next", "/ui/queue")],
    ))
    .await
}

/// A session cookie of a signed-in analyst, the page's CSRF token, and the key's id.
async fn session(api: &Api) -> (String, String, String) {
    let key = api.key(Role::Analyst, "ana").await;
    let key_id = key.split('_').nth(1).unwrap().to_owned();
    let (status, headers, _) = sign_in(api, &key).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let set = cookie(&headers, "fraudlens_session").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "no TLS here: {set}");
    let jar = format!("fraudlens_session={}", value_of(&set));
    let (status, headers, page) = api.send_text(get("/ui/queue", &jar)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let csp = headers.get(header::CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
    (jar, hidden(&page, "csrf"), key_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_need_a_session_and_the_root_leads_there() {
    let api = Api::new().await;
    let (status, headers, _) = api.send_text(get("/", "")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/ui/queue");
    let (status, headers, _) = api.send_text(get("/ui/cases/x?a=1", "")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/ui/login?next=%2Fui%2Fcases%2Fx%3Fa%3D1");
    let (status, _, _) = api
        .send_text(get("/ui/queue", &format!("fraudlens_session={}", "ab".repeat(32))))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "an unknown token is no session");
    let (status, _, body) = api.send_text(get("/ui/queue/updates?after=0", "")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.starts_with('{'), "the live poll gets JSON: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_analyst_and_admin_keys_sign_in_and_only_with_the_form_s_nonce() {
    let api = Api::new().await;
    let (status, headers, page) = sign_in(&api, &api.key.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("analyst or admin key"), "{page}");
    assert!(cookie(&headers, "fraudlens_session").is_none());
    let (status, _, page) = sign_in(&api, "fl_000000000000_wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("not accepted"));
    let admin = api.key(Role::Admin, "ada").await;
    let (status, _, page) = api
        .send_text(form(
            "/ui/login",
            "fraudlens_login=abc",
            &[("key", &admin), ("nonce", "abd"), ("next", "/ui/queue")],
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a nonce that is not the cookie's");
    assert!(!page.contains(&admin), "the key is not echoed");
    let (status, headers, _) = sign_in(&api, &admin).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/ui/queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_needs_the_session_s_csrf_token_and_is_audited() {
    let api = Api::new().await;
    api.score("t1").await;
    let (jar, csrf, _) = session(&api).await;
    for token in ["", "0000"] {
        let (status, _, _) = api
            .send_text(form(
                "/ui/cases/t1/review",
                &jar,
                &[("status", "escalated"), ("csrf", token)],
            ))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "token {token:?}");
    }
    let mut cross_site = form("/ui/cases/t1/review", &jar, &[("status", "escalated"), ("csrf", &csrf)]);
    cross_site
        .headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(api.send_text(cross_site).await.0, StatusCode::FORBIDDEN);
    assert!(
        api.state.pipeline.store().audit("t1").await.unwrap().is_empty(),
        "nothing changed"
    );

    let (status, headers, _) = api
        .send_text(form(
            "/ui/cases/t1/review",
            &jar,
            &[("status", "escalated"), ("note", "call the bank"), ("csrf", &csrf)],
        ))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/ui/cases/t1?done=review");
    let audit = api.state.pipeline.store().audit("t1").await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].note.as_deref(), Some("call the bank"));
    assert!(audit[0].actor.starts_with("ana ("), "{}", audit[0].actor);
    let (status, _, page) = api.send_text(get("/ui/cases/nope", &jar)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("No transaction"), "an HTML page, not JSON: {page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_from_transactions_are_escaped() {
    let api = Api::new().await;
    let payload = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>";
    let (status, _, body) = api
        .send(api.post(
            "/api/v1/transactions",
            &json!({
                "transaction_id": format!("x{payload}"), "timestamp": "2026-01-01T00:00:00Z",
                "customer_id": format!("c{payload}"), "terminal_id": "k1", "amount": 10.0
            }),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (jar, _, _) = session(&api).await;
    let id = format!("x{payload}");
    let path = format!(
        "/ui/cases/{}",
        percent_encoding::utf8_percent_encode(&id, percent_encoding::NON_ALPHANUMERIC)
    );
    let (status, _, page) = api.send_text(get(&path, &jar)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(!page.contains("<img src=x"), "{page}");
    assert!(page.contains("x&lt;script&gt;alert(1)&lt;/script&gt;&quot;'&gt;&lt;img src=x onerror=alert(2)&gt;"));
    let scripts = page.matches("<script").count();
    assert_eq!(scripts, 1, "only the console's own script tag");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_ends_the_session_on_the_server() {
    let api = Api::new().await;
    let (jar, csrf, key_id) = session(&api).await;
    let (status, _, _) = api.send_text(form("/ui/logout", &jar, &[])).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "sign-out needs the token too");
    let (status, headers, _) = api.send_text(form("/ui/logout", &jar, &[("csrf", &csrf)])).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(cookie(&headers, "fraudlens_session").unwrap().contains("Max-Age=0"));
    let (status, _, _) = api.send_text(get("/ui/queue", &jar)).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the old cookie opens nothing");
    let actions: Vec<String> = api
        .state
        .pipeline
        .store()
        .audit(&format!("key:{key_id}"))
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.action)
        .collect();
    assert_eq!(actions, ["key_create", "console_sign_in", "console_sign_out"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_inputs_get_a_clear_answer_and_change_nothing() {
    let api = Api::new().await;
    for id in ["t1", "t2"] {
        let (status, _, body) = api
            .send(api.post(
                "/api/v1/transactions",
                &json!({
                    "transaction_id": id, "timestamp": "2026-01-01T00:00:00Z", "customer_id": "c1",
                    "terminal_id": "k1", "amount": 10.0
                }),
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (jar, csrf, _) = session(&api).await;
    // ranges far in the past or future, too long, backwards, unknown
    for (path, status) in [
        ("/ui/overview?from=0001-01-01T00:00&to=0001-01-02T00:00", StatusCode::OK),
        ("/ui/overview?from=9999-12-30T00:00&to=9999-12-31T00:00", StatusCode::OK),
        (
            "/ui/overview?from=2020-01-01T00:00&to=2026-01-01T00:00",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/ui/overview?from=2026-02-01T00:00&to=2026-01-01T00:00",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("/ui/overview?range=1y", StatusCode::UNPROCESSABLE_ENTITY),
        ("/ui/queue?cursor=zzz", StatusCode::UNPROCESSABLE_ENTITY),
        ("/ui/queue?min_score=inf", StatusCode::UNPROCESSABLE_ENTITY),
        ("/ui/queue?from=9999-12-31T23:59", StatusCode::OK),
        ("/ui/queue?status=%3Cscript%3E", StatusCode::UNPROCESSABLE_ENTITY),
        ("/ui/models/%3Cnone%3E?review=2", StatusCode::NOT_FOUND),
        ("/ui/nowhere", StatusCode::NOT_FOUND),
    ] {
        let (got, headers, page) = api.send_text(get(path, &jar)).await;
        assert_eq!(got, status, "{path}: {page}");
        assert!(
            headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"),
            "{path}: an HTML page"
        );
        assert!(!page.contains("<script>"), "{path}");
    }
    let (status, _, body) = api.send_text(get("/ui/queue/updates?after=-5", &jar)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = api.send_text(get("/ui/queue/updates?after=x", &jar)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // a note over the limit, an unknown status, a bulk with a missing case or
    // over 500 cases: refused, and no case changed
    let long = "n".repeat(4001);
    let refused: [Vec<(&str, &str)>; 4] = [
        vec![("csrf", &csrf), ("status", "escalated"), ("note", &long), ("ids", "t1")],
        vec![("csrf", &csrf), ("status", "fraudish"), ("ids", "t1")],
        vec![("csrf", &csrf), ("status", "escalated"), ("ids", "t1"), ("ids", "nope")],
        vec![("csrf", &csrf), ("status", "escalated")],
    ];
    for fields in &refused {
        let (status, _, page) = api.send_text(form("/ui/queue/review", &jar, fields)).await;
        assert!(status.is_client_error(), "{status}: {page}");
    }
    let many: Vec<String> = (0..501).map(|i| format!("id{i}")).collect();
    let mut fields: Vec<(&str, &str)> = vec![("csrf", &csrf), ("status", "escalated")];
    fields.extend(many.iter().map(|id| ("ids", id.as_str())));
    let (status, _, _) = api.send_text(form("/ui/queue/review", &jar, &fields)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    for id in ["t1", "t2"] {
        assert!(
            api.state.pipeline.store().audit(id).await.unwrap().is_empty(),
            "{id} unchanged"
        );
    }

    // the same case twice in one bulk review: changed once
    let (status, headers, _) = api
        .send_text(form(
            "/ui/queue/review",
            &jar,
            &[("csrf", &csrf), ("status", "escalated"), ("ids", "t1"), ("ids", "t1")],
        ))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(headers[header::LOCATION].to_str().unwrap().ends_with("done=1"));
    assert_eq!(api.state.pipeline.store().audit("t1").await.unwrap().len(), 1);

    // a request target over the limit is refused before any page is drawn
    let (status, _, _) = api
        .send_text(get(&format!("/ui/cases/{}", "x".repeat(9000)), &jar))
        .await;
    assert_eq!(status, StatusCode::URI_TOO_LONG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assessment_is_written_from_the_case_page_and_kept() {
    let api = Api::new().await;
    api.score("t1").await;
    let (jar, csrf, _) = session(&api).await;
    let (_, _, page) = api.send_text(get("/ui/cases/t1", &jar)).await;
    assert!(page.contains("No assessment yet"), "{page}");
    assert!(page.contains("/ui/cases/t1/assessment"), "{page}");
    // the form needs the session's token, as every POST
    let (status, _, _) = api
        .send_text(form("/ui/cases/t1/assessment", &jar, &[("csrf", "0000")]))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(api.state.pipeline.store().narratives("t1", 5).await.unwrap().is_empty());

    let (status, headers, _) = api
        .send_text(form("/ui/cases/t1/assessment", &jar, &[("csrf", &csrf)]))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/ui/cases/t1?done=assessment#h-assessment");
    let kept = api.state.pipeline.store().narratives("t1", 5).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].narrative.source, "template");
    let (_, _, page) = api.send_text(get("/ui/cases/t1?done=assessment", &jar)).await;
    assert!(page.contains("A new assessment was written."), "{page}");
    assert!(page.contains("Recommendation: "), "{page}");
    assert!(page.contains("by the rules"), "{page}");
    let (status, _, _) = api
        .send_text(form("/ui/cases/nope/assessment", &jar, &[("csrf", &csrf)]))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
