//! What each path answers. The page's files hold no data and are served to anyone; every
//! `/api/` path needs an approver's token, and the operations themselves are the admin
//! socket's (`admin::approvals::answer`), so both front ends decide alike.
//!
//! | Method and path                   | Does                                         |
//! |-----------------------------------|----------------------------------------------|
//! | `GET /api/me`                     | who the token says the caller is             |
//! | `GET /api/approvals`              | requests waiting, oldest first               |
//! | `GET /api/approvals/ID`           | one request, as `tollgate approvals show`    |
//! | `POST /api/approvals/ID/approve`  | `{"reason", "for_s", "hash"}`, all optional  |
//! | `POST /api/approvals/ID/deny`     | `{"reason"}`, required                       |
//! | `GET /api/grants`                 | grants in force                              |
//! | `POST /api/grants/ID/revoke`      | ends a grant                                 |
//! | `GET /api/events`                 | server-sent events: `snapshot`, `waiting`, `updated`, `gone`, `expired` |

use std::net::SocketAddr;

use serde_json::{json, Value};

use super::{web, Answer, HttpApi, Reply};
use crate::{
    admin::approvals::{answer, Caller},
    approval::Approver,
    identity::token::TokenError,
};

/// An approver signed in with a token.
pub struct TokenCaller {
    pub approver: Approver,
    pub groups: Vec<String>,
    /// The token's `exp` (seconds since the epoch): an event stream ends then.
    pub expires_at: u64,
}

pub async fn route(
    api: &HttpApi,
    request: &crate::net::http::request::Request,
    peer: SocketAddr,
) -> Answer {
    let method = request.method.as_str();
    let Some(api_path) = request.path.strip_prefix("/api/") else {
        return Answer::Reply(match (method, request.path.as_str()) {
            ("GET", "/" | "/index.html") => Reply::file("text/html; charset=utf-8", web::INDEX),
            ("GET", "/app.js") => Reply::file("text/javascript; charset=utf-8", web::SCRIPT),
            ("GET", "/app.css") => Reply::file("text/css; charset=utf-8", web::STYLE),
            _ => Reply::error(404, "no such page"),
        });
    };
    let caller = match authenticate(api, request.bearer.as_deref(), peer).await {
        Ok(caller) => caller,
        Err(reply) => return Answer::Reply(reply),
    };
    let segments: Vec<&str> = api_path.split('/').collect();
    let op = match (method, segments.as_slice()) {
        ("GET", ["events"]) => return Answer::Events(caller),
        ("GET", ["me"]) => {
            return Answer::Reply(Reply::json(
                200,
                &json!({
                    "ok": true,
                    "subject": caller.approver.name,
                    "groups": caller.groups,
                }),
            ))
        }
        ("GET", ["approvals"]) => ("approvals.list", None),
        ("GET", ["approvals", id]) => ("approvals.show", Some(*id)),
        ("POST", ["approvals", id, "approve"]) => ("approvals.approve", Some(*id)),
        ("POST", ["approvals", id, "deny"]) => ("approvals.deny", Some(*id)),
        ("GET", ["grants"]) => ("grants.list", None),
        ("POST", ["grants", id, "revoke"]) => ("grants.revoke", Some(*id)),
        _ => return Answer::Reply(Reply::error(404, "no such API path")),
    };
    Answer::Reply(call(api, &caller, op, &request.body))
}

fn call(api: &HttpApi, caller: &TokenCaller, (op, id): (&str, Option<&str>), body: &[u8]) -> Reply {
    let mut arguments = match body {
        [] => json!({}),
        body => match serde_json::from_slice::<Value>(body) {
            Ok(value @ Value::Object(_)) => value,
            _ => return Reply::error(400, "the body is a JSON object"),
        },
    };
    if let Some(id) = id {
        match id.parse::<u64>() {
            Ok(id) => arguments["id"] = json!(id),
            Err(_) => return Reply::error(404, "an id is a number"),
        }
    }
    let caller = Caller {
        approver: Ok(caller.approver.clone()),
        may_view: true,
    };
    let answered = answer(&api.approvals, &caller, op, &arguments);
    let status = match answered["code"].as_str() {
        _ if answered["ok"] != json!(false) => 200,
        Some("forbidden") => 403,
        Some("not_found") => 404,
        Some("conflict") => 409,
        _ => 400,
    };
    Reply::json(status, &answered)
}

/// The caller's token, valid and naming an approver group; otherwise 401 (no or bad token)
/// or 403 (a valid token of someone who may not decide).
async fn authenticate(
    api: &HttpApi,
    bearer: Option<&str>,
    peer: SocketAddr,
) -> Result<TokenCaller, Reply> {
    let Some(token) = bearer else {
        return Err(Reply::error(
            401,
            "sign in: send your access token as `Authorization: Bearer <token>`",
        ));
    };
    let identity = api.tokens.validate(token).await.map_err(|error| {
        tracing::warn!(event = "approvals.http.token_refused", %peer, %error, "approver token refused");
        match error {
            // The gateway's trouble, not the token's: the approver may try again.
            TokenError::Keys(_) => Reply::error(
                503,
                "the identity provider's keys are not available to the gateway yet; try again",
            ),
            refused => Reply::error(401, &format!("the token is refused: {refused}")),
        }
    })?;
    if !identity
        .groups
        .iter()
        .any(|group| api.approver_groups.contains(group))
    {
        tracing::warn!(
            event = "approvals.http.not_an_approver",
            %peer,
            subject = %identity.subject,
            "token of a non-approver"
        );
        return Err(Reply::error(
            403,
            &format!(
                "{} is not an approver: the token's groups name none of [approvals] \
                 approver_token_groups",
                identity.subject
            ),
        ));
    }
    Ok(TokenCaller {
        approver: Approver {
            name: identity.subject.clone(),
            uid: None,
            token_subject: Some(identity.subject),
        },
        groups: identity.groups,
        expires_at: identity.expires_at,
    })
}
