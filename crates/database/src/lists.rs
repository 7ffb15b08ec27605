//! Lists of values in one parameter, the way each dialect takes them.
//!
//! Postgres binds an array (`id = ANY($1)`, `unnest($1::uuid[])`). SQLite has no arrays: it
//! takes the list as JSON text and reads it with `json_each`. SQLite stores UUIDs as 16-byte
//! blobs (sqlx's encoding), so the list holds them as hex and [`sqlite_uuids`] turns each back
//! into its blob with `unhex`.

use uuid::Uuid;

/// A subquery of the UUIDs bound as parameter `$n` with [`uuid_list`], for `column IN (...)`.
pub fn sqlite_uuids(n: usize) -> String {
    format!("(SELECT unhex(value) FROM json_each(${n}))")
}

/// `ids` as [`sqlite_uuids`] reads them: a JSON array of hex strings.
pub fn uuid_list(ids: &[Uuid]) -> String {
    let hex: Vec<String> = ids.iter().map(|id| id.simple().to_string()).collect();
    serde_json::Value::from(hex).to_string()
}

/// `strings` as a JSON array, for `IN (SELECT value FROM json_each($n))`.
pub fn text_list<S: AsRef<str>>(strings: &[S]) -> String {
    serde_json::Value::from(strings.iter().map(|s| s.as_ref()).collect::<Vec<_>>()).to_string()
}
