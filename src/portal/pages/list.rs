//! The campaigns list: status filter and sortable columns.

use super::*;

#[derive(Template, WebTemplate)]
#[template(path = "portal/campaigns.html")]
pub(super) struct CampaignsPage {
    chrome: Chrome,
    rows: Vec<Row>,
    filters: Vec<Filter>,
    columns: Vec<Column>,
    flash: Option<&'static str>,
    total: usize,
}

pub(super) struct Filter {
    label: &'static str,
    href: String,
    count: usize,
    current: bool,
}

pub(super) struct Column {
    label: &'static str,
    href: String,
    /// `ascending`, `descending` or `none`, for `aria-sort`.
    sort: &'static str,
    numeric: bool,
}

#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    status: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
    done: Option<String>,
}

const SORTS: [(&str, &str, bool); 8] = [
    ("id", "ID", false),
    ("name", "Name", false),
    ("status", "Status", false),
    ("starts", "Window (UTC)", false),
    ("design", "Design", false),
    ("size", "Audience", true),
    ("version", "Version", true),
    ("updated", "Last change", false),
];

pub(super) async fn campaigns(
    State(state): State<AppState>,
    axum::Extension(s): Signed,
    Query(q): Query<ListQuery>,
) -> Result<Response, PageError> {
    let now = Utc::now();
    let mut all = state.store.list_campaigns().await?;
    let status_of = |c: &Campaign| status_name(c.status_at(now));
    let filter = q
        .status
        .as_deref()
        .filter(|f| ["scheduled", "active", "ended"].contains(f));
    let sort = q
        .sort
        .as_deref()
        .filter(|k| SORTS.iter().any(|(key, _, _)| key == k))
        .unwrap_or("starts");
    let descending = q.dir.as_deref() == Some("desc");
    let link = |status: Option<&str>, sort: &str, desc: bool| {
        let mut href = format!(
            "/admin/campaigns?sort={sort}&dir={}",
            if desc { "desc" } else { "asc" }
        );
        if let Some(st) = status {
            href.push_str("&status=");
            href.push_str(st);
        }
        href
    };
    let filters = [
        (None, "All"),
        (Some("active"), "Active"),
        (Some("scheduled"), "Scheduled"),
        (Some("ended"), "Ended"),
    ]
    .into_iter()
    .map(|(key, label)| Filter {
        label,
        href: link(key, sort, descending),
        count: all
            .iter()
            .filter(|c| key.is_none_or(|k| status_of(c) == k))
            .count(),
        current: key == filter,
    })
    .collect();
    all.retain(|c| filter.is_none_or(|f| status_of(c) == f));
    all.sort_by(|a, b| {
        let order = match sort {
            "id" => a.id.cmp(&b.id),
            "name" => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
            "status" => status_of(a).cmp(status_of(b)),
            "design" => a.design.as_str().cmp(b.design.as_str()),
            "size" => a.audience_size.cmp(&b.audience_size),
            "version" => a.version.cmp(&b.version),
            "updated" => a.updated_at.cmp(&b.updated_at),
            _ => a.starts_at.cmp(&b.starts_at),
        };
        let order = order.then_with(|| a.id.cmp(&b.id));
        if descending { order.reverse() } else { order }
    });
    let columns = SORTS
        .iter()
        .map(|(key, label, numeric)| {
            let current = *key == sort;
            Column {
                label,
                // A second click on the current column flips the order.
                href: link(filter, key, current && !descending),
                sort: match (current, descending) {
                    (false, _) => "none",
                    (true, false) => "ascending",
                    (true, true) => "descending",
                },
                numeric: *numeric,
            }
        })
        .collect();
    Ok(CampaignsPage {
        chrome: Chrome::new(&s, "campaigns"),
        total: all.len(),
        rows: all.iter().map(|c| Row::new(c, now)).collect(),
        filters,
        columns,
        flash: flash(q.done.as_deref()),
    }
    .into_response())
}
