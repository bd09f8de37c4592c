//! Sign-in and sign-out: the only pages open without a session.

use super::*;

#[derive(Template, WebTemplate)]
#[template(path = "portal/signin.html")]
pub(super) struct SignInPage {
    csrf: String,
    error: Option<String>,
}

fn signin_form(status: StatusCode, error: Option<String>) -> Response {
    let csrf = session::random_token();
    let cookie = session::set_cookie(SIGNIN_COOKIE, &csrf, std::time::Duration::from_secs(3600));
    (
        status,
        [(header::SET_COOKIE, cookie)],
        SignInPage { csrf, error },
    )
        .into_response()
}

pub(super) async fn signin_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.portal.sessions.from_headers(&headers).is_some() {
        return Redirect::to("/admin/campaigns").into_response();
    }
    signin_form(StatusCode::OK, None)
}

#[derive(Deserialize)]
pub(super) struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

pub(super) async fn signin(State(state): State<AppState>, request: Request) -> Response {
    let client = state
        .proxies
        .client_of(request.extensions(), request.headers());
    let headers = request.headers().clone();
    let Ok(Form(form)) = Form::<SignInForm>::from_request(request, &()).await else {
        return (
            StatusCode::BAD_REQUEST,
            error_page(400, "the sign-in form was malformed"),
        )
            .into_response();
    };
    // Sign-in has no session yet: its CSRF token is the cookie the sign-in
    // page set, which another site can neither read nor send (SameSite).
    let expected = session::cookie(&headers, SIGNIN_COOKIE).unwrap_or("");
    let csrf_ok = !expected.is_empty()
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_bytes(),
            form.csrf.as_bytes(),
        ));
    if !csrf_ok {
        return (
            StatusCode::FORBIDDEN,
            error_page(403, "the sign-in form is missing its security token or it is wrong; reload the sign-in page and try again"),
        )
            .into_response();
    }
    if let Err(wait) = state.limiter.check(client) {
        tracing::warn!(%client, "portal sign-in refused: too many failures");
        let mut response = signin_form(
            StatusCode::TOO_MANY_REQUESTS,
            Some(format!(
                "Too many failed sign-ins from your address. Try again in {} seconds.",
                retry_after_secs(wait)
            )),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after_secs(wait).into());
        return response;
    }
    let Some(actor) = state.tokens.admin_name(form.token.trim().as_bytes()) else {
        state.limiter.failed(client);
        tracing::warn!(%client, "portal sign-in failed: wrong token");
        return signin_form(
            StatusCode::UNAUTHORIZED,
            Some("That token is not valid.".into()),
        );
    };
    state.limiter.succeeded(client);
    // A fresh session every time: one the browser already held (perhaps
    // planted or stolen) ends here.
    if let Some(old) = state.portal.sessions.from_headers(&headers) {
        state.portal.sessions.remove(&old.id);
    }
    let session = state.portal.sessions.create(actor);
    tracing::info!(actor = %session.actor, "portal sign-in");
    let mut response = Redirect::to("/admin/campaigns").into_response();
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        session::set_cookie(SESSION_COOKIE, &session.id, SESSION_TTL)
            .parse()
            .expect("cookie is ASCII"),
    );
    h.append(
        header::SET_COOKIE,
        session::set_cookie(SIGNIN_COOKIE, "", std::time::Duration::ZERO)
            .parse()
            .expect("cookie is ASCII"),
    );
    response
}

pub(super) async fn signout(State(state): State<AppState>, axum::Extension(s): Signed) -> Response {
    state.portal.sessions.remove(&s.id);
    tracing::info!(actor = %s.actor, "portal sign-out");
    let cookie = session::set_cookie(SESSION_COOKIE, "", std::time::Duration::ZERO);
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to("/admin/signin"),
    )
        .into_response()
}
